package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/projections/projectiontest"
	"github.com/onboard/onboard/schema"
)

// Sizes are how much work each figure measures.
type Sizes struct {
	// Events is how many events the append figure appends per concurrency
	// level and side (Append and raw INSERT each), and how many the read
	// and relay figures read and publish.
	Events int `json:"events"`
	// ReplayEvents is about how many events of generated journeys the
	// rebuild and verify figures replay.
	ReplayEvents int `json:"replay_events"`
	// Customers is how many onboardings the end-to-end figure runs per
	// concurrency level.
	Customers int `json:"customers"`
	// AppendConcurrency and E2EConcurrency are the concurrency levels.
	AppendConcurrency []int `json:"append_concurrency"`
	E2EConcurrency    []int `json:"e2e_concurrency"`
	// Workers is how many worker roles the end-to-end figure runs, each
	// with a pool and a NATS connection of its own as a worker process
	// has, beside one runner of the other roles; 0 runs every role
	// together, as onboard dev does.
	Workers int `json:"workers"`
	// Idle is how long the end-to-end figure leaves the pipeline idle
	// after its last level before it measures the live heap again; 0
	// measures it once, at the end of the run.
	Idle time.Duration `json:"idle_ns"`
	// Plaintext runs the end-to-end figure without encrypting personal data
	// (no master key), to measure what encryption costs against a run with
	// it.
	Plaintext bool `json:"plaintext,omitempty"`
	// Unsealed runs the end-to-end figure without the relay sealing the
	// log, to measure what sealing costs against a run with it.
	Unsealed bool `json:"unsealed,omitempty"`
}

// DefaultSizes finish a whole run in a few minutes on two cores.
func DefaultSizes() Sizes {
	return Sizes{Events: 20000, ReplayEvents: 100000, Customers: 2000,
		AppendConcurrency: []int{1, 4, 16}, E2EConcurrency: []int{50, 200}, Idle: time.Minute}
}

// Validate reports every invalid size.
func (s Sizes) Validate() error {
	var errs []error
	if s.Events <= 0 || s.ReplayEvents <= 0 || s.Customers <= 0 {
		errs = append(errs, fmt.Errorf("sizes must be positive: events %d, replay events %d, customers %d", s.Events, s.ReplayEvents, s.Customers))
	}
	for _, c := range append(append([]int(nil), s.AppendConcurrency...), s.E2EConcurrency...) {
		if c <= 0 {
			errs = append(errs, fmt.Errorf("concurrency %d must be positive", c))
		}
	}
	if s.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers %d must not be negative", s.Workers))
	}
	if s.Idle < 0 {
		errs = append(errs, fmt.Errorf("idle %s must not be negative", s.Idle))
	}
	return errors.Join(errs...)
}

func (s Sizes) String() string {
	out := fmt.Sprintf("%d events (append per level and side, read, relay), %d replay events, %d onboardings per level",
		s.Events, s.ReplayEvents, s.Customers)
	if s.Workers > 0 {
		out += fmt.Sprintf(" through %d worker roles", s.Workers)
	}
	if s.Idle > 0 {
		out += fmt.Sprintf(", live heap again after %s idle", s.Idle)
	}
	return out
}

// Machine describes where a report was measured.
type Machine struct {
	CPU        string `json:"cpu"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	OS         string `json:"os"`
	Go         string `json:"go"`
	Postgres   string `json:"postgres"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d CPUs (GOMAXPROCS %d), %s, %s, %s", m.CPU, m.CPUs, m.GOMAXPROCS, m.OS, m.Go, m.Postgres)
}

// Env is what the figures of one run share: the Postgres server, in which
// each figure makes fresh databases that Close drops, and the sizes.
type Env struct {
	adminURL string
	sizes    Sizes
	progress io.Writer

	mu  sync.Mutex
	dbs []string

	journeysOnce sync.Once
	journeys     *Store
	journeysErr  error
}

// NewEnv checks that the Postgres server at databaseURL is reachable and
// returns an Env creating its databases there. The database named in the
// URL is only used to create and drop others ("postgres" when it does not
// exist). Progress lines go to progress.
func NewEnv(ctx context.Context, databaseURL string, sizes Sizes, progress io.Writer) (*Env, error) {
	if err := sizes.Validate(); err != nil {
		return nil, err
	}
	e := &Env{adminURL: databaseURL, sizes: sizes, progress: progress}
	conn, err := e.admin(ctx)
	if err != nil {
		return nil, err
	}
	return e, conn.Close(ctx)
}

// Sizes returns the sizes of the run.
func (e *Env) Sizes() Sizes { return e.sizes }

// Progressf writes one progress line.
func (e *Env) Progressf(format string, args ...any) {
	fmt.Fprintf(e.progress, "bench: "+format+"\n", args...)
}

