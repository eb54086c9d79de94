package postgres

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/eventstore"
)

// MasterKeySize is the size of the master key: 32 bytes.
const MasterKeySize = 32

// dataKeySize is the size of a data key: AES-256.
const dataKeySize = 32

// KeyStore is the Postgres eventstore.KeyStore: the data keys live in the
// data_keys table, each wrapped (AES-256-GCM, bound to its stream id) by a
// key derived from the master key, which never reaches the database. The
// email index key is derived from the master key too, under another label.
//
// Keys are remembered for KeyCacheTTL, so that the command path reads a
// customer's key once rather than per event; a key destroyed by another
// process is forgotten here within that time. It is safe for concurrent
// use.
type KeyStore struct {
	pool  *pgxpool.Pool
	wrap  cipher.AEAD
	index []byte

	mu    sync.Mutex
	cache map[string]cachedKey
	now   func() time.Time
}

var _ eventstore.KeyStore = (*KeyStore)(nil)

// KeyCacheTTL is how long a KeyStore remembers a key it read.
const KeyCacheTTL = time.Minute

// keyCacheSize bounds the remembered keys; past it the cache starts over.
const keyCacheSize = 1 << 16

type cachedKey struct {
	key []byte // nil: none or destroyed
	at  time.Time
}

// NewKeyStore returns the key store on pool under master, MasterKeySize
// bytes. The database must be migrated.
func NewKeyStore(pool *pgxpool.Pool, master []byte) (*KeyStore, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("master key: %d bytes, want %d", len(master), MasterKeySize)
	}
	wrapKey, err := hkdf.Key(sha256.New, master, nil, "onboard data key wrap v1", 32)
	if err != nil {
		return nil, err
	}
	index, err := hkdf.Key(sha256.New, master, nil, "onboard email index v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(wrapKey)
	if err != nil {
		return nil, err
	}
	wrap, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, err
	}
	return &KeyStore{pool: pool, wrap: wrap, index: index, cache: map[string]cachedKey{}, now: time.Now}, nil
}

// IndexKey implements eventstore.KeyStore.
func (k *KeyStore) IndexKey() []byte { return k.index }

// DataKey implements eventstore.KeyReader.
func (k *KeyStore) DataKey(ctx context.Context, streamID string) ([]byte, error) {
	if key, ok := k.cached(streamID); ok {
		return key, nil
	}
	var wrapped []byte
	err := k.pool.QueryRow(ctx, `SELECT wrapped FROM data_keys WHERE stream_id = $1`, streamID).Scan(&wrapped)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("data key of %s: %w", streamID, err)
	}
	return k.unwrapAndRemember(streamID, wrapped)
}

// DataKeys implements eventstore.KeyReader: the keys it does not remember
// in one statement.
func (k *KeyStore) DataKeys(ctx context.Context, streamIDs []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(streamIDs))
	var missing []string
	for _, id := range streamIDs {
		if key, ok := k.cached(id); ok {
			if key != nil {
				out[id] = key
			}
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	rows, err := k.pool.Query(ctx, `SELECT stream_id, wrapped FROM data_keys WHERE stream_id = ANY($1)`, missing)
	if err != nil {
		return nil, fmt.Errorf("data keys: %w", err)
	}
	found := map[string][]byte{}
	var id string
	var wrapped []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &wrapped}, func() error {
		found[id] = wrapped
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("data keys: %w", err)
	}
	for _, id := range missing {
		key, err := k.unwrapAndRemember(id, found[id])
		if err != nil {
			return nil, err
		}
		if key != nil {
			out[id] = key
		}
	}
	return out, nil
}

// CreateDataKey implements eventstore.KeyStore. It costs one statement
// when the stream has no key yet, none when the key is remembered.
func (k *KeyStore) CreateDataKey(ctx context.Context, streamID string) ([]byte, error) {
	if key, ok := k.cached(streamID); ok && key != nil {
		return key, nil
	}
	fresh := make([]byte, dataKeySize)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	wrapped, err := k.insertKey(ctx, streamID, k.wrap.Seal(nil, nil, fresh, []byte(streamID)))
	if errors.Is(err, pgx.ErrNoRows) {
		// Another caller made the stream's row: read it in a statement of
		// its own, which sees a row committed while the insert waited.
		err = k.pool.QueryRow(ctx, `SELECT wrapped FROM data_keys WHERE stream_id = $1`, streamID).Scan(&wrapped)
	}
	if err != nil {
		return nil, fmt.Errorf("create the data key of %s: %w", streamID, err)
	}
	if wrapped == nil {
		k.remember(streamID, nil)
		return nil, fmt.Errorf("create the data key of %s: %w", streamID, eventstore.ErrKeyDestroyed)
	}
	return k.unwrapAndRemember(streamID, wrapped)
}

// insertKey stores a new wrapped key unless the stream has a row; it
// returns pgx.ErrNoRows when it has.
//
// The insert commits without waiting for its WAL flush: the key is made
// for the stream's first encrypted append, which commits after it with a
// synchronous commit, and flushing the WAL up to that append's commit
// record flushes this earlier one too. So the key is durable whenever an
// event encrypted under it is, and a key lost in a crash encrypted
// nothing that survived. It saves the signup a second flush.
func (k *KeyStore) insertKey(ctx context.Context, streamID string, wrapped []byte) ([]byte, error) {
	// One statement: set_config(…, true) holds for the statement's own
	// transaction, whose commit reads it.
	var out []byte
	err := k.pool.QueryRow(ctx, `
WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),
ins AS (
    INSERT INTO data_keys (stream_id, wrapped) VALUES ($1, $2)
    ON CONFLICT (stream_id) DO NOTHING RETURNING wrapped
)
SELECT ins.wrapped FROM ins, async`, streamID, wrapped).Scan(&out)
	return out, err
}

// DestroyKey implements eventstore.KeyStore. The wrapped key is gone from
// the table once the statement commits (VACUUM reclaims the old row
// version; a backup taken before still holds it, under the master key).
func (k *KeyStore) DestroyKey(ctx context.Context, streamID string) error {
	_, err := k.pool.Exec(ctx, `
INSERT INTO data_keys (stream_id, wrapped, destroyed_at) VALUES ($1, NULL, now())
ON CONFLICT (stream_id) DO UPDATE SET wrapped = NULL, destroyed_at = coalesce(data_keys.destroyed_at, now())`, streamID)
	if err != nil {
		return fmt.Errorf("destroy the data key of %s: %w", streamID, err)
	}
	k.remember(streamID, nil)
	return nil
}

func (k *KeyStore) unwrapAndRemember(streamID string, wrapped []byte) ([]byte, error) {
	if wrapped == nil {
		k.remember(streamID, nil)
		return nil, nil
	}
	key, err := k.wrap.Open(nil, nil, wrapped, []byte(streamID))
	if err != nil {
		return nil, fmt.Errorf("data key of %s does not unwrap: wrong master key?", streamID)
	}
	k.remember(streamID, key)
	return key, nil
}

func (k *KeyStore) cached(streamID string) ([]byte, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.cache[streamID]
	if !ok || k.now().Sub(c.at) > KeyCacheTTL {
		return nil, false
	}
	return c.key, true
}

func (k *KeyStore) remember(streamID string, key []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.cache) >= keyCacheSize {
		clear(k.cache)
	}
	k.cache[streamID] = cachedKey{key: key, at: k.now()}
}
