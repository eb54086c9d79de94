package eventstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Digest is the running hash of the global log: the digest after an event
// is SHA-256(the digest before it || the event's hash), starting from the
// zero Digest, over every event in global order (Cursor order). The event's
// hash covers its content and its link to its stream's previous event, so
// removing, inserting, reordering or changing any event before a sealed
// position changes the digest at that position. The relay (which seals)
// and the audit (which verifies) both compute it with Next.
type Digest [sha256.Size]byte

// Next returns the digest after an event whose hash is eventHash.
func (d Digest) Next(eventHash []byte) Digest {
	if len(eventHash) == sha256.Size {
		var b [2 * sha256.Size]byte
		copy(b[:sha256.Size], d[:])
		copy(b[sha256.Size:], eventHash)
		return sha256.Sum256(b[:])
	}
	return sha256.Sum256(append(d[:len(d):len(d)], eventHash...))
}

// String is the digest in hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText encodes the digest in hex.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText decodes the hex form.
func (d *Digest) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(d) {
		return fmt.Errorf("digest: want %d hex digits, got %d", 2*len(d), len(b))
	}
	_, err := hex.Decode(d[:], b)
	return err
}

// Head is where a stream stood at a seal: its last version and that
// event's hash.
type Head struct {
	StreamID string `json:"stream"`
	Version  int64  `json:"version"`
	Hash     []byte `json:"hash"`
}

// EncodeHeads returns the canonical bytes of heads: sorted by stream id,
// each as length-prefixed stream id, version (int64) and length-prefixed
// hash, big endian. It sorts heads in place.
func EncodeHeads(heads []Head) []byte {
	slices.SortFunc(heads, func(a, b Head) int { return strings.Compare(a.StreamID, b.StreamID) })
	var b []byte
	for _, h := range heads {
		b = appendField(b, h.StreamID)
		b = binary.BigEndian.AppendUint64(b, uint64(h.Version))
		b = appendField(b, string(h.Hash))
	}
	return b
}

// DecodeHeads reads what EncodeHeads wrote.
func DecodeHeads(b []byte) ([]Head, error) {
	var out []Head
	field := func() ([]byte, error) {
		if len(b) < 4 {
			return nil, errors.New("decode heads: truncated")
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(len(b)-4) < uint64(n) {
			return nil, errors.New("decode heads: truncated")
		}
		f := b[4 : 4+n]
		b = b[4+n:]
		return f, nil
	}
	for len(b) > 0 {
		id, err := field()
		if err != nil {
			return nil, err
		}
		if len(b) < 8 {
			return nil, errors.New("decode heads: truncated")
		}
		v := int64(binary.BigEndian.Uint64(b))
		b = b[8:]
		h, err := field()
		if err != nil {
			return nil, err
		}
		out = append(out, Head{StreamID: string(id), Version: v, Hash: bytes.Clone(h)})
	}
	return out, nil
}

// HeadsDigest is SHA-256 of EncodeHeads(heads).
func HeadsDigest(heads []Head) Digest { return sha256.Sum256(EncodeHeads(heads)) }

// Seal is a signed statement of how far the log went: after the event at
// Cursor, the log held Events events and its digest was Digest. Heads are
// the streams that got events since the previous seal, where each then
// stood, so a verifier can name the streams that lost events. Seq numbers
// seals 1, 2, ... without gaps; Epoch and SystemID are the store's identity
// when it was sealed (see StoreIdentity).
type Seal struct {
	Seq         int64     `json:"seq"`
	Epoch       int64     `json:"epoch"`
	SystemID    string    `json:"system_id"`
	Cursor      string    `json:"cursor"`
	Events      int64     `json:"events"`
	Digest      Digest    `json:"digest"`
	Heads       []Head    `json:"heads"`
	HeadsDigest Digest    `json:"heads_digest"`
	SealedAt    time.Time `json:"sealed_at"`
	KeyID       string    `json:"key_id"`
	Signature   []byte    `json:"signature"`
}

// At returns the seal's cursor.
func (s Seal) At() (Cursor, error) {
	if s.Cursor == "" {
		return Start, nil
	}
	return ParseCursor(s.Cursor)
}

// signedBytes is what the signature covers: every field but the heads
// (covered through HeadsDigest) and the signature.
func (s Seal) signedBytes() []byte {
	b := []byte("onboard.seal.v1")
	b = binary.BigEndian.AppendUint64(b, uint64(s.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(s.Epoch))
	b = appendField(b, s.SystemID)
	b = appendField(b, s.Cursor)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Events))
	b = append(b, s.Digest[:]...)
	b = append(b, s.HeadsDigest[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.SealedAt.UnixMicro()))
	return appendField(b, s.KeyID)
}

