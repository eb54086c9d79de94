package messaging

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/internal/pgtest"
)

// countingMetrics counts what the router and relay report.
type countingMetrics struct {
	NopMetrics
	mu      sync.Mutex
	handled map[string]int
	failed  map[string]int
	dead    map[string]int
}

func newCountingMetrics() *countingMetrics {
	return &countingMetrics{handled: map[string]int{}, failed: map[string]int{}, dead: map[string]int{}}
}

func (m *countingMetrics) MessageHandled(h string, _ time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handled[h]++
	if err != nil {
		m.failed[h]++
	}
}

func (m *countingMetrics) DeadLettered(h, _ string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dead[h]++
}

func (m *countingMetrics) get(f func() int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return f()
}

// TestDeadLetters: a handler that keeps failing sends each event to the dead
// letters after MaxDeliver deliveries, with the error recorded in the table
// and on the dead-letter subject, while other handlers are unaffected. A
// redrive after the fault is fixed resolves it.
func TestDeadLetters(t *testing.T) {
	env := newTestEnv(t)
	env.startRelay(RelayConfig{})
	metrics := newCountingMetrics()
	var fixed atomic.Bool
	var calls atomic.Int64
	failing := func(ctx context.Context, tx pgx.Tx, e eventstore.Envelope) error {
		calls.Add(1)
		if !fixed.Load() {
			return errors.New("billing provider said no")
		}
		return env.effectsHandler("failing")(ctx, tx, e)
	}
	router, _ := env.startRouter(RouterConfig{
		MaxDeliver: 3, BackOff: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}, Metrics: metrics,
	}, func(r *Router) {
		ctx := context.Background()
		if err := r.AddHandler(ctx, "failing", failing); err != nil {
			t.Fatal(err)
		}
		if err := r.AddHandler(ctx, "healthy", env.effectsHandler("healthy")); err != nil {
			t.Fatal(err)
		}
		if err := r.AddHandler(ctx, "healthy", env.effectsHandler("healthy")); !errors.Is(err, ErrHandlerExists) {
			t.Errorf("second AddHandler(healthy) = %v, want ErrHandlerExists", err)
		}
	})
	ids := env.appendEvents(1, 3, 1)
	dl := router.DeadLetters()
	ctx := context.Background()
	var dead []DeadLetter
	waitFor(t, "three dead letters", func() (bool, error) {
		var err error
		dead, err = dl.List(ctx, DeadLetterFilter{Handler: "failing", Status: DeadLetterDead})
		return len(dead) == 3, err
	})
	versions := map[uuid.UUID]int64{}
	for i, id := range ids {
		versions[id] = int64(i + 1)
	}
	for i, d := range dead {
		v, ok := versions[d.EventID]
		if !ok {
			t.Errorf("dead letter %d is event %s, not one of %v", i, d.EventID, ids)
		}
		delete(versions, d.EventID)
		if !strings.Contains(d.Error, "billing provider said no") || d.Deliveries != 3 {
			t.Errorf("dead letter %d: error %q after %d deliveries, want the handler's error after 3", i, d.Error, d.Deliveries)
		}
		if e, err := UnmarshalEnvelope(d.Payload); err != nil || e.ID != d.EventID || e.Version != v {
			t.Errorf("dead letter %d payload: %+v, %v", i, e, err)
		}
	}
	if got := calls.Load(); got != 9 {
		t.Errorf("failing handler called %d times, want 3 events x 3 deliveries", got)
	}
	// The metric counts a dead letter once it is published, after its
	// row: wait for the last one.
	waitFor(t, "the dead-letter metric at 3", func() (bool, error) {
		return metrics.get(func() int { return metrics.dead["failing"] }) == 3, nil
	})
	waitFor(t, "healthy handler", func() (bool, error) {
		n, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'healthy'`)()
		return n == 3, err
	})

	// The dead-letter subject carries them too, with the error.
	cons, err := env.js.OrderedConsumer(ctx, DefaultDeadLetterStreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{DefaultDeadLetterPrefix + ".failing"},
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(3, jetstream.FetchMaxWait(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		if !strings.Contains(m.Headers().Get(HeaderDeadLetterError), "billing provider said no") {
			t.Errorf("dead-letter message without the error: %v", m.Headers())
		}
	}
	if n != 3 {
		t.Errorf("dead-letter subject has %d messages, want 3", n)
	}

	fixed.Store(true)
	for _, d := range dead {
		if err := dl.Redrive(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := dl.Redrive(ctx, 999999); !errors.Is(err, ErrDeadLetterNotFound) {
		t.Errorf("Redrive(unknown) = %v, want ErrDeadLetterNotFound", err)
	}
	waitFor(t, "redriven dead letters to resolve", func() (bool, error) {
		got, err := dl.List(ctx, DeadLetterFilter{Handler: "failing", Status: DeadLetterResolved})
		return len(got) == 3, err
	})
	env.checkEffectsOnce("failing", ids)
	// Handled since: sending one again is refused, and changes nothing.
	if err := dl.Redrive(ctx, dead[0].ID); !errors.Is(err, ErrDeadLetterResolved) {
		t.Errorf("Redrive(resolved) = %v, want ErrDeadLetterResolved", err)
	}
	if got, err := dl.Get(ctx, dead[0].ID); err != nil || got.Status != DeadLetterResolved || got.RedriveCount != 1 {
		t.Errorf("after a refused redrive: %+v, %v; want resolved, redriven once", got, err)
	}
}

// TestDeadLettersReadOnlyWritesNothing: a store opened without a NATS
// connection, on a database where no handler ever ran, lists none and
// finds none, without creating the tables.
func TestDeadLettersReadOnlyWritesNothing(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t), 2)
	dl, err := NewDeadLetters(ctx, pool, nil, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dl.List(ctx, DeadLetterFilter{}); err != nil || len(got) != 0 {
		t.Errorf("List = %v, %v; want none", got, err)
	}
	if _, err := dl.Get(ctx, 1); !errors.Is(err, ErrDeadLetterNotFound) {
		t.Errorf("Get = %v, want ErrDeadLetterNotFound", err)
	}
	var tables int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'messaging_%'`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("%d messaging tables (%v), want none", tables, err)
	}
}

