package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// decryptEvents decodes a customer's stored events, from its first
// version, with their personal fields as domain.DecryptHistory shows them.
func (a *QueryAPI) decryptEvents(ctx context.Context, id uuid.UUID, envs []eventstore.Envelope) ([]domain.Event, error) {
	events, err := commands.DecodeEnvelopes(envs)
	if err != nil {
		return nil, fmt.Errorf("customer %s: %w", id, err)
	}
	events, err = domain.DecryptHistory(id, events, eventstore.DataKeyOf(ctx, a.cfg.Keys, commands.StreamID(id)))
	if err != nil {
		return nil, fmt.Errorf("customer %s: %w", id, err)
	}
	return events, nil
}

// customerEvents reads the stream of the customer the request names (it
// takes no query parameters) and decodes its events, personal fields
// decrypted or shown as erased.
func (a *QueryAPI) customerEvents(r *http.Request) (uuid.UUID, []eventstore.Envelope, []domain.Event, error) {
	id, err := queryID(r)
	if err != nil {
		return id, nil, nil, err
	}
	if _, err := readQuery(r); err != nil {
		return id, nil, nil, err
	}
	envs, err := a.readStream(r, id)
	if err != nil {
		return id, nil, nil, err
	}
	events, err := a.decryptEvents(r.Context(), id, envs)
	return id, envs, events, err
}

// personalRecord is one event's personal fields, as held.
type personalRecord struct {
	Version    int64             `json:"version"`
	Type       string            `json:"type"`
	RecordedAt time.Time         `json:"recorded_at"`
	Fields     map[string]string `json:"fields"`
}

// personalData answers a subject access request: every personal field the
// customer's events hold, decrypted, and whether the data was erased.
func (a *QueryAPI) personalData(w http.ResponseWriter, r *http.Request) {
	id, envs, events, err := a.customerEvents(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	records := []personalRecord{}
	erased := false
	for i, ev := range events {
		if _, ok := ev.(domain.PersonalDataErased); ok {
			erased = true
		}
		if !domain.HasPersonalData(ev) {
			continue
		}
		fields, err := personalFieldValues(ev)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		records = append(records, personalRecord{Version: envs[i].Version, Type: envs[i].Type, RecordedAt: envs[i].RecordedAt, Fields: fields})
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "erased": erased, "records": records})
}

// personalFieldValues returns ev's personal fields by their JSON names.
func personalFieldValues(ev domain.Event) (map[string]string, error) {
	raw, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	all := map[string]any{}
	if err := json.Unmarshal(raw, &all); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range domain.PersonalFields(ev) {
		if v, ok := all[name].(string); ok {
			out[name] = v
		}
	}
	return out, nil
}
