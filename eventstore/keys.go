package eventstore

import (
	"context"
	"errors"
)

// ErrKeyDestroyed: the stream's data key was destroyed (its personal data
// erased); a new one is never made for it.
var ErrKeyDestroyed = errors.New("data key destroyed")

// KeyReader finds streams' data keys, for consumers that decrypt
// personal data.
type KeyReader interface {
	// DataKey returns the stream's data key, or nil when the stream has
	// none: never made (nothing of it was encrypted) or destroyed.
	// Encrypted fields of such a stream read as erased. Safe for
	// concurrent use.
	DataKey(ctx context.Context, streamID string) ([]byte, error)
	// DataKeys is DataKey for many streams at once (a projection's batch),
	// keyed by stream id; a stream without a key is absent.
	DataKeys(ctx context.Context, streamIDs []string) (map[string][]byte, error)
}

// KeyStore holds one data key per stream for the stream's personal data,
// wrapped by a master key, outside the events: destroying a key erases
// what was encrypted under it while the log, and its hash chain, stay as they
// are. A KMS can stand in for the Postgres implementation.
type KeyStore interface {
	KeyReader
	// CreateDataKey returns the stream's data key, making it when the
	// stream has none; ErrKeyDestroyed when it was destroyed.
	CreateDataKey(ctx context.Context, streamID string) ([]byte, error)
	// DestroyKey destroys the stream's data key for good. Destroying a
	// destroyed key, or one never made, succeeds: the stream is marked so
	// that no key is made for it again.
	DestroyKey(ctx context.Context, streamID string) error
	// IndexKey is the key of the keyed hashes that reserve unique personal
	// values (emails) without storing them. It is not a data key: it
	// outlives every stream.
	IndexKey() []byte
}

// DataKeyOf returns a look-up of streamID's data key through keys, as
// domain.DecryptHistory takes it; nil when keys is nil (a reader without
// the key store, which then shows encrypted fields as such).
func DataKeyOf(ctx context.Context, keys KeyReader, streamID string) func() ([]byte, error) {
	if keys == nil {
		return nil
	}
	return func() ([]byte, error) { return keys.DataKey(ctx, streamID) }
}
