package eventstore

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
)

var (
	// ErrConcurrencyConflict means the stream was not at the expected
	// version: another append won. Reload and decide again.
	ErrConcurrencyConflict = errors.New("eventstore: concurrency conflict")
	// ErrStreamNotFound means the stream has no events.
	ErrStreamNotFound = errors.New("eventstore: stream not found")
	// ErrEventIDConflict means an event id is already stored with other
	// content (or in another stream, or only part of a batch is stored).
	ErrEventIDConflict = errors.New("eventstore: event id already stored with other content")
	// ErrReservationTaken means a unique value is held by another stream.
	ErrReservationTaken = errors.New("eventstore: reservation taken")
	// ErrIdempotencyKeyUsed means a request with the same idempotency key
	// and fingerprint has already been stored: replay its response.
	ErrIdempotencyKeyUsed = errors.New("eventstore: idempotency key already used")
	// ErrIdempotencyKeyMismatch means the idempotency key was used before
	// for a request with another fingerprint.
	ErrIdempotencyKeyMismatch = errors.New("eventstore: idempotency key reused with another request")
	// ErrIntegrity means a stored event does not match its hash chain.
	ErrIntegrity = errors.New("eventstore: hash chain broken")
	// ErrInvalidEvent means the append's input is malformed.
	ErrInvalidEvent = errors.New("eventstore: invalid event")
)

// ConcurrencyError is returned by Append when the stream is not at the
// expected version. It wraps ErrConcurrencyConflict.
type ConcurrencyError struct {
	StreamID string
	Expected ExpectedVersion
	// Actual is the stream's version when the conflict was detected.
	Actual int64
}

func (e *ConcurrencyError) Error() string {
	return fmt.Sprintf("append to stream %q: expected version %s, stream is at %d: %v",
		e.StreamID, e.Expected, e.Actual, ErrConcurrencyConflict)
}

// Unwrap returns ErrConcurrencyConflict.
func (e *ConcurrencyError) Unwrap() error { return ErrConcurrencyConflict }

// EventIDError is returned by Append when an event id is already stored with
// other content. It wraps ErrEventIDConflict.
type EventIDError struct {
	EventID uuid.UUID
	// StreamID is the stream of the stored event.
	StreamID string
}

func (e *EventIDError) Error() string {
	return fmt.Sprintf("event %s (stored in stream %q): %v", e.EventID, e.StreamID, ErrEventIDConflict)
}

// Unwrap returns ErrEventIDConflict.
func (e *EventIDError) Unwrap() error { return ErrEventIDConflict }

// ReservationError is returned by Append when a reservation is held by
// another stream. It wraps ErrReservationTaken.
type ReservationError struct {
	Kind, Value string
	// OwnerStreamID is the stream that holds the reservation.
	OwnerStreamID string
}

func (e *ReservationError) Error() string {
	return fmt.Sprintf("reserve %s %q: held by stream %q: %v", e.Kind, e.Value, e.OwnerStreamID, ErrReservationTaken)
}

// Unwrap returns ErrReservationTaken.
func (e *ReservationError) Unwrap() error { return ErrReservationTaken }

// IdempotencyError is returned by Append when the idempotency key is already
// stored. It wraps ErrIdempotencyKeyUsed when the fingerprints match and
// ErrIdempotencyKeyMismatch when they differ.
type IdempotencyError struct {
	// Stored is the record already stored under the key.
	Stored StoredIdempotency
	// Err is ErrIdempotencyKeyUsed or ErrIdempotencyKeyMismatch.
	Err error
}

func (e *IdempotencyError) Error() string {
	return fmt.Sprintf("idempotency key %q in scope %q: %v", e.Stored.Key, e.Stored.Scope, e.Err)
}

// Unwrap returns Err.
func (e *IdempotencyError) Unwrap() error { return e.Err }

// IntegrityError is returned by Verify for the first event of a stream that
// does not match its hash chain. It wraps ErrIntegrity.
type IntegrityError struct {
	StreamID string
	// Version is the first version that does not verify.
	Version int64
	// Reason says what does not match.
	Reason string
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("stream %q version %d: %s: %v", e.StreamID, e.Version, e.Reason, ErrIntegrity)
}

// Unwrap returns ErrIntegrity.
func (e *IntegrityError) Unwrap() error { return ErrIntegrity }
