package messaging

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
)

// TestEndToEnd appends 10,000 events from 8 concurrent writers while a
// relay and a router run, and checks that the consumer applied each exactly
// once and that the stream holds each event once.
func TestEndToEnd(t *testing.T) {
	env := newTestEnv(t)
	relay, _ := env.startRelay(RelayConfig{})
	env.startRouter(RouterConfig{}, func(r *Router) {
		if err := r.AddHandler(context.Background(), "e2e", env.effectsHandler("e2e")); err != nil {
			t.Fatal(err)
		}
	})
	n := 10_000
	if testing.Short() {
		n = 1_000
	}
	ids := env.appendEvents(8, n/8, 25)
	waitFor(t, "relay to reach the head", env.relayedAll(relay))
	waitFor(t, "consumer to apply every event", func() (bool, error) {
		got, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'e2e'`)()
		return got >= len(ids), err
	})
	env.checkEffectsOnce("e2e", ids)
	assertStreamHoldsOnce(t, env, ids)
}

// assertStreamHoldsOnce checks that the events stream holds each of ids
// exactly once (and nothing else on the event subjects).
func assertStreamHoldsOnce(t *testing.T, env *testEnv, ids []uuid.UUID) {
	t.Helper()
	got := env.streamEventIDs()
	seen := make(map[string]int, len(got))
	for _, id := range got {
		seen[id]++
	}
	for _, id := range ids {
		if seen[id.String()] != 1 {
			t.Errorf("event %s is in the stream %d times, want 1", id, seen[id.String()])
			return
		}
	}
	if len(got) != len(ids) {
		t.Errorf("stream holds %d messages, want %d", len(got), len(ids))
	}
}

// TestRelayCrashBeforeCursorCommit cancels the relay after JetStream
// acknowledged a batch and before the cursor is stored: the next relay
// publishes the batch again, JetStream drops the duplicates and the
// deduplicating consumer applies every event once.
func TestRelayCrashBeforeCursorCommit(t *testing.T) {
	env := newTestEnv(t)
	ids := env.appendEvents(4, 100, 5)

	ctx, cancel := context.WithCancel(context.Background())
	var crashed atomic.Bool
	var firstBatch int
	r, err := NewRelay(RelayConfig{
		Store: env.store, Pool: env.pool, Conn: env.nc, NotifyChannel: notifyChannel,
		BatchSize: 150, Logger: env.log,
		afterPublish: func(_ context.Context, batch []eventstore.Envelope) {
			if crashed.CompareAndSwap(false, true) {
				firstBatch = len(batch)
				cancel()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	// The first batch holds up to 150 events: fewer when a transaction
	// elsewhere on the server holds the store's safe horizon back.
	if got := r.Stats().Published; got != int64(firstBatch) || firstBatch == 0 {
		t.Errorf("crashed relay counted %d acknowledged, want its first batch of %d", got, firstBatch)
	}
	c, err := r.Cursor(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsZero() {
		t.Fatalf("cursor after crash = %s, want the start", c)
	}
	if got := len(env.streamEventIDs()); got != firstBatch {
		t.Fatalf("stream holds %d messages after the crash, want the first batch of %d", got, firstBatch)
	}

	relay, _ := env.startRelay(RelayConfig{BatchSize: 150})
	env.startRouter(RouterConfig{}, func(r *Router) {
		if err := r.AddHandler(context.Background(), "dedup", env.effectsHandler("dedup")); err != nil {
			t.Fatal(err)
		}
	})
	waitFor(t, "relay to reach the head", env.relayedAll(relay))
	waitFor(t, "consumer to apply every event", func() (bool, error) {
		got, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'dedup'`)()
		return got >= len(ids), err
	})
	env.checkEffectsOnce("dedup", ids)
	assertStreamHoldsOnce(t, env, ids)
}