// TestPermanentAndPanic: a Permanent error dead-letters at once; a panic is
// a failed delivery like an error.
func TestPermanentAndPanic(t *testing.T) {
	env := newTestEnv(t)
	env.startRelay(RelayConfig{})
	var permanentCalls atomic.Int64
	router, _ := env.startRouter(RouterConfig{MaxDeliver: 2, BackOff: []time.Duration{time.Millisecond}}, func(r *Router) {
		ctx := context.Background()
		err := r.AddHandler(ctx, "permanent", func(context.Context, pgx.Tx, eventstore.Envelope) error {
			permanentCalls.Add(1)
			return Permanent(errors.New("malformed plan"))
		})
		if err != nil {
			t.Fatal(err)
		}
		err = r.AddHandler(ctx, "panicky", func(context.Context, pgx.Tx, eventstore.Envelope) error {
			panic("nil map")
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	env.appendEvents(1, 1, 1)
	ctx := context.Background()
	waitFor(t, "two dead letters", func() (bool, error) {
		got, err := router.DeadLetters().List(ctx, DeadLetterFilter{})
		return len(got) == 2, err
	})
	got, err := router.DeadLetters().List(ctx, DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range got {
		switch d.Handler {
		case "permanent":
			if d.Deliveries != 1 || !strings.Contains(d.Error, "malformed plan") {
				t.Errorf("permanent: %d deliveries, error %q", d.Deliveries, d.Error)
			}
		case "panicky":
			if d.Deliveries != 2 || !strings.Contains(d.Error, "panic: nil map") {
				t.Errorf("panicky: %d deliveries, error %q", d.Deliveries, d.Error)
			}
		}
	}
	if n := permanentCalls.Load(); n != 1 {
		t.Errorf("permanent handler called %d times, want 1", n)
	}
}

// TestDurableConsumer stops the router and starts another with the same
// handler name: it resumes where the first stopped, without JetStream
// delivering any event twice.
func TestDurableConsumer(t *testing.T) {
	env := newTestEnv(t)
	relay, _ := env.startRelay(RelayConfig{})
	m1 := newCountingMetrics()
	_, stop := env.startRouter(RouterConfig{Metrics: m1}, func(r *Router) {
		if err := r.AddHandler(context.Background(), "durable", env.effectsHandler("durable")); err != nil {
			t.Fatal(err)
		}
	})
	first := env.appendEvents(2, 50, 2)
	waitFor(t, "first router", func() (bool, error) {
		n, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'durable'`)()
		return n == len(first), err
	})
	stop()
	second := env.appendEvents(2, 50, 2)
	waitFor(t, "relay to reach the head", env.relayedAll(relay))

	m2 := newCountingMetrics()
	env.startRouter(RouterConfig{Metrics: m2}, func(r *Router) {
		if err := r.AddHandler(context.Background(), "durable", env.effectsHandler("durable")); err != nil {
			t.Fatal(err)
		}
	})
	all := append(first, second...)
	waitFor(t, "second router", func() (bool, error) {
		n, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'durable'`)()
		return n == len(all), err
	})
	env.checkEffectsOnce("durable", all)
	if h1, h2 := m1.get(func() int { return m1.handled["durable"] }), m2.get(func() int { return m2.handled["durable"] }); h1 != len(first) || h2 != len(second) {
		t.Errorf("deliveries: first router %d, second %d; want %d and %d", h1, h2, len(first), len(second))
	}
	ctx := context.Background()
	if n, err := PruneInbox(ctx, env.pool, time.Hour, 1000); err != nil || n != 0 {
		t.Errorf("PruneInbox(1h) = %d, %v; want nothing that young", n, err)
	}
	if n, err := PruneInbox(ctx, env.pool, -time.Hour, 1000); err != nil || n != int64(len(all)) {
		t.Errorf("PruneInbox(-1h) = %d, %v; want all %d rows", n, err, len(all))
	}
}

// TestRetriedEventsHandledOnce fails the first delivery of every third
// event: each comes back after the backoff and every event is applied once.
func TestRetriedEventsHandledOnce(t *testing.T) {
	env := newTestEnv(t)
	env.startRelay(RelayConfig{})
	effects := env.effectsHandler("flaky")
	var mu sync.Mutex
	failed := map[string]bool{}
	env.startRouter(RouterConfig{BackOff: []time.Duration{50 * time.Millisecond}}, func(r *Router) {
		err := r.AddHandler(context.Background(), "flaky", func(ctx context.Context, tx pgx.Tx, e eventstore.Envelope) error {
			mu.Lock()
			first := !failed[e.ID.String()]
			failed[e.ID.String()] = true
			mu.Unlock()
			if e.Version%3 == 2 && first {
				return errors.New("transient")
			}
			return effects(ctx, tx, e)
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	ids := env.appendEvents(4, 60, 5)
	waitFor(t, "consumer to apply every event", func() (bool, error) {
		n, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'flaky'`)()
		return n >= len(ids), err
	})
	env.checkEffectsOnce("flaky", ids)
}

// TestConcurrentDeliveriesHaveOneEffect: two deliveries of one event at
// once (a redelivery while the first still runs) both run the handler, and
// only one commits its effect and its inbox row.
func TestConcurrentDeliveriesHaveOneEffect(t *testing.T) {
	env := newTestEnv(t)
	r := &Router{cfg: RouterConfig{Pool: env.pool}}
	effects := env.effectsHandler("dup")
	var running sync.WaitGroup
	running.Add(2)
	slow := func(ctx context.Context, tx pgx.Tx, e eventstore.Envelope) error {
		running.Done()
		running.Wait() // both deliveries are inside the handler
		return effects(ctx, tx, e)
	}
	e := eventstore.Envelope{ID: uuid.Must(uuid.NewV7()), StreamID: "customer-dup", Version: 1, Type: "customer.test_happened"}
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- r.inTx(context.Background(), "dup", e, slow, false) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'dup'`)(); err != nil || n != 1 {
		t.Errorf("%d effects (%v), want 1", n, err)
	}
	if n, err := env.count(`SELECT count(*) FROM messaging_inbox WHERE handler = 'dup'`)(); err != nil || n != 1 {
		t.Errorf("%d inbox rows (%v), want 1", n, err)
	}
	// A later redelivery is skipped before the handler.
	if err := r.inTx(context.Background(), "dup", e, func(context.Context, pgx.Tx, eventstore.Envelope) error {
		t.Error("the handler ran for an event already handled")
		return nil
	}, false); err != nil {
		t.Fatal(err)
	}
}

// TestWithoutTx: a handler without a transaction gets a nil tx, handles
// each event once with its inbox row written after it, and a dead letter
// of it resolves on redrive.
func TestWithoutTx(t *testing.T) {
	env := newTestEnv(t)
	env.startRelay(RelayConfig{})
	effects := env.effectsHandler("notx")
	var fixed atomic.Bool
	var nonNilTx atomic.Int64
	h := func(ctx context.Context, tx pgx.Tx, e eventstore.Envelope) error {
		if tx != nil {
			nonNilTx.Add(1)
		}
		if e.Version == 2 && !fixed.Load() {
			return Permanent(errors.New("not yet"))
		}
		// Its effect is its own statement: not rolled back with anything.
		c, err := env.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error { return effects(ctx, tx, e) })
	}
	router, _ := env.startRouter(RouterConfig{}, func(r *Router) {
		if err := r.AddHandler(context.Background(), "notx", h, WithoutTx()); err != nil {
			t.Fatal(err)
		}
	})
	ids := env.appendEvents(1, 3, 1)
	ctx := context.Background()
	dl := router.DeadLetters()
	var dead []DeadLetter
	waitFor(t, "the second event dead and the others handled", func() (bool, error) {
		var err error
		if dead, err = dl.List(ctx, DeadLetterFilter{Handler: "notx", Status: DeadLetterDead}); err != nil || len(dead) != 1 {
			return false, err
		}
		n, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'notx'`)()
		return n == 2, err
	})
	fixed.Store(true)
	if err := dl.Redrive(ctx, dead[0].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the redriven dead letter to resolve", func() (bool, error) {
		got, err := dl.List(ctx, DeadLetterFilter{Handler: "notx", Status: DeadLetterResolved})
		return len(got) == 1, err
	})
	env.checkEffectsOnce("notx", ids)
	if n, err := env.count(`SELECT count(*) FROM messaging_inbox WHERE handler = 'notx'`)(); err != nil || n != 3 {
		t.Errorf("inbox rows %d (%v), want 3", n, err)
	}
	if n := nonNilTx.Load(); n != 0 {
		t.Errorf("the handler got a transaction %d times", n)
	}
}

// TestWithRoute: the relay publishes each event with the route the
// stream's Route names; a handler WithRoute gets the events of its route
// only, one without a route gets every event, routed to a handler or not.
func TestWithRoute(t *testing.T) {
	env := newTestEnv(t)
	env.stream.Route = func(e eventstore.Envelope, _ *eventstore.Envelope) string {
		if e.Version%2 == 0 {
			return "even"
		}
		return ""
	}
	metrics := newCountingMetrics()
	env.startRouter(RouterConfig{Metrics: metrics}, func(r *Router) {
		if err := r.AddHandler(context.Background(), "even", env.effectsHandler("even"), WithRoute("even")); err != nil {
			t.Fatal(err)
		}
		if err := r.AddHandler(context.Background(), "all", env.effectsHandler("all")); err != nil {
			t.Fatal(err)
		}
	})
	env.startRelay(RelayConfig{})
	ids := env.appendEvents(2, 10, 1) // two streams of versions 1..10
	var even []uuid.UUID
	if err := pgx.BeginFunc(context.Background(), env.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(context.Background(), `SELECT event_id FROM events WHERE event_id = ANY($1) AND version % 2 = 0`, ids)
		if err != nil {
			return err
		}
		even, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(even) != 10 {
		t.Fatalf("%d even-versioned events, want 10", len(even))
	}
	waitFor(t, "every event handled by both", func() (bool, error) {
		e, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'even'`)()
		if err != nil {
			return false, err
		}
		a, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'all'`)()
		return e >= len(even) && a >= len(ids), err
	})
	env.checkEffectsOnce("even", even)
	env.checkEffectsOnce("all", ids)
	// A delivery is counted once handled, after its effects committed.
	handled := func() int { return metrics.get(func() int { return metrics.handled["even"] }) }
	waitFor(t, "ten deliveries counted", func() (bool, error) { return handled() >= 10, nil })
	if got := handled(); got != 10 {
		t.Errorf("%d deliveries to the routed handler, want 10: events of no route reached it", got)
	}
}

// TestRetryTakenByAnotherInstance: two instances share a consumer and each
// stream's second event fails once. Its redelivery may go to the other
// instance; every event is handled, each once, well within AckWait.
func TestRetryTakenByAnotherInstance(t *testing.T) {
	env := newTestEnv(t)
	env.startRelay(RelayConfig{})
	effects := env.effectsHandler("shared")
	var mu sync.Mutex
	failed := map[string]bool{}
	handler := func(ctx context.Context, tx pgx.Tx, e eventstore.Envelope) error {
		mu.Lock()
		first := !failed[e.ID.String()]
		failed[e.ID.String()] = true
		mu.Unlock()
		if e.Version == 2 && first {
			return errors.New("transient")
		}
		return effects(ctx, tx, e)
	}
	for range 2 {
		env.startRouter(RouterConfig{AckWait: 30 * time.Second, BackOff: []time.Duration{50 * time.Millisecond}}, func(r *Router) {
			if err := r.AddHandler(context.Background(), "shared", handler); err != nil {
				t.Fatal(err)
			}
		})
	}
	ids := env.appendEvents(4, 24, 6) // 24 streams of 4 events
	deadline := time.Now().Add(25 * time.Second)
	for {
		n, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'shared'`)()
		if err != nil {
			t.Fatal(err)
		}
		if n >= len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events handled after 25s", n, len(ids))
		}
		time.Sleep(100 * time.Millisecond)
	}
	env.checkEffectsOnce("shared", ids)
}
