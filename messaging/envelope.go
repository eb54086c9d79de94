package messaging

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/onboard/onboard/eventstore"
)

// Headers of a relayed event. The payload carries the whole envelope; the
// headers repeat what routing, deduplication and the relay's rewind check
// need without decoding it.
const (
	// HeaderMsgID is JetStream's deduplication header; it holds the event id.
	HeaderMsgID = nats.MsgIdHdr
	// HeaderCursor holds the event's global cursor ("transactionID/position",
	// see eventstore.Cursor.String).
	HeaderCursor = "Onboard-Cursor"
	// HeaderPosition and HeaderTransactionID hold the two parts of the cursor.
	HeaderPosition      = "Onboard-Position"
	HeaderTransactionID = "Onboard-Transaction-Id"
	// HeaderStreamID, HeaderStreamType, HeaderVersion and HeaderEventType
	// describe the event.
	HeaderStreamID   = "Onboard-Stream-Id"
	HeaderStreamType = "Onboard-Stream-Type"
	HeaderVersion    = "Onboard-Version"
	HeaderEventType  = "Onboard-Event-Type"
	// HeaderCorrelationID is the event's correlation id, set when it has one.
	HeaderCorrelationID = "correlation_id"
)

// wireEnvelope is the JSON form of eventstore.Envelope on the wire; the
// store's type has no JSON tags because its encoding is not its concern.
type wireEnvelope struct {
	ID            uuid.UUID           `json:"id"`
	StreamID      string              `json:"stream_id"`
	StreamType    string              `json:"stream_type"`
	Version       int64               `json:"version"`
	Position      int64               `json:"position"`
	TransactionID uint64              `json:"transaction_id"`
	Type          string              `json:"type"`
	SchemaVersion int                 `json:"schema_version"`
	Data          json.RawMessage     `json:"data"`
	Metadata      eventstore.Metadata `json:"metadata"`
	RecordedAt    time.Time           `json:"recorded_at"`
	PrevHash      []byte              `json:"prev_hash,omitempty"`
	Hash          []byte              `json:"hash,omitempty"`
}

// MarshalEnvelope encodes e as the body of a relayed message.
func MarshalEnvelope(e eventstore.Envelope) ([]byte, error) {
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	b, err := json.Marshal(wireEnvelope{
		ID: e.ID, StreamID: e.StreamID, StreamType: e.StreamType, Version: e.Version,
		Position: e.Position, TransactionID: e.TransactionID, Type: e.Type,
		SchemaVersion: e.SchemaVersion, Data: data, Metadata: e.Metadata,
		RecordedAt: e.RecordedAt, PrevHash: e.PrevHash, Hash: e.Hash,
	})
	if err != nil {
		return nil, fmt.Errorf("marshal event %s: %w", e.ID, err)
	}
	return b, nil
}

// UnmarshalEnvelope decodes the body of a relayed message. Errors wrap
// ErrInvalidMessage.
func UnmarshalEnvelope(b []byte) (eventstore.Envelope, error) {
	var w wireEnvelope
	if err := json.Unmarshal(b, &w); err != nil {
		return eventstore.Envelope{}, fmt.Errorf("%w: decode envelope: %w", ErrInvalidMessage, err)
	}
	if w.ID == uuid.Nil {
		return eventstore.Envelope{}, fmt.Errorf("%w: envelope has no event id", ErrInvalidMessage)
	}
	return eventstore.Envelope{
		ID: w.ID, StreamID: w.StreamID, StreamType: w.StreamType, Version: w.Version,
		Position: w.Position, TransactionID: w.TransactionID, Type: w.Type,
		SchemaVersion: w.SchemaVersion, Data: w.Data, Metadata: w.Metadata,
		RecordedAt: w.RecordedAt, PrevHash: w.PrevHash, Hash: w.Hash,
	}, nil
}

// eventMsg builds the message the relay publishes for e, followed by next
// (nil when e is the last of its batch).
func eventMsg(cfg StreamConfig, e eventstore.Envelope, next *eventstore.Envelope) (*nats.Msg, error) {
	body, err := MarshalEnvelope(e)
	if err != nil {
		return nil, err
	}
	streamType := e.StreamType
	if streamType == "" {
		streamType = eventstore.DefaultStreamType(e.StreamID)
	}
	route := ""
	if cfg.Route != nil {
		route = cfg.Route(e, next)
	}
	m := nats.NewMsg(cfg.EventSubject(streamType, e.Type, e.StreamID, route))
	m.Data = body
	m.Header.Set(HeaderMsgID, e.ID.String())
	m.Header.Set(HeaderCursor, e.Cursor().String())
	m.Header.Set(HeaderPosition, strconv.FormatInt(e.Position, 10))
	m.Header.Set(HeaderTransactionID, strconv.FormatUint(e.TransactionID, 10))
	m.Header.Set(HeaderStreamID, e.StreamID)
	m.Header.Set(HeaderStreamType, streamType)
	m.Header.Set(HeaderVersion, strconv.FormatInt(e.Version, 10))
	m.Header.Set(HeaderEventType, e.Type)
	if e.Metadata.CorrelationID != "" {
		m.Header.Set(HeaderCorrelationID, e.Metadata.CorrelationID)
	}
	return m, nil
}

// cursorOf reads the cursor header of a relayed message.
func cursorOf(h nats.Header) (eventstore.Cursor, error) {
	v := h.Get(HeaderCursor)
	if v == "" {
		return eventstore.Cursor{}, fmt.Errorf("%w: no %s header", ErrInvalidMessage, HeaderCursor)
	}
	c, err := eventstore.ParseCursor(v)
	if err != nil {
		return eventstore.Cursor{}, fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	}
	return c, nil
}