// admin connects to the server's maintenance database.
func (e *Env) admin(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(e.adminURL)
	if err != nil {
		return nil, fmt.Errorf("bench: DATABASE_URL: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn, nil
	}
	cfg.Database = "postgres"
	conn, err2 := pgx.ConnectConfig(ctx, cfg)
	if err2 != nil {
		return nil, fmt.Errorf("bench: connect to Postgres: %w", errors.Join(err, err2))
	}
	return conn, nil
}

// NewDatabase creates an empty database for purpose and returns its URL;
// Close drops it.
func (e *Env) NewDatabase(ctx context.Context, purpose string) (string, error) {
	conn, err := e.admin(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "onboard_bench_" + purpose + "_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("bench: create database %s: %w", name, err)
	}
	e.mu.Lock()
	e.dbs = append(e.dbs, name)
	e.mu.Unlock()
	u, err := url.Parse(e.adminURL)
	if err != nil {
		return "", fmt.Errorf("bench: DATABASE_URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// Close drops every database the run created, even those still in use.
func (e *Env) Close(ctx context.Context) error {
	e.mu.Lock()
	dbs := e.dbs
	e.dbs = nil
	e.mu.Unlock()
	if e.journeys != nil {
		e.journeys.Close()
	}
	if len(dbs) == 0 {
		return nil
	}
	// The server may be out of connections for a moment (other clients);
	// leaving databases behind is worse than waiting.
	var (
		conn *pgx.Conn
		err  error
	)
	for attempt := range 30 {
		if conn, err = e.admin(ctx); err == nil || ctx.Err() != nil {
			break
		}
		e.Progressf("cannot connect to drop the databases (attempt %d): %v", attempt+1, err)
		time.Sleep(time.Second)
	}
	if err != nil {
		return fmt.Errorf("%w; left behind: %s", err, strings.Join(dbs, ", "))
	}
	defer conn.Close(ctx)
	var errs []error
	for _, name := range dbs {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			errs = append(errs, fmt.Errorf("bench: drop database %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// OpenStore creates a migrated database for purpose and returns an event
// store on a pool of its own of conns connections (closed with the store).
// Keep conns small: the Postgres server is shared.
func (e *Env) OpenStore(ctx context.Context, purpose string, conns int32) (*Store, error) {
	dbURL, err := e.NewDatabase(ctx, purpose)
	if err != nil {
		return nil, err
	}
	return OpenStore(ctx, dbURL, conns)
}

// Store is an event store that owns its pool: Close closes both.
type Store struct {
	*postgres.Store
}

// Close stops the store and closes its pool.
func (s *Store) Close() {
	s.Store.Close()
	s.Pool().Close()
}

// OpenStore migrates the database at dbURL and returns an event store on a
// pool of its own of at least conns connections.
func OpenStore(ctx context.Context, dbURL string, conns int32) (*Store, error) {
	if err := schema.Migrate(ctx, dbURL); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cfg.MaxConns = max(cfg.MaxConns, conns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: connect: %w", err)
	}
	s, err := postgres.New(pool, postgres.Config{})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{Store: s}, nil
}

// Journeys returns an event store holding about Sizes.ReplayEvents events
// of generated customer journeys (each customer's whole history in one
// append), made once per run and shared by the figures that replay it.
func (e *Env) Journeys(ctx context.Context) (*Store, error) {
	e.journeysOnce.Do(func() {
		e.journeys, e.journeysErr = e.seedJourneys(ctx)
	})
	return e.journeys, e.journeysErr
}

func (e *Env) seedJourneys(ctx context.Context) (*Store, error) {
	s, err := e.OpenStore(ctx, "journeys", int32(2*runtime.GOMAXPROCS(0)+2))
	if err != nil {
		return nil, err
	}
	e.Progressf("seeding about %d events of customer journeys", e.sizes.ReplayEvents)
	var events int64
	for round := uint64(0); events < int64(e.sizes.ReplayEvents); round++ {
		// Generated journeys average about 14 events.
		n := int(max((int64(e.sizes.ReplayEvents)-events)/14, 10))
		if _, err := projectiontest.Seed(ctx, s, projectiontest.Config{
			Customers: n, Seed: round + 1, Workers: 2 * runtime.GOMAXPROCS(0), WholeHistory: true,
		}); err != nil {
			s.Close()
			return nil, fmt.Errorf("bench: seed journeys: %w", err)
		}
		if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&events); err != nil {
			s.Close()
			return nil, fmt.Errorf("bench: seed journeys: %w", err)
		}
	}
	if _, err := s.Pool().Exec(ctx, `VACUUM ANALYZE events`); err != nil {
		s.Close()
		return nil, fmt.Errorf("bench: seed journeys: %w", err)
	}
	if err := WaitReadable(ctx, s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// DescribeMachine describes this machine and the Postgres server of env.
func (e *Env) DescribeMachine(ctx context.Context) Machine {
	m := Machine{CPU: cpuModel(), CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), Postgres: "unknown"}
	if conn, err := e.admin(ctx); err == nil {
		var v string
		if conn.QueryRow(ctx, `SHOW server_version`).Scan(&v) == nil {
			m.Postgres = "PostgreSQL " + strings.Fields(v)[0]
		}
		_ = conn.Close(ctx)
	}
	return m
}

// cpuModel reads the CPU's model name on Linux; elsewhere it is unknown.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// ProgressWriter is where progress lines go, for the logs of components a
// figure runs.
func (e *Env) ProgressWriter() io.Writer { return e.progress }