// Sign sets the seal's heads digest, key id and signature. SealedAt is
// truncated to microseconds, the precision it is stored with.
func (s *Seal) Sign(key ed25519.PrivateKey) {
	s.SealedAt = s.SealedAt.UTC().Truncate(time.Microsecond)
	s.HeadsDigest = HeadsDigest(s.Heads)
	s.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	s.Signature = ed25519.Sign(key, s.signedBytes())
}

// ErrBadSeal means a seal's signature or heads do not verify.
var ErrBadSeal = errors.New("eventstore: bad seal")

// Check verifies the seal's signature with the key of its key id among
// keys, and its heads against its heads digest. It returns nil or an error
// wrapping ErrBadSeal.
func (s Seal) Check(keys []ed25519.PublicKey) error {
	var key ed25519.PublicKey
	for _, k := range keys {
		if KeyID(k) == s.KeyID {
			key = k
		}
	}
	switch {
	case key == nil:
		return fmt.Errorf("%w: seal %d is signed by key %q, which is not trusted", ErrBadSeal, s.Seq, s.KeyID)
	case !ed25519.Verify(key, s.signedBytes(), s.Signature):
		return fmt.Errorf("%w: seal %d: the signature does not match its content", ErrBadSeal, s.Seq)
	case HeadsDigest(slices.Clone(s.Heads)) != s.HeadsDigest:
		return fmt.Errorf("%w: seal %d: the stream heads do not match their digest", ErrBadSeal, s.Seq)
	}
	return nil
}

// KeyID names a seal key: the first 8 bytes of SHA-256 of the public key,
// in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// ParseSealKey reads a private seal key: the base64 (standard) encoding of
// its 32-byte seed, as ONBOARD_SEAL_KEY and key files hold it.
func ParseSealKey(s string) (ed25519.PrivateKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.SeedSize {
		return nil, fmt.Errorf("seal key: want the base64 of a %d-byte ed25519 seed", ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(b), nil
}

// EncodeSealKey is the form ParseSealKey reads.
func EncodeSealKey(key ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(key.Seed())
}

// ParsePublicKey reads a public seal key in base64 (standard).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public seal key: want the base64 of a %d-byte ed25519 key", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// EncodePublicKey is the form ParsePublicKey reads.
func EncodePublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// StoreIdentity names a store: the database cluster's system identifier
// (a restore of a physical backup keeps it, a logical restore into
// another cluster does not) and its epoch, which a new row starts when a
// restore is found.
type StoreIdentity struct {
	SystemID string
	Epoch    int64
	// ClusterID is the system identifier of the cluster serving the store
	// now ("0" when it cannot be read). It differs from SystemID once the
	// database was moved to another cluster, as a restore from a dump does.
	ClusterID string
}

// Moved reports whether the store's recorded cluster and the one serving
// it now are known and differ.
func (id StoreIdentity) Moved() bool {
	return id.SystemID != "0" && id.ClusterID != "0" && id.ClusterID != "" && id.SystemID != id.ClusterID
}

// ErrSealExists means a seal with that sequence number is already stored:
// another relay sealed it.
var ErrSealExists = errors.New("eventstore: seal already stored")

// SealStore keeps the seals, append-only.
type SealStore interface {
	// AppendSeal stores s durably; ErrSealExists when its Seq is taken.
	AppendSeal(ctx context.Context, s Seal) error
	// Seals returns the stored seals with Seq > afterSeq in Seq order, at
	// most limit of them.
	Seals(ctx context.Context, afterSeq int64, limit int) ([]Seal, error)
	// LastSeal returns the seal with the highest Seq; found is false when
	// there is none.
	LastSeal(ctx context.Context) (s Seal, found bool, err error)
	// Identity returns the store's identity.
	Identity(ctx context.Context) (StoreIdentity, error)
	// NewEpoch starts the next epoch, recording why, and returns the new
	// identity.
	NewEpoch(ctx context.Context, reason string) (StoreIdentity, error)
}
