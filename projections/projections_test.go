package projections_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/projections"
	"github.com/onboard/onboard/projections/projectiontest"
)

type env struct {
	store *postgres.Store
	pool  *pgxpool.Pool
	proj  *projections.Projections
}

func newEnv(t testing.TB, src func(*postgres.Store) projections.Source) env {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewMigratedDatabase(t)
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	// Every projector holds a listening connection while it runs, and the
	// seeders append concurrently: the default pool (4 on 2 cores) is too
	// small.
	pcfg.MaxConns = 12
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := postgres.New(pool, postgres.Config{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	var s projections.Source = store
	if src != nil {
		s = src(store)
	}
	p, err := projections.New(projections.Config{Pool: store.Pool(), Source: s, RetryDelay: 20 * time.Millisecond, BatchSize: 200, RebuildBatchSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return env{store: store, pool: store.Pool(), proj: p}
}

// run starts the projectors and returns a function that stops them and
// waits until they have.
func (e env) run(t testing.TB) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.proj.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// lastStored is the cursor of the last event in the events table, whether
// or not it is safe to read yet. Tests wait for it rather than for Head:
// the safe horizon is cluster-wide, so a long transaction of another test
// package holds Head back.
func lastStored(t testing.TB, pool *pgxpool.Pool) eventstore.Cursor {
	t.Helper()
	var c eventstore.Cursor
	err := pool.QueryRow(context.Background(), `SELECT transaction_id, position FROM events
		ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&c.TransactionID, &c.Position)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// catchUp waits until every projection has applied every stored event.
func (e env) catchUp(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	last := lastStored(t, e.pool)
	for _, name := range projections.Names() {
		if err := e.proj.WaitFor(ctx, name, last); err != nil {
			t.Fatalf("projection %s did not catch up: %v", name, err)
		}
	}
}

// readAllStored reads the whole log, waiting for the safe horizon to pass
// the last stored event.
func readAllStored(t testing.TB, e env) []eventstore.Envelope {
	t.Helper()
	last := lastStored(t, e.pool)
	deadline := time.Now().Add(120 * time.Second)
	var out []eventstore.Envelope
	after := eventstore.Start
	for after.Compare(last) < 0 {
		batch, err := e.store.ReadAll(context.Background(), after, 10000)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the safe horizon did not pass %s", last)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		out = append(out, batch...)
		after = batch[len(batch)-1].Cursor()
	}
	return out
}

// expected computes the read models from scratch: every stream replayed
// through domain.FromHistory, and the provider calls counted from the log.
func expected(t testing.TB, store *postgres.Store, ids []uuid.UUID) (map[uuid.UUID]projections.Customer, []projections.ProviderCalls) {
	t.Helper()
	ctx := context.Background()
	want := make(map[uuid.UUID]projections.Customer, len(ids))
	calls := map[domain.Step]*projections.ProviderCalls{}
	for _, s := range domain.Steps() {
		calls[s] = &projections.ProviderCalls{Step: string(s), Provider: projections.ProviderOf(s)}
	}
	for _, id := range ids {
		envs, err := store.ReadStream(ctx, projections.CustomerStreamID(id), 1)
		if err != nil {
			t.Fatal(err)
		}
		history := make([]domain.Event, len(envs))
		var pausedAt, activatedAt *time.Time
		for i, e := range envs {
			ev, err := domain.DecodeEvent(e.Type, e.Data)
			if err != nil {
				t.Fatal(err)
			}
			history[i] = ev
			at := e.RecordedAt
			switch ev := ev.(type) {
			case domain.Paused:
				pausedAt = &at
			case domain.OnboardingCompleted:
				activatedAt = &at
			case domain.StepRequested:
				calls[ev.Step].Requested++
			case domain.StepSucceeded:
				calls[ev.Step].Succeeded++
			case domain.StepFailed:
				calls[ev.Step].Failed++
				if ev.Class == domain.ErrorPermanent {
					calls[ev.Step].PermanentFailures++
				}
			}
		}
		c, err := domain.FromHistory(id, history)
		if err != nil {
			t.Fatal(err)
		}
		s := c.Snapshot()
		if s.PausedStep == "" {
			pausedAt = nil
		}
		attempts := 0
		for _, st := range s.Steps {
			if st.Step == s.Step {
				attempts = st.Attempt
			}
		}
		first, last := envs[0], envs[len(envs)-1]
		want[id] = norm(projections.Customer{
			ID: id, Email: s.Email, Company: s.Company, ContactName: s.ContactName, Country: s.Country,
			Plan: string(s.Plan), State: string(s.State), Step: string(s.Step), Attempts: attempts,
			LastError: s.LastError, PausedStep: string(s.PausedStep), PauseReason: s.PauseReason, PausedAt: pausedAt,
			CreatedAt: first.RecordedAt, UpdatedAt: last.RecordedAt, ActivatedAt: activatedAt,
			Version: last.Version, Position: last.Position, CreatedBy: first.Metadata.Actor,
		})
	}
	var stats []projections.ProviderCalls
	for _, s := range domain.Steps() {
		stats = append(stats, *calls[s])
	}
	return want, stats
}

func norm(c projections.Customer) projections.Customer {
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	c.PausedAt, c.ActivatedAt = utc(c.PausedAt), utc(c.ActivatedAt)
	return c
}

// allCustomers reads the whole customer summary through the list query.
func allCustomers(t testing.TB, p *projections.Projections) map[uuid.UUID]projections.Customer {
	t.Helper()
	got := map[uuid.UUID]projections.Customer{}
	q := projections.ListQuery{Limit: projections.MaxListLimit}
	for {
		page, err := p.ListCustomers(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Items {
			got[c.ID] = norm(c)
		}
		if page.Next == uuid.Nil {
			return got
		}
		q.After = page.Next
	}
}

// assertMatchesReplay compares the read models with a replay from scratch,
// row by row.
func assertMatchesReplay(t *testing.T, e env, ids []uuid.UUID) {
	t.Helper()
	want, wantStats := expected(t, e.store, ids)
	got := allCustomers(t, e.proj)
	if len(got) != len(want) {
		t.Errorf("customer summary has %d rows, replay has %d", len(got), len(want))
	}
	mismatches := 0
	for id, w := range want {
		if g, ok := got[id]; !ok || fmt.Sprint(g) != fmt.Sprint(w) {
			if mismatches++; mismatches <= 5 {
				t.Errorf("customer %s:\n got %+v\nwant %+v", id, g, w)
			}
		}
	}
	if mismatches > 0 {
		t.Errorf("%d of %d customers differ from the replay", mismatches, len(want))
	}
	stats, err := e.proj.ProviderCallStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stats, wantStats) {
		t.Errorf("provider stats:\n got %+v\nwant %+v", stats, wantStats)
	}
}

// killingSource cancels the projector's subscription after every kill-th
// event, so batches die in the middle (while queued or while committing).
type killingSource struct {
	*postgres.Store
	kill      int64
	delivered atomic.Int64
	kills     atomic.Int64
}

func (k *killingSource) Subscribe(ctx context.Context, after eventstore.Cursor, h eventstore.Handler) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return k.Store.Subscribe(ctx, after, func(ctx context.Context, e eventstore.Envelope) error {
		if k.delivered.Add(1)%k.kill == 0 {
			k.kills.Add(1)
			cancel()
		}
		return h(ctx, e)
	})
}

// TestProjectionMatchesReplay runs 1,000 customers through the projectors
// while they are appended, killing the projectors mid-batch again and
// again, and compares the read models with a replay from scratch.
func TestProjectionMatchesReplay(t *testing.T) {
	var ks *killingSource
	e := newEnv(t, func(s *postgres.Store) projections.Source {
		ks = &killingSource{Store: s, kill: 997}
		return ks
	})
	ctx := context.Background()
	e.run(t)
	// A second runner competes with the first: batches serialise and the
	// loser resubscribes.
	e.run(t)
	// A third runner is killed (its context cancelled) every few
	// milliseconds while it works, so that some kills land mid-commit.
	seeded := make(chan struct{})
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		for i := 0; ; i++ {
			select {
			case <-seeded:
				return
			default:
			}
			rctx, cancel := context.WithTimeout(ctx, time.Duration(5+i%40)*time.Millisecond)
			_ = e.proj.Run(rctx)
			cancel()
		}
	}()
	ids, err := projectiontest.Seed(ctx, e.store, projectiontest.Config{
		Customers: 1000, Seed: 7, Workers: 6, Actors: []string{"client:shop", "client:market"},
	})
	close(seeded)
	<-killerDone
	if err != nil {
		t.Fatal(err)
	}
	e.catchUp(t)
	if ks.kills.Load() == 0 {
		t.Error("no projector was killed: the test proves nothing about restarts")
	}
	assertMatchesReplay(t, e, ids)

	// The journeys are varied enough to mean something.
	f, err := e.proj.Funnel(ctx, projections.FunnelQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []domain.State{domain.StateActive, domain.StateRejected, domain.StatePaused, domain.StateCancelled} {
		if f.States[string(s)] == 0 {
			t.Errorf("no customer ended %s: %v", s, f.States)
		}
	}
}

// TestRestartAfterStop stops the projectors, appends more, and restarts
// them: they resume from the checkpoint.
func TestRestartAfterStop(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	stop := e.run(t)
	ids, err := projectiontest.Seed(ctx, e.store, projectiontest.Config{Customers: 50, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.catchUp(t)
	stop()
	more, err := projectiontest.Seed(ctx, e.store, projectiontest.Config{Customers: 50, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Lag is measured against the safe head: wait until it covers the
	// new events.
	var lag projections.Lag
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if lag, err = e.proj.Lag(ctx, projections.Customers); err != nil {
			t.Fatal(err)
		}
		if lag.Head.Compare(lastStored(t, e.pool)) >= 0 || time.Now().After(deadline) {
			break
		}
	}
	if lag.Positions == 0 || lag.Seconds < 0 || lag.Head.Compare(lag.Checkpoint) <= 0 {
		t.Errorf("lag of a stopped projector = %+v, want behind", lag)
	}
	e.run(t)
	e.catchUp(t)
	assertMatchesReplay(t, e, append(ids, more...))
	lag, err = e.proj.Lag(ctx, projections.Customers)
	if err != nil {
		t.Fatal(err)
	}
	if lag.Positions != 0 || lag.Seconds != 0 {
		t.Errorf("lag after catching up = %+v, want none", lag)
	}
}

func TestApplyTwiceChangesNothing(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	ids, err := projectiontest.Seed(ctx, e.store, projectiontest.Config{Customers: 30, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	events := readAllStored(t, e)
	for _, name := range projections.Names() {
		// Overlapping batches: the second and third repeat what was applied.
		half := len(events) / 2
		for _, batch := range [][]eventstore.Envelope{events[:half], events[:half+10], events, events} {
			if err := e.proj.Apply(ctx, name, batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	assertMatchesReplay(t, e, ids)
}

func TestWaitForAndCursorAt(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	ids, err := projectiontest.Seed(ctx, e.store, projectiontest.Config{Customers: 5, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	// By position, with and without the stream hint.
	envs, err := e.store.ReadStream(ctx, projections.CustomerStreamID(ids[len(ids)-1]), 1)
	if err != nil {
		t.Fatal(err)
	}
	ev := envs[len(envs)-1]
	head := lastStored(t, e.pool)
	for _, hint := range []string{"", ev.StreamID, "customer-elsewhere"} {
		c, err := e.proj.CursorAt(ctx, ev.Position, hint)
		if err != nil || c != ev.Cursor() {
			t.Errorf("CursorAt(%d, %q) = %v, %v; want %v", ev.Position, hint, c, err, ev.Cursor())
		}
	}
	if _, err := e.proj.CursorAt(ctx, 1<<40, ""); !errors.Is(err, projections.ErrPositionNotFound) {
		t.Errorf("CursorAt(unknown) err = %v, want ErrPositionNotFound", err)
	}

	// Not running: the wait ends with how far behind it is.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = e.proj.WaitFor(wctx, projections.Customers, head)
	cancel()
	var be *projections.BehindError
	if !errors.As(err, &be) || !errors.Is(err, projections.ErrBehind) || !errors.Is(err, context.DeadlineExceeded) ||
		be.Target != head || !be.Checkpoint.IsZero() {
		t.Fatalf("WaitFor while stopped = %v, want BehindError at the start", err)
	}
	e.run(t)
	wctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.proj.WaitFor(wctx, projections.Customers, head); err != nil {
		t.Fatal(err)
	}
	if err := e.proj.WaitFor(ctx, "nope", head); !errors.Is(err, projections.ErrUnknownProjection) {
		t.Errorf("WaitFor(unknown) = %v", err)
	}
}

// TestRebuildWhileServing rebuilds both projections while customers are
// appended and the read models are read: readers never fail nor see fewer
// customers than before, and the result equals a replay.
func TestRebuildWhileServing(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.run(t)
	ids, err := projectiontest.Seed(ctx, e.store, projectiontest.Config{Customers: 200, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	e.catchUp(t)

	rctx, stopReading := context.WithCancel(ctx)
	readErr := make(chan error, 1)
	var reads atomic.Int64
	go func() {
		defer close(readErr)
		prev := 0
		for rctx.Err() == nil {
			_, err := e.proj.ListCustomers(rctx, projections.ListQuery{Limit: projections.MaxListLimit})
			var f projections.Funnel
			if err == nil {
				f, err = e.proj.Funnel(rctx, projections.FunnelQuery{})
			}
			if err == nil {
				_, err = e.proj.Customer(rctx, ids[0])
			}
			if err == nil {
				_, err = e.proj.ProviderCallStats(rctx)
			}
			if err != nil {
				if rctx.Err() == nil {
					readErr <- err
				}
				return
			}
			n := 0
			for _, c := range f.States {
				n += int(c)
			}
			if n < prev {
				readErr <- fmt.Errorf("a reader saw %d customers after %d", n, prev)
				return
			} else {
				prev = n
			}
			reads.Add(1)
		}
	}()
	var more []uuid.UUID
	var seedErr error
	seeded := make(chan struct{})
	go func() {
		defer close(seeded)
		more, seedErr = projectiontest.Seed(ctx, e.store, projectiontest.Config{Customers: 100, Seed: 6})
	}()
	for _, name := range projections.Names() {
		res, err := e.proj.Rebuild(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if res.From != 1 || res.To != 2 || res.Events == 0 {
			t.Errorf("rebuild %s = %+v", name, res)
		}
	}
	<-seeded
	if seedErr != nil {
		t.Fatal(seedErr)
	}
	e.catchUp(t)
	stopReading()
	if err := <-readErr; err != nil {
		t.Fatalf("reading during the rebuild: %v", err)
	}
	if reads.Load() == 0 {
		t.Error("nothing was read during the rebuild")
	}
	assertMatchesReplay(t, e, append(ids, more...))

	// The live projector follows the new version.
	extra, err := projectiontest.Seed(ctx, e.store, projectiontest.Config{Customers: 20, Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	e.catchUp(t)
	assertMatchesReplay(t, e, append(append(ids, more...), extra...))
	var tables int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'rm\_%\_v1'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("%d tables of version 1 left after the rebuild", tables)
	}
	if _, err := e.proj.Rebuild(ctx, "nope"); !errors.Is(err, projections.ErrUnknownProjection) {
		t.Errorf("Rebuild(unknown) = %v", err)
	}
}
