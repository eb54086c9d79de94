package messaging

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onboard/onboard/eventstore"
)

// sealCounts records the seal metrics.
type sealCounts struct {
	mu       sync.Mutex
	written  int
	restores map[string]int
}

func (c *sealCounts) SealWritten(int64) { c.mu.Lock(); c.written++; c.mu.Unlock() }
func (c *sealCounts) RestoreDetected(d string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.restores == nil {
		c.restores = map[string]int{}
	}
	c.restores[d]++
}
func (c *sealCounts) restored(d string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.restores[d] }

func newSealKey(t *testing.T) ed25519.PrivateKey {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// sealCfg is a sealing configuration on env's store with a short interval.
func (env *testEnv) sealCfg(key ed25519.PrivateKey, m SealMetrics) *SealConfig {
	return &SealConfig{Store: env.store, Key: key, Interval: 50 * time.Millisecond, Metrics: m}
}

// checkSealsMatchLog recomputes the digest over the whole log and checks
// every stored seal: numbered without gaps, signed by key, and at its
// cursor the digest and count the log has. It returns the seals.
func (env *testEnv) checkSealsMatchLog(t *testing.T, key ed25519.PrivateKey) []eventstore.Seal {
	t.Helper()
	ctx := context.Background()
	seals, err := env.store.Seals(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	if len(seals) == 0 {
		t.Fatal("no seals")
	}
	var (
		d      eventstore.Digest
		n      int64
		after  eventstore.Cursor
		events []eventstore.Envelope
	)
	for {
		page, err := env.store.ReadAll(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		events = append(events, page...)
		after = page[len(page)-1].Cursor()
	}
	i := 0
	for k, s := range seals {
		if s.Seq != int64(k+1) {
			t.Fatalf("seal %d has seq %d", k+1, s.Seq)
		}
		if err := s.Check([]ed25519.PublicKey{key.Public().(ed25519.PublicKey)}); err != nil {
			t.Fatal(err)
		}
		at, err := s.At()
		if err != nil {
			t.Fatal(err)
		}
		for i < len(events) && events[i].Cursor().Compare(at) <= 0 {
			d = d.Next(events[i].Hash)
			n++
			i++
		}
		if d != s.Digest || n != s.Events {
			t.Fatalf("seal %d at %s: digest %s, %d events; the log has %s, %d events", s.Seq, s.Cursor, s.Digest, s.Events, d, n)
		}
	}
	return seals
}

// TestRelaySeals checks that the active relay seals what it publishes, that
// its last seal at a clean stop covers every event, that a second relay
// continues the digest from the last seal, and that NATS holds the seals.
func TestRelaySeals(t *testing.T) {
	env := newTestEnv(t)
	key := newSealKey(t)
	m := &sealCounts{}
	env.appendEvents(4, 100, 5)
	r, stop := env.startRelay(RelayConfig{Seal: env.sealCfg(key, m)})
	waitFor(t, "relay to reach the head", env.relayedAll(r))
	env.appendEvents(2, 50, 3)
	waitFor(t, "relay to reach the head", env.relayedAll(r))
	if err := stop(); err != nil && err != context.Canceled {
		t.Fatal(err)
	}
	seals := env.checkSealsMatchLog(t, key)
	if last := seals[len(seals)-1]; last.Events != 500 {
		t.Fatalf("the last seal at a clean stop covers %d events, want 500", last.Events)
	}

	// A new leader resumes from the relay's cursor, past the last seal's
	// only when the old one died; either way the digest goes on.
	r2, stop2 := env.startRelay(RelayConfig{Seal: env.sealCfg(key, m)})
	env.appendEvents(3, 40, 4)
	waitFor(t, "second relay to reach the head", env.relayedAll(r2))
	waitFor(t, "a seal of every event", func() (bool, error) {
		s, _, err := env.store.LastSeal(context.Background())
		return s.Events == 620, err
	})
	_ = stop2()
	seals = env.checkSealsMatchLog(t, key)
	onNATS, err := ReadSeals(context.Background(), env.nc, SealConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if len(onNATS) != len(seals) || onNATS[len(onNATS)-1].Seq != seals[len(seals)-1].Seq {
		t.Fatalf("NATS holds %d seals, the store %d", len(onNATS), len(seals))
	}
}

// TestRestoreDetectedNATSBehind deletes the seals' stream while the relay
// is down: the next relay finds NATS behind the store, alerts and
// republishes every seal.
func TestRestoreDetectedNATSBehind(t *testing.T) {
	env := newTestEnv(t)
	key := newSealKey(t)
	m := &sealCounts{}
	env.appendEvents(2, 100, 5)
	r, stop := env.startRelay(RelayConfig{Seal: env.sealCfg(key, m)})
	waitFor(t, "relay to reach the head", env.relayedAll(r))
	_ = stop()
	seals := env.checkSealsMatchLog(t, key)
	if err := env.js.DeleteStream(context.Background(), DefaultSealStreamName); err != nil {
		t.Fatal(err)
	}

	_, stop = env.startRelay(RelayConfig{Seal: env.sealCfg(key, m)})
	defer stop()
	waitFor(t, "the seals republished", func() (bool, error) {
		got, err := ReadSeals(context.Background(), env.nc, SealConfig{})
		return err == nil && len(got) >= len(seals), nil
	})
	if m.restored("nats_behind") == 0 || m.restored("store_behind") != 0 {
		t.Fatalf("restore metrics %v, want nats_behind only", m.restores)
	}
}

// TestRestoreDetectedStoreBehind simulates a restore from an older backup
// (the newest events and seals gone, as a superuser deletes them): the
// relay finds the store behind the last seal on NATS, alerts, says so in
// Alert and starts a new epoch.
func TestRestoreDetectedStoreBehind(t *testing.T) {
	env := newTestEnv(t)
	key := newSealKey(t)
	m := &sealCounts{}
	ctx := context.Background()
	env.appendEvents(2, 100, 5)
	r, stop := env.startRelay(RelayConfig{Seal: env.sealCfg(key, m)})
	waitFor(t, "relay to reach the head", env.relayedAll(r))
	env.appendEvents(2, 100, 5)
	waitFor(t, "relay to reach the head", env.relayedAll(r))
	_ = stop()
	seals := env.checkSealsMatchLog(t, key)
	if len(seals) < 2 {
		t.Fatalf("want at least 2 seals, got %d", len(seals))
	}
	first := seals[0]
	restore(t, env, first)

	r, stop = env.startRelay(RelayConfig{Seal: env.sealCfg(key, m)})
	defer stop()
	waitFor(t, "the restore alert", func() (bool, error) { return m.restored("store_behind") > 0, nil })
	if a := r.Alert(); !strings.Contains(a, "the store is behind the last seal on NATS") {
		t.Fatalf("alert %q", a)
	}
	id, err := env.store.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.Epoch != 2 {
		t.Fatalf("epoch %d after the restore, want 2", id.Epoch)
	}
	// New events are sealed in the new epoch, after the store's last seal.
	env.appendEvents(1, 10, 2)
	waitFor(t, "a seal in the new epoch", func() (bool, error) {
		s, _, err := env.store.LastSeal(ctx)
		return s.Epoch == 2 && s.Seq == first.Seq+1, err
	})
	if m.restored("nats_behind") != 0 {
		t.Fatalf("restore metrics %v, want store_behind only", m.restores)
	}
}

// restore makes the store look restored from a backup taken right after
// seal keep: every later event and seal and the relay's cursor are gone.
func restore(t *testing.T, env *testEnv, keep eventstore.Seal) {
	t.Helper()
	ctx := context.Background()
	at, err := keep.At()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := env.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`SET session_replication_role = replica`, nil},
		{`DELETE FROM events WHERE (transaction_id::text::bigint, position) > ($1, $2)`, []any{int64(at.TransactionID), at.Position}},
		{`DELETE FROM seals WHERE seq > $1`, []any{keep.Seq}},
		{`DELETE FROM messaging_relay_cursor`, nil},
		{`SET session_replication_role = origin`, nil},
	} {
		if _, err := conn.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
}

// flakySeals fails every other AppendSeal, as a store that times out would.
type flakySeals struct {
	eventstore.SealStore
	mu    sync.Mutex
	calls int
}

func (f *flakySeals) AppendSeal(ctx context.Context, s eventstore.Seal) error {
	f.mu.Lock()
	f.calls++
	fail := f.calls%2 == 1
	f.mu.Unlock()
	if fail {
		return errors.New("injected: seal not stored")
	}
	return f.SealStore.AppendSeal(ctx, s)
}

// TestRelaySealFailureKeepsHeads makes half the seal writes fail while the
// relay publishes: the seals written still match the log, and every
// stream's newest event is a head of some seal, so a failed write's heads
// went into the next seal.
func TestRelaySealFailureKeepsHeads(t *testing.T) {
	env := newTestEnv(t)
	key := newSealKey(t)
	cfg := env.sealCfg(key, &sealCounts{})
	cfg.Store = &flakySeals{SealStore: env.store}
	r, stop := env.startRelay(RelayConfig{Seal: cfg})
	for range 5 {
		env.appendEvents(4, 20, 3)
		time.Sleep(2 * cfg.Interval)
	}
	waitFor(t, "relay to reach the head", env.relayedAll(r))
	if err := stop(); err != nil && err != context.Canceled {
		t.Fatal(err)
	}
	seals := env.checkSealsMatchLog(t, key)
	sealed := map[string]int64{}
	for _, s := range seals {
		for _, h := range s.Heads {
			sealed[h.StreamID] = max(sealed[h.StreamID], h.Version)
		}
	}
	events, err := env.store.ReadAll(context.Background(), eventstore.Cursor{}, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if last := seals[len(seals)-1]; last.Events != int64(len(events)) {
		t.Fatalf("the last seal covers %d events, want %d", last.Events, len(events))
	}
	newest := map[string]int64{}
	for _, e := range events {
		newest[e.StreamID] = max(newest[e.StreamID], e.Version)
	}
	for id, v := range newest {
		if sealed[id] != v {
			t.Errorf("stream %s: newest version %d, sealed head %d", id, v, sealed[id])
		}
	}
}

// TestRestoreDetectedStoreMoved records the store on another cluster than
// the one serving it, as a logical restore into a new cluster leaves it:
// the relay alerts and starts an epoch on the serving cluster.
func TestRestoreDetectedStoreMoved(t *testing.T) {
	env := newTestEnv(t)
	m := &sealCounts{}
	ctx := context.Background()
	before, err := env.store.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.ClusterID == "0" {
		t.Skip("this role cannot read pg_control_system()")
	}
	if _, err := env.pool.Exec(ctx, `INSERT INTO store_epochs (epoch, system_identifier, reason) VALUES (2, 42, 'elsewhere')`); err != nil {
		t.Fatal(err)
	}
	if id, err := env.store.Identity(ctx); err != nil || !id.Moved() {
		t.Fatalf("identity %+v (%v): want moved", id, err)
	}
	r, stop := env.startRelay(RelayConfig{Seal: env.sealCfg(newSealKey(t), m)})
	defer stop()
	waitFor(t, "the moved-store alert", func() (bool, error) { return m.restored("store_moved") > 0, nil })
	if a := r.Alert(); !strings.Contains(a, "the store moved to another cluster") {
		t.Fatalf("alert %q", a)
	}
	id, err := env.store.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.Epoch != 3 || id.Moved() || id.SystemID != before.ClusterID {
		t.Fatalf("identity after the alert %+v, want epoch 3 on system %s", id, before.ClusterID)
	}
}
