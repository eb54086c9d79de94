package audit

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/onboard/onboard/eventstore"
)

// Anchor is what an auditor keeps outside the database: the last seal
// (signed) and the public key it verifies with. A verification given the
// anchor requires the seal in the seals table and checks the log against
// it, so deleting the newest seals together with the events they cover no
// longer passes.
type Anchor struct {
	Format     string            `json:"format"`
	ExportedAt time.Time         `json:"exported_at"`
	PublicKey  string            `json:"public_key,omitempty"`
	Seals      []eventstore.Seal `json:"seals"`
}

// AnchorFormat names the anchor file's format.
const AnchorFormat = "onboard.anchor.v1"

// NewAnchor returns the anchor of seal, with pub when known.
func NewAnchor(seal eventstore.Seal, pub ed25519.PublicKey, now time.Time) Anchor {
	a := Anchor{Format: AnchorFormat, ExportedAt: now.UTC(), Seals: []eventstore.Seal{seal}}
	if pub != nil {
		a.PublicKey = eventstore.EncodePublicKey(pub)
	}
	return a
}

// WriteAnchor writes a as indented JSON.
func WriteAnchor(w io.Writer, a Anchor) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(a)
}

// ReadAnchor reads an anchor file. Its public key, when it has one, is
// returned parsed: an anchor kept outside the database is as trusted as
// the key an auditor would give.
func ReadAnchor(r io.Reader) (Anchor, ed25519.PublicKey, error) {
	var a Anchor
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return a, nil, fmt.Errorf("read anchor: %w", err)
	}
	if a.Format != AnchorFormat {
		return a, nil, fmt.Errorf("read anchor: format %q, want %q", a.Format, AnchorFormat)
	}
	if len(a.Seals) == 0 {
		return a, nil, fmt.Errorf("read anchor: it holds no seal")
	}
	if a.PublicKey == "" {
		return a, nil, nil
	}
	pub, err := eventstore.ParsePublicKey(a.PublicKey)
	if err != nil {
		return a, nil, fmt.Errorf("read anchor: %w", err)
	}
	return a, pub, nil
}