// TestNATSOutage stops the NATS server for a while as events are appended;
// after it is back the relay and the consumer catch up and lose nothing.
func TestNATSOutage(t *testing.T) {
	env := newTestEnv(t)
	relay, _ := env.startRelay(RelayConfig{AckTimeout: 2 * time.Second})
	env.startRouter(RouterConfig{AckWait: 5 * time.Second}, func(r *Router) {
		if err := r.AddHandler(context.Background(), "outage", env.effectsHandler("outage")); err != nil {
			t.Fatal(err)
		}
	})
	var ids []uuid.UUID
	ids = append(ids, env.appendEvents(2, 100, 4)...)
	waitFor(t, "relay to reach the head", env.relayedAll(relay))

	env.server.Shutdown()
	var wg sync.WaitGroup
	wg.Add(1)
	var during []uuid.UUID
	go func() {
		defer wg.Done()
		during = env.appendEvents(2, 100, 4)
	}()
	time.Sleep(2 * time.Second) // the outage, not an assertion
	wg.Wait()
	if err := env.server.Start(); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, during...)
	ids = append(ids, env.appendEvents(2, 100, 4)...)

	waitFor(t, "relay to reach the head", env.relayedAll(relay))
	waitFor(t, "consumer to apply every event", func() (bool, error) {
		got, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'outage'`)()
		return got >= len(ids), err
	})
	env.checkEffectsOnce("outage", ids)
	assertStreamHoldsOnce(t, env, ids)
}

// TestStreamRecreatedUnderLoad deletes and recreates the stream while
// events are appended: the relay notices and publishes again from the
// consumer's floor (or the start, before one is recorded), the consumer
// (whose durable went with the stream) is re-created and deduplicates, and
// nothing is lost.
func TestStreamRecreatedUnderLoad(t *testing.T) {
	env := newTestEnv(t)
	relay, _ := env.startRelay(RelayConfig{BatchSize: 50, CheckInterval: time.Second})
	env.startRouter(RouterConfig{AckWait: 5 * time.Second}, func(r *Router) {
		if err := r.AddHandler(context.Background(), "recreate", env.effectsHandler("recreate")); err != nil {
			t.Fatal(err)
		}
	})
	var wg sync.WaitGroup
	var ids []uuid.UUID
	wg.Add(1)
	go func() {
		defer wg.Done()
		ids = env.appendEvents(4, 150, 3)
	}()
	waitFor(t, "some events to be relayed", func() (bool, error) { return relay.Stats().Published >= 100, nil })
	ctx := context.Background()
	if err := env.js.DeleteStream(ctx, env.streamName()); err != nil {
		t.Fatal(err)
	}
	if err := EnsureStreams(ctx, env.js, env.stream); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	waitFor(t, "relay to reach the head", env.relayedAll(relay))
	if relay.Stats().Rewinds == 0 {
		t.Error("relay never rewound")
	}
	waitFor(t, "consumer to apply every event", func() (bool, error) {
		got, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'recreate'`)()
		return got >= len(ids), err
	})
	env.checkEffectsOnce("recreate", ids)
}

// TestTwoRelays runs two relays: only the one holding the lock publishes;
// when it stops, the other takes over.
func TestTwoRelays(t *testing.T) {
	env := newTestEnv(t)
	a, stopA := env.startRelay(RelayConfig{})
	waitFor(t, "relay a to take the lock", func() (bool, error) { return a.Stats().Active, nil })
	b, stopB := env.startRelay(RelayConfig{})

	first := env.appendEvents(2, 100, 4)
	waitFor(t, "relay a to reach the head", env.relayedAll(a))
	if b.Stats().Active || b.Stats().Published != 0 {
		t.Fatalf("standby relay: %+v, want inactive and silent", b.Stats())
	}
	if err := stopA(); !errors.Is(err, context.Canceled) {
		t.Fatalf("relay a: %v", err)
	}
	second := env.appendEvents(2, 100, 4)
	waitFor(t, "relay b to take over and reach the head", env.relayedAll(b))
	if got := b.Stats(); !got.Active || got.Published == 0 {
		t.Errorf("relay b after take-over: %+v, want active and publishing", got)
	}
	assertStreamHoldsOnce(t, env, append(first, second...))
	_ = stopB()
}

// TestRelayLosesLockSession kills the database session that holds the
// relay's lock: the relay stops publishing, another takes over.
func TestRelayLosesLockSession(t *testing.T) {
	env := newTestEnv(t)
	a, _ := env.startRelay(RelayConfig{PollInterval: 100 * time.Millisecond})
	waitFor(t, "relay a to take the lock", func() (bool, error) { return a.Stats().Active, nil })
	b, _ := env.startRelay(RelayConfig{PollInterval: 100 * time.Millisecond})

	// Terminate a's lock session; b (polling every 100ms) and a race for
	// the lock, and exactly one of them wins each time.
	// pg_locks is cluster-wide: only this test's database is touched.
	_, err := env.pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a lock to be taken again", func() (bool, error) {
		return a.Stats().Leads+b.Stats().Leads >= 2 && (a.Stats().Active || b.Stats().Active), nil
	})
	ids := env.appendEvents(2, 50, 2)
	waitFor(t, "the stream to hold every event", func() (bool, error) { return len(env.streamEventIDs()) >= len(ids), nil })
	if a.Stats().Active && b.Stats().Active {
		t.Error("both relays active")
	}
	assertStreamHoldsOnce(t, env, ids)
}

// TestRelayIdleKeepsLock lets an active relay wake from many notification
// timeouts: the lock session survives them (the relay leads once).
func TestRelayIdleKeepsLock(t *testing.T) {
	env := newTestEnv(t)
	relay, _ := env.startRelay(RelayConfig{PollInterval: 20 * time.Millisecond})
	waitFor(t, "relay to take the lock", func() (bool, error) { return relay.Stats().Active, nil })
	time.Sleep(time.Second) // some 50 idle rounds, not an assertion on time
	ids := env.appendEvents(1, 10, 1)
	waitFor(t, "relay to reach the head", env.relayedAll(relay))
	if got := relay.Stats(); got.Leads != 1 || !got.Active {
		t.Errorf("relay after idling: %+v, want one lead, still active", got)
	}
	assertStreamHoldsOnce(t, env, ids)
}
