package eventstore_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/onboard/onboard/eventstore"
)

// TestSealSignAndCheck: a signed seal checks with its key and fails with
// another key, or once any signed field or a head changed.
func TestSealSignAndCheck(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize))
	keys := []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	seal := func() eventstore.Seal {
		s := eventstore.Seal{Seq: 3, Epoch: 1, SystemID: "1", Cursor: "10/20", Events: 20,
			Digest: eventstore.Digest{}.Next([]byte("x")), SealedAt: time.Unix(1, 2),
			Heads: []eventstore.Head{{StreamID: "b", Version: 2, Hash: []byte{1}}, {StreamID: "a", Version: 1, Hash: []byte{2}}}}
		s.Sign(key)
		return s
	}
	if err := seal().Check(keys); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*eventstore.Seal){
		"seq":     func(s *eventstore.Seal) { s.Seq++ },
		"events":  func(s *eventstore.Seal) { s.Events-- },
		"cursor":  func(s *eventstore.Seal) { s.Cursor = "10/19" },
		"digest":  func(s *eventstore.Seal) { s.Digest[0] ^= 1 },
		"head":    func(s *eventstore.Seal) { s.Heads[0].Version++ },
		"time":    func(s *eventstore.Seal) { s.SealedAt = s.SealedAt.Add(time.Microsecond) },
		"foreign": func(s *eventstore.Seal) { s.Sign(other) },
	} {
		s := seal()
		change(&s)
		if err := s.Check(keys); !errors.Is(err, eventstore.ErrBadSeal) {
			t.Errorf("%s changed: %v, want ErrBadSeal", name, err)
		}
	}
	heads, err := eventstore.DecodeHeads(eventstore.EncodeHeads(seal().Heads))
	if err != nil || len(heads) != 2 || heads[0].StreamID != "a" {
		t.Fatalf("heads round trip: %v %+v", err, heads)
	}
}

// BenchmarkDigestNext is the digest's cost per event, what sealing and
// verifying the seals add to each event.
func BenchmarkDigestNext(b *testing.B) {
	h := bytes.Repeat([]byte{9}, 32)
	var d eventstore.Digest
	for b.Loop() {
		d = d.Next(h)
	}
	_ = d
}
