package messaging

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
)

var (
	// ErrServerNotReady means the embedded NATS server did not accept
	// connections in time.
	ErrServerNotReady = errors.New("messaging: nats server not ready")
	// ErrInvalidConfig means a configuration failed validation.
	ErrInvalidConfig = errors.New("messaging: invalid config")
	// ErrInvalidMessage means a message is not a relayed event: a header is
	// missing or its body does not decode.
	ErrInvalidMessage = errors.New("messaging: invalid message")
	// ErrDeadLetterNotFound means no dead letter has the given id.
	ErrDeadLetterNotFound = errors.New("messaging: dead letter not found")
	// ErrDeadLetterResolved means a re-drive was asked for a dead letter
	// its handler has since handled: sending it again would do nothing.
	ErrDeadLetterResolved = errors.New("messaging: dead letter already resolved")
	// ErrPermanent marks a handler error that no retry can fix: the message
	// goes to the dead letters at once instead of after MaxDeliver.
	ErrPermanent = errors.New("messaging: permanent failure")
	// ErrDeliveriesExhausted means a handler failed on the last delivery it
	// was allowed.
	ErrDeliveriesExhausted = errors.New("messaging: deliveries exhausted")
	// ErrHandlerExists means a handler name is registered twice.
	ErrHandlerExists = errors.New("messaging: handler already registered")
)

// Permanent marks err as permanent: the router dead-letters the message on
// this delivery instead of retrying it. errors.Is(err, ErrPermanent) holds
// for the result, and the original error stays reachable with errors.Is/As.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() []error { return []error{e.err, ErrPermanent} }

// ExhaustedError is the error a handler's failure becomes on its last
// allowed delivery; it is what the dead-letter record carries. It wraps
// ErrDeliveriesExhausted and the handler's error.
type ExhaustedError struct {
	Handler string
	EventID uuid.UUID
	// Deliveries is the number of the delivery that failed.
	Deliveries uint64
	Err        error
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("handler %s, event %s, delivery %d: %v", e.Handler, e.EventID, e.Deliveries, e.Err)
}

// Unwrap returns the handler's error and ErrDeliveriesExhausted.
func (e *ExhaustedError) Unwrap() []error { return []error{e.Err, ErrDeliveriesExhausted} }
