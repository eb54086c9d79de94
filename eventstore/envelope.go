package eventstore

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Metadata describes why and by whom an event was recorded. It is part of
// the hashed content of every event, so it cannot be altered unnoticed.
type Metadata struct {
	// Actor identifies who caused the event: a user, an API key or a
	// process manager ("system:billing").
	Actor string `json:"actor,omitempty"`
	// CorrelationID ties together everything one business request caused.
	CorrelationID string `json:"correlation_id,omitempty"`
	// CausationID is the id of the command or event that caused this event.
	CausationID string `json:"causation_id,omitempty"`
	// RequestID is the id of the HTTP request or message that carried the
	// command.
	RequestID string `json:"request_id,omitempty"`
	// IdempotencyKey is the key under which the command was deduplicated,
	// if any.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Trace carries the trace context (W3C traceparent, tracestate).
	Trace map[string]string `json:"trace,omitempty"`
}

// NewEvent is what callers append: the content of an event before the store
// assigns its stream, version, position, recording time and hash.
type NewEvent struct {
	// ID is the event id. It must be set by the caller (a UUIDv7 from the
	// injected id generator): re-appending an event with the same id and
	// content is a no-op, which is how retried commands stay idempotent.
	ID uuid.UUID
	// Type is the stable event name, for example "customer.signed_up".
	Type string
	// SchemaVersion is the version of Data's schema, starting at 1. Readers
	// upcast old versions; stored events are never rewritten.
	SchemaVersion int
	// Data is the event payload. It must be a JSON value; the store keeps
	// it compacted (insignificant white space removed) and otherwise
	// byte for byte.
	Data json.RawMessage
	// Metadata is stored and hashed with the event.
	Metadata Metadata
}

// Envelope is a stored event as read back from the store.
type Envelope struct {
	// ID is the event id given by the appender.
	ID uuid.UUID
	// StreamID is the stream (aggregate instance) the event belongs to.
	StreamID string
	// StreamType is the kind of stream, for example "customer".
	StreamType string
	// Version is the event's 1-based position within its stream; the
	// versions of a stream are contiguous.
	Version int64
	// Position is unique across the store and increases within one append,
	// but positions of concurrent appends may commit out of order: use
	// Cursor, not Position, to checkpoint a reader of the global log.
	Position int64
	// TransactionID identifies the append (database transaction) that
	// recorded the event. Together with Position it forms the Cursor.
	TransactionID uint64
	// Type is the event name.
	Type string
	// SchemaVersion is the version of Data's schema.
	SchemaVersion int
	// Data is the compacted JSON payload.
	Data json.RawMessage
	// Metadata is the event's metadata.
	Metadata Metadata
	// RecordedAt is the time the store recorded the event, from the
	// store's (database's) clock.
	RecordedAt time.Time
	// PrevHash is the Hash of the previous event of the stream, empty for
	// version 1.
	PrevHash []byte
	// Hash is SHA-256(PrevHash || CanonicalBytes(event)); see Hash.
	Hash []byte
}

// Cursor returns the event's place in the global order.
func (e Envelope) Cursor() Cursor {
	return Cursor{TransactionID: e.TransactionID, Position: e.Position}
}

// Cursor is a place in the global order of all events. The global order
// sorts events by (TransactionID, Position): it is the order in which
// appends become safe to read, so a reader that has processed everything up
// to a cursor can never later find an event that sorts before it. A
// checkpoint is the Cursor of the last processed event; the zero Cursor is
// the start of the log.
//
// Position alone is not a checkpoint: two appends may commit in the opposite
// order of their positions.
type Cursor struct {
	TransactionID uint64
	Position      int64
}

// Start is the cursor before the first event.
var Start = Cursor{}

// Compare returns -1, 0 or +1 when c sorts before, equal to or after o.
func (c Cursor) Compare(o Cursor) int {
	switch {
	case c.TransactionID < o.TransactionID:
		return -1
	case c.TransactionID > o.TransactionID:
		return 1
	case c.Position < o.Position:
		return -1
	case c.Position > o.Position:
		return 1
	}
	return 0
}

// IsZero reports whether c is the start of the log.
func (c Cursor) IsZero() bool { return c == Cursor{} }

// String formats c as "transactionID/position", the form ParseCursor reads
// (for message headers and stored checkpoints).
func (c Cursor) String() string {
	return strconv.FormatUint(c.TransactionID, 10) + "/" + strconv.FormatInt(c.Position, 10)
}

// ParseCursor parses the form written by Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	tx, pos, ok := strings.Cut(s, "/")
	if !ok {
		return Cursor{}, fmt.Errorf("parse cursor %q: want transactionID/position", s)
	}
	t, err := strconv.ParseUint(tx, 10, 64)
	if err != nil {
		return Cursor{}, fmt.Errorf("parse cursor %q: %w", s, err)
	}
	p, err := strconv.ParseInt(pos, 10, 64)
	if err != nil {
		return Cursor{}, fmt.Errorf("parse cursor %q: %w", s, err)
	}
	return Cursor{TransactionID: t, Position: p}, nil
}
