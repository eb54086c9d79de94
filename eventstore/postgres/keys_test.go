package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
)

func newKeyStore(t *testing.T, master byte) (*postgres.KeyStore, *postgres.KeyStore, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewPool(t, pgtest.NewMigratedDatabase(t), 8)
	a, err := postgres.NewKeyStore(pool, bytes.Repeat([]byte{master}, postgres.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	b, err := postgres.NewKeyStore(pool, bytes.Repeat([]byte{master}, postgres.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	return a, b, pool
}

func TestKeyStoreCreatesOneKeyPerStream(t *testing.T) {
	ctx := context.Background()
	a, b, _ := newKeyStore(t, 7)
	if k, err := a.DataKey(ctx, "customer-1"); k != nil || err != nil {
		t.Fatalf("before creation: %x, %v", k, err)
	}
	// Two processes racing for the first key get the same one.
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			store := a
			if i%2 == 1 {
				store = b
			}
			k, err := store.CreateDataKey(ctx, "customer-1")
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if len(k) != 32 || !bytes.Equal(k, keys[0]) {
			t.Fatalf("keys differ: %x vs %x", k, keys[0])
		}
	}
	if k, err := b.DataKey(ctx, "customer-1"); err != nil || !bytes.Equal(k, keys[0]) {
		t.Fatalf("DataKey = %x, %v", k, err)
	}
	if k, _ := a.CreateDataKey(ctx, "customer-2"); bytes.Equal(k, keys[0]) {
		t.Fatal("two streams share a key")
	}
}

func TestDestroyedKeyIsGoneForGood(t *testing.T) {
	ctx := context.Background()
	a, b, pool := newKeyStore(t, 7)
	if _, err := a.CreateDataKey(ctx, "customer-1"); err != nil {
		t.Fatal(err)
	}
	for range 2 { // destroying twice succeeds
		if err := a.DestroyKey(ctx, "customer-1"); err != nil {
			t.Fatal(err)
		}
	}
	if k, err := a.DataKey(ctx, "customer-1"); k != nil || err != nil {
		t.Fatalf("after destruction: %x, %v", k, err)
	}
	if _, err := b.CreateDataKey(ctx, "customer-1"); !errors.Is(err, eventstore.ErrKeyDestroyed) {
		t.Fatalf("a new key for an erased stream: %v", err)
	}
	// A stream that never had a key cannot get one after its erasure.
	if err := b.DestroyKey(ctx, "customer-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateDataKey(ctx, "customer-3"); !errors.Is(err, eventstore.ErrKeyDestroyed) {
		t.Fatalf("a key after erasure: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM data_keys WHERE wrapped IS NOT NULL`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("wrapped keys left: %d, %v", n, err)
	}
}

func TestKeyStoreNeedsItsMasterKey(t *testing.T) {
	ctx := context.Background()
	a, _, pool := newKeyStore(t, 7)
	if _, err := a.CreateDataKey(ctx, "customer-1"); err != nil {
		t.Fatal(err)
	}
	other, err := postgres.NewKeyStore(pool, bytes.Repeat([]byte{8}, postgres.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.DataKey(ctx, "customer-1"); err == nil {
		t.Fatal("a data key unwrapped under another master key")
	}
	if bytes.Equal(a.IndexKey(), other.IndexKey()) {
		t.Fatal("the index key does not depend on the master key")
	}
	if _, err := postgres.NewKeyStore(pool, []byte("short")); err == nil {
		t.Fatal("a short master key was accepted")
	}
}

func TestDataKeysReadsManyAtOnce(t *testing.T) {
	ctx := context.Background()
	a, b, _ := newKeyStore(t, 7)
	k1, err := a.CreateDataKey(ctx, "customer-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateDataKey(ctx, "customer-2"); err != nil {
		t.Fatal(err)
	}
	if err := a.DestroyKey(ctx, "customer-2"); err != nil {
		t.Fatal(err)
	}
	got, err := b.DataKeys(ctx, []string{"customer-1", "customer-2", "customer-3", "customer-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !bytes.Equal(got["customer-1"], k1) {
		t.Fatalf("DataKeys = %x", got)
	}
}
