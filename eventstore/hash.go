package eventstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// CanonicalBytes returns the bytes of e that its hash covers. Every field of
// the content is included and none is ambiguous: strings and JSON are
// length-prefixed (uint32, big endian), numbers are fixed-width big endian.
// In order:
//
//	id (16 bytes), stream id, stream type, version (int64), type,
//	schema version (int32), data, actor, correlation id, causation id,
//	request id, idempotency key, trace (CanonicalTrace),
//	recorded at (int64 microseconds since the Unix epoch)
//
// Position and transaction id are not covered: they describe the global
// log, not the stream, and Verify works on one stream. An implementation
// that computes the hash elsewhere (the Postgres store does it in SQL) must
// produce the same bytes.
func CanonicalBytes(e Envelope) []byte {
	trace := CanonicalTrace(e.Metadata.Trace)
	m := e.Metadata
	n := 16 + 8 + 4 + 8 + 12*4 + len(e.StreamID) + len(e.StreamType) + len(e.Type) + len(e.Data) +
		len(m.Actor) + len(m.CorrelationID) + len(m.CausationID) + len(m.RequestID) + len(m.IdempotencyKey) + len(trace)
	b := make([]byte, 0, n)
	b = append(b, e.ID[:]...)
	b = appendField(b, e.StreamID)
	b = appendField(b, e.StreamType)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Version))
	b = appendField(b, e.Type)
	b = binary.BigEndian.AppendUint32(b, uint32(int32(e.SchemaVersion)))
	b = appendField(b, string(e.Data))
	b = appendField(b, m.Actor)
	b = appendField(b, m.CorrelationID)
	b = appendField(b, m.CausationID)
	b = appendField(b, m.RequestID)
	b = appendField(b, m.IdempotencyKey)
	b = appendField(b, string(trace))
	b = binary.BigEndian.AppendUint64(b, uint64(e.RecordedAt.UnixMicro()))
	return b
}

func appendField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// CanonicalTrace returns the trace context as JSON with sorted keys, or nil
// when it is empty (so a nil and an empty map hash alike).
func CanonicalTrace(trace map[string]string) []byte {
	if len(trace) == 0 {
		return nil
	}
	b, err := json.Marshal(trace) // sorts keys
	if err != nil {
		panic(fmt.Sprintf("eventstore: marshal trace: %v", err)) // a map[string]string always marshals
	}
	return b
}

// Hash returns SHA-256(prev || CanonicalBytes(e)), the hash of e given the
// hash of the previous event of its stream (nil for version 1).
func Hash(prev []byte, e Envelope) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(CanonicalBytes(e))
	return h.Sum(nil)
}

// VerifyChain checks that events are the whole stream streamID in version
// order (versions 1..n), each linked to its predecessor's hash and matching
// its own. It returns nil or an *IntegrityError for the first event that
// does not verify. Implementations of Verifier may use it; so may tools that
// verify an exported stream.
func VerifyChain(streamID string, events []Envelope) error {
	var prev []byte
	for i, e := range events {
		want := int64(i + 1)
		switch {
		case e.Version != want:
			return &IntegrityError{StreamID: streamID, Version: want, Reason: fmt.Sprintf("version missing (found %d)", e.Version)}
		case e.StreamID != streamID:
			return &IntegrityError{StreamID: streamID, Version: want, Reason: fmt.Sprintf("event belongs to stream %q", e.StreamID)}
		case !bytes.Equal(e.PrevHash, prev):
			return &IntegrityError{StreamID: streamID, Version: want, Reason: "previous hash does not match the previous event"}
		case !bytes.Equal(Hash(prev, e), e.Hash):
			return &IntegrityError{StreamID: streamID, Version: want, Reason: "content does not match its hash"}
		}
		prev = e.Hash
	}
	return nil
}
