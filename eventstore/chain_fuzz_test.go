package eventstore_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
)

// chain builds a valid hash-chained stream of n events.
func chain(n int) []eventstore.Envelope {
	var out []eventstore.Envelope
	var prev []byte
	for i := 1; i <= n; i++ {
		e := eventstore.Envelope{
			ID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprint(i))), StreamID: "customer-x", StreamType: "customer",
			Version: int64(i), Position: int64(i * 10), Type: "customer.step_requested.v1", SchemaVersion: 1,
			Data:       []byte(fmt.Sprintf(`{"step":"billing","attempt":%d}`, i)),
			Metadata:   eventstore.Metadata{Actor: "system:billing", CorrelationID: "c"},
			RecordedAt: time.Date(2026, 11, 25, 12, 0, i, 0, time.UTC), PrevHash: prev,
		}
		e.Hash = eventstore.Hash(prev, e)
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

// FuzzVerifyChainFindsTampering flips one byte of one event's data, actor
// or hash, or truncates the stream in the middle, and expects VerifyChain
// to name exactly the version where the chain first breaks.
func FuzzVerifyChainFindsTampering(f *testing.F) {
	f.Add(uint8(0), uint8(3), uint16(5), uint8(1))
	f.Add(uint8(1), uint8(0), uint16(0), uint8(255))
	f.Add(uint8(2), uint8(7), uint16(40), uint8(16))
	f.Add(uint8(3), uint8(4), uint16(0), uint8(0))
	f.Fuzz(func(t *testing.T, what, which uint8, at uint16, flip uint8) {
		events := chain(8)
		k := int(which) % len(events)
		want := int64(k + 1)
		switch what % 4 {
		case 0: // data
			if flip == 0 {
				flip = 1
			}
			d := []byte(string(events[k].Data))
			d[int(at)%len(d)] ^= flip
			events[k].Data = d
		case 1: // actor
			events[k].Metadata.Actor += string(rune('a' + flip%26))
		case 2: // stored hash: this event's content no longer matches it
			if flip == 0 {
				flip = 1
			}
			h := append([]byte(nil), events[k].Hash...)
			h[int(at)%len(h)] ^= flip
			events[k].Hash = h
		case 3: // a row deleted: the versions after it no longer follow
			if k == len(events)-1 {
				events = events[:k] // dropping the last row is undetectable without the head: skip
				if err := eventstore.VerifyChain("customer-x", events); err != nil {
					t.Fatalf("a valid prefix failed: %v", err)
				}
				return
			}
			events = append(events[:k], events[k+1:]...)
		}
		err := eventstore.VerifyChain("customer-x", events)
		var ie *eventstore.IntegrityError
		if !errors.As(err, &ie) {
			t.Fatalf("tampering (%d at event %d) not detected: %v", what%4, k, err)
		}
		if ie.Version != want {
			t.Fatalf("tampering at version %d reported at version %d: %v", want, ie.Version, err)
		}
	})
}
