package messaging

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
)

// testEnv is a migrated database with an event store, an embedded NATS
// server and a connection to it.
type testEnv struct {
	t      testing.TB
	url    string
	pool   *pgxpool.Pool
	store  *postgres.Store
	server *Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream StreamConfig
	log    *slog.Logger

	mu sync.Mutex
	// lastAppended is the greatest cursor appendEvents saw.
	lastAppended eventstore.Cursor
}

const notifyChannel = "onboard_events"

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	ctx := context.Background()
	dbURL := pgtest.NewMigratedDatabase(t)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	// Modest: the server is shared with other packages' tests.
	cfg.MaxConns = 12
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(pool, postgres.Config{Channel: notifyChannel})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := StartEmbedded(EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nc := connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{t: t, url: dbURL, pool: pool, store: store, server: srv, nc: nc, js: js, log: testLogger()}
	t.Cleanup(func() {
		nc.Close()
		srv.Shutdown()
		store.Close()
		pool.Close()
	})
	return env
}

func testLogger() *slog.Logger {
	if os.Getenv("MESSAGING_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// connect connects to srv as admin.
func connect(t testing.TB, srv *Server) *nats.Conn {
	t.Helper()
	nc, err := srv.Connect(t.Name(), nats.ReconnectWait(100*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// startRelay runs a relay until the returned stop is called (or the test
// ends); stop waits for Run to return and returns its error.
func (env *testEnv) startRelay(cfg RelayConfig) (*Relay, func() error) {
	env.t.Helper()
	if cfg.Store == nil {
		cfg.Store = env.store
	}
	if cfg.Pool == nil {
		cfg.Pool = env.pool
	}
	if cfg.Conn == nil {
		cfg.Conn = env.nc
	}
	if cfg.NotifyChannel == "" {
		cfg.NotifyChannel = notifyChannel
	}
	if cfg.LockRetryInterval == 0 {
		cfg.LockRetryInterval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = env.log
	}
	cfg.Stream = env.stream
	r, err := NewRelay(cfg)
	if err != nil {
		env.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	env.t.Cleanup(func() { _ = stop() })
	return r, stop
}

// startRouter runs a router with the handlers added by add until the
// returned stop is called (or the test ends).
func (env *testEnv) startRouter(cfg RouterConfig, add func(r *Router)) (*Router, func()) {
	env.t.Helper()
	cfg.Pool = env.pool
	if cfg.Events == nil {
		cfg.Events = env.store
	}
	if cfg.Conn == nil {
		cfg.Conn = env.nc
	}
	cfg.Stream = env.stream
	if cfg.Logger == nil {
		cfg.Logger = env.log
	}
	r, err := NewRouter(context.Background(), cfg)
	if err != nil {
		env.t.Fatal(err)
	}
	add(r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-r.Running()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				env.t.Errorf("router: %v", err)
			}
		})
	}
	env.t.Cleanup(stop)
	return r, stop
}

// appendEvents appends perWriter events from each of writers goroutines,
// spread over streams per writer, and returns the ids in append order.
func (env *testEnv) appendEvents(writers, perWriter, streamsPerWriter int) []uuid.UUID {
	env.t.Helper()
	var mu sync.Mutex
	var ids []uuid.UUID
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	prefix := uuid.NewString()[:8]
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				streamID := fmt.Sprintf("customer-%s-w%d-s%d", prefix, w, i%streamsPerWriter)
				e := eventstore.NewEvent{
					ID:            uuid.Must(uuid.NewV7()),
					Type:          "customer.test_happened",
					SchemaVersion: 1,
					Data:          json.RawMessage(fmt.Sprintf(`{"writer":%d,"n":%d}`, w, i)),
					Metadata:      eventstore.Metadata{Actor: "test", CorrelationID: "corr-" + streamID},
				}
				res, err := env.store.Append(context.Background(), streamID, eventstore.Any, []eventstore.NewEvent{e})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				ids = append(ids, e.ID)
				mu.Unlock()
				env.mu.Lock()
				if res.Cursor().Compare(env.lastAppended) > 0 {
					env.lastAppended = res.Cursor()
				}
				env.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		env.t.Fatal(err)
	}
	return ids
}

// effects is a consumer whose effect is a row per event in a test table,
// written in the handler's transaction.
const effectsDDL = `CREATE TABLE IF NOT EXISTS test_effects (
	seq      bigserial PRIMARY KEY,
	handler  text NOT NULL,
	event_id uuid NOT NULL,
	stream_id text NOT NULL,
	version  bigint NOT NULL
)`

func (env *testEnv) effectsHandler(name string) Handler {
	env.t.Helper()
	if _, err := env.pool.Exec(context.Background(), effectsDDL); err != nil {
		env.t.Fatal(err)
	}
	return func(ctx context.Context, tx pgx.Tx, e eventstore.Envelope) error {
		_, err := tx.Exec(ctx, `INSERT INTO test_effects (handler, event_id, stream_id, version) VALUES ($1, $2, $3, $4)`,
			name, e.ID, e.StreamID, e.Version)
		return err
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// timeout: the machine is small and shared, so no timing is asserted.
func waitFor(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (env *testEnv) count(query string, args ...any) func() (int, error) {
	return func() (int, error) {
		var n int
		err := env.pool.QueryRow(context.Background(), query, args...).Scan(&n)
		return n, err
	}
}

// checkEffectsOnce asserts that handler applied each of ids exactly once.
func (env *testEnv) checkEffectsOnce(handler string, ids []uuid.UUID) {
	env.t.Helper()
	ctx := context.Background()
	var n, distinct, missing int
	err := env.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM test_effects WHERE handler = $1`, handler).Scan(&n, &distinct)
	if err != nil {
		env.t.Fatal(err)
	}
	if n != len(ids) || distinct != len(ids) {
		env.t.Errorf("handler %s: %d effects of %d distinct events, want %d each", handler, n, distinct, len(ids))
	}
	err = env.pool.QueryRow(ctx, `SELECT count(*) FROM unnest($1::uuid[]) AS id
		WHERE NOT EXISTS (SELECT 1 FROM test_effects WHERE handler = $2 AND event_id = id)`, ids, handler).Scan(&missing)
	if err != nil {
		env.t.Fatal(err)
	}
	if missing != 0 {
		env.t.Errorf("handler %s: %d events missing", handler, missing)
	}
}

// streamEventIDs returns the Nats-Msg-Id of every message on the events
// subjects, in stream order.
func (env *testEnv) streamEventIDs() []string {
	env.t.Helper()
	ctx := context.Background()
	s, err := env.js.Stream(ctx, env.streamName())
	if err != nil {
		env.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		env.t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		ids = append(ids, m.Header.Get(HeaderMsgID))
	}
	return ids
}

func (env *testEnv) streamName() string {
	c := env.stream
	c.setDefaults()
	return c.Name
}

// relayedAll reports whether the relay's cursor reached the last event
// appendEvents appended. (The store's Head is no target: an unrelated
// transaction in flight holds it back.)
func (env *testEnv) relayedAll(r *Relay) func() (bool, error) {
	return func() (bool, error) {
		env.mu.Lock()
		target := env.lastAppended
		env.mu.Unlock()
		c, err := r.Cursor(context.Background())
		if err != nil {
			return false, err
		}
		return c.Compare(target) >= 0, nil
	}
}
