package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrUnknownEventType is returned by DecodeEvent for a type name that
// neither names a current event nor has an upcaster.
var ErrUnknownEventType = errors.New("unknown event type")

// decoders maps each current type name to a function decoding its JSON.
// A static table rather than init() registration: the set of events is
// closed and visible in one place.
var decoders = map[string]func([]byte) (Event, error){
	TypeSignedUp:                 decodeAs[SignedUp],
	TypeStepRequested:            decodeAs[StepRequested],
	TypeVerificationCheckStarted: decodeAs[VerificationCheckStarted],
	TypeStepSucceeded:            decodeAs[StepSucceeded],
	TypeStepFailed:               decodeAs[StepFailed],
	TypeVerificationRejected:     decodeAs[VerificationRejected],
	TypeSupportNotified:          decodeAs[SupportNotified],
	TypePaused:                   decodeAs[Paused],
	TypeStepRetryRequested:       decodeAs[StepRetryRequested],
	TypeStepSkipped:              decodeAs[StepSkipped],
	TypeCancellationRequested:    decodeAs[CancellationRequested],
	TypeBillingClosed:            decodeAs[BillingClosed],
	TypeTenantDeprovisioned:      decodeAs[TenantDeprovisioned],
	TypeCancelled:                decodeAs[Cancelled],
	TypeOnboardingCompleted:      decodeAs[OnboardingCompleted],
	TypeResultIgnored:            decodeAs[ResultIgnored],
	TypeBlocked:                  decodeAs[Blocked],
	TypeUnblocked:                decodeAs[Unblocked],
	TypePersonalDataErased:       decodeAs[PersonalDataErased],
	TypeProviderDataDeleted:      decodeAs[ProviderDataDeleted],
}

// Upcaster turns the JSON of an old event version into the JSON and type
// name of a newer one. Old versions are upcast on read, never rewritten.
type Upcaster func(data []byte) (newType string, newData []byte, err error)

// upcasters maps an old type name to the function that lifts it one version.
// No event has a second version yet; when one does, its v1 goes here and a
// golden history in testdata proves old streams still replay.
var upcasters = map[string]Upcaster{}

// EventTypes returns every current event type name.
func EventTypes() []string {
	out := make([]string, 0, len(decoders))
	for t := range decoders {
		out = append(out, t)
	}
	return out
}

// SchemaVersion returns the version number carried in a type name
// ("customer.signed_up.v1" → 1), or 0 when the name has none.
func SchemaVersion(eventType string) int {
	i := strings.LastIndex(eventType, ".v")
	if i < 0 {
		return 0
	}
	n, err := strconv.Atoi(eventType[i+2:])
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// EncodeEvent returns the stored form of e: its type name, schema version
// and JSON data.
func EncodeEvent(e Event) (eventType string, schemaVersion int, data []byte, err error) {
	if e == nil {
		return "", 0, nil, errors.New("encode event: nil event")
	}
	data, err = json.Marshal(e)
	if err != nil {
		return "", 0, nil, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	return e.EventType(), SchemaVersion(e.EventType()), data, nil
}

// DecodeEvent returns the event stored as eventType with JSON data,
// upcasting old versions first. Unknown fields and trailing data are
// errors: a stored event that does not match its schema is corrupt.
func DecodeEvent(eventType string, data []byte) (Event, error) {
	for range 16 { // bounds a cycle in the upcaster table
		if decode, ok := decoders[eventType]; ok {
			e, err := decode(data)
			if err != nil {
				return nil, fmt.Errorf("decode %s: %w", eventType, err)
			}
			return e, nil
		}
		up, ok := upcasters[eventType]
		if !ok {
			return nil, fmt.Errorf("decode %q: %w", eventType, ErrUnknownEventType)
		}
		var err error
		if eventType, data, err = up(data); err != nil {
			return nil, fmt.Errorf("upcast %q: %w", eventType, err)
		}
	}
	return nil, fmt.Errorf("decode %q: upcaster chain too long", eventType)
}

func decodeAs[T Event](data []byte) (Event, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the event")
	}
	return v, nil
}
