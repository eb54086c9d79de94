package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/eventstore"
)

// Config tunes a Store. The zero value is usable.
type Config struct {
	// Channel is the LISTEN/NOTIFY channel that wakes subscribers. Default
	// "onboard_events".
	Channel string
	// PollInterval is how often a subscriber reads without being woken,
	// the fallback when a notification is lost (a crash between commit and
	// notify, a dropped listening connection) or an old transaction held
	// events back. Default 1s.
	PollInterval time.Duration
	// BatchSize is how many events a subscriber reads at a time. Default
	// 1000.
	BatchSize int
	// NotifyInterval is the least time between two notifications the Store
	// sends to wake subscribers (see notify.go). Default 5ms.
	NotifyInterval time.Duration
}

func (c *Config) setDefaults() {
	if c.Channel == "" {
		c.Channel = "onboard_events"
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.NotifyInterval == 0 {
		c.NotifyInterval = 5 * time.Millisecond
	}
}

// Validate reports every invalid setting.
func (c Config) Validate() error {
	var errs []error
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("poll interval %v is negative", c.PollInterval))
	}
	if c.NotifyInterval < 0 {
		errs = append(errs, fmt.Errorf("notify interval %v is negative", c.NotifyInterval))
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("batch size %d is negative", c.BatchSize))
	}
	if len(c.Channel) > 63 {
		errs = append(errs, fmt.Errorf("channel %q is longer than 63 bytes", c.Channel))
	}
	return errors.Join(errs...)
}

// Store is the Postgres event store. It is safe for concurrent use. Close it
// to stop its notifier.
type Store struct {
	pool     *pgxpool.Pool
	ownsPool bool
	cfg      Config

	// wake asks the notifier to send one NOTIFY; see notify.go.
	wake   chan struct{}
	stop   context.CancelFunc
	closed chan struct{}
}

var _ eventstore.Store = (*Store)(nil)

// New returns a Store on pool, whose database must be migrated (Migrate).
// Close does not close pool.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("postgres event store: %w", err)
	}
	cfg.setDefaults()
	ctx, stop := context.WithCancel(context.Background())
	s := &Store{pool: pool, cfg: cfg, wake: make(chan struct{}, 1), stop: stop, closed: make(chan struct{})}
	go s.notifier(ctx)
	return s, nil
}

// Open connects to databaseURL (pgxpool settings such as pool_max_conns
// may be given in it) and returns a Store that owns the pool: Close closes
// it. The database must be migrated (package schema, `onboard migrate`).
func Open(ctx context.Context, databaseURL string, cfg Config) (*Store, error) {
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("postgres event store: connect: %w", err)
	}
	s, err := New(pool, cfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownsPool = true
	return s, nil
}

// Pool returns the Store's connection pool, for other components that share
// the database (projections store their read models there).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close stops the notifier and, when Open created the pool, closes it. It
// does not wait for running calls; cancel their contexts first.
func (s *Store) Close() {
	s.stop()
	<-s.closed
	if s.ownsPool {
		s.pool.Close()
	}
}
