package eventstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/google/uuid"
)

// PrepareAppend validates an append's input and returns the events with
// their Data compacted, the form in which they are stored and hashed. Every
// implementation calls it so that all accept and store the same input.
// Errors wrap ErrInvalidEvent.
func PrepareAppend(streamID string, expected ExpectedVersion, events []NewEvent, opts AppendOptions) ([]NewEvent, error) {
	if streamID == "" || !utf8.ValidString(streamID) {
		return nil, fmt.Errorf("stream id %q: %w", streamID, ErrInvalidEvent)
	}
	if expected < Any {
		return nil, fmt.Errorf("expected version %d: %w", int64(expected), ErrInvalidEvent)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("append to %q without events: %w", streamID, ErrInvalidEvent)
	}
	if !utf8.ValidString(opts.StreamType) {
		return nil, fmt.Errorf("stream type is not UTF-8: %w", ErrInvalidEvent)
	}
	out := make([]NewEvent, len(events))
	seen := make(map[uuid.UUID]bool, len(events))
	for i, e := range events {
		if err := checkEvent(e); err != nil {
			return nil, fmt.Errorf("event %d (%s): %w", i, e.ID, err)
		}
		if seen[e.ID] {
			return nil, fmt.Errorf("event %d: id %s appears twice: %w", i, e.ID, ErrInvalidEvent)
		}
		seen[e.ID] = true
		var buf bytes.Buffer
		if err := json.Compact(&buf, e.Data); err != nil {
			return nil, fmt.Errorf("event %d (%s): data is not JSON: %w: %w", i, e.ID, err, ErrInvalidEvent)
		}
		e.Data = buf.Bytes()
		out[i] = e
	}
	for _, r := range append(append([]Reservation(nil), opts.Reservations...), opts.Releases...) {
		if r.Kind == "" || r.Value == "" || !utf8.ValidString(r.Kind+r.Value+r.OwnerStreamID) {
			return nil, fmt.Errorf("reservation %q %q: %w", r.Kind, r.Value, ErrInvalidEvent)
		}
	}
	if rec := opts.Idempotency; rec != nil {
		if rec.Scope == "" && rec.Key == "" || !utf8.ValidString(rec.Scope+rec.Key+rec.Fingerprint) || rec.TTL < 0 {
			return nil, fmt.Errorf("idempotency record %q %q: %w", rec.Scope, rec.Key, ErrInvalidEvent)
		}
	}
	return out, nil
}

func checkEvent(e NewEvent) error {
	m := e.Metadata
	switch {
	case e.ID == uuid.Nil:
		return fmt.Errorf("missing id: %w", ErrInvalidEvent)
	case e.Type == "":
		return fmt.Errorf("missing type: %w", ErrInvalidEvent)
	case e.SchemaVersion < 1 || e.SchemaVersion > 1<<30:
		return fmt.Errorf("schema version %d: %w", e.SchemaVersion, ErrInvalidEvent)
	case !utf8.Valid(e.Data):
		return fmt.Errorf("data is not UTF-8: %w", ErrInvalidEvent)
	case !utf8.ValidString(e.Type + m.Actor + m.CorrelationID + m.CausationID + m.RequestID + m.IdempotencyKey):
		return fmt.Errorf("metadata is not UTF-8: %w", ErrInvalidEvent)
	}
	for k, v := range m.Trace {
		if !utf8.ValidString(k + v) {
			return fmt.Errorf("trace is not UTF-8: %w", ErrInvalidEvent)
		}
	}
	return nil
}

// SameContent reports whether a stored event has the content of e: the same
// id, type, schema version and data. Metadata is not compared: it describes
// the attempt, and a retried command may carry a new request id.
func SameContent(stored Envelope, e NewEvent) bool {
	return stored.ID == e.ID && stored.Type == e.Type && stored.SchemaVersion == e.SchemaVersion &&
		bytes.Equal(stored.Data, e.Data)
}
