package messaging

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
)

// ErrAckTimeout means JetStream did not acknowledge a relayed batch in time;
// the relay publishes the batch again.
var ErrAckTimeout = errors.New("messaging: timed out waiting for jetstream acks")

// RelayStore is what the relay reads of the event store.
type RelayStore interface {
	eventstore.AllReader
	eventstore.StreamReader
}

// RelayConfig configures a Relay.
type RelayConfig struct {
	// Name identifies the relay: its cursor row and its advisory lock.
	// Relays with the same name share one cursor and only one of them is
	// active at a time. Default "onboarding".
	Name string
	// Store is read in global order from the relay's cursor; the stream
	// check reads events of a stream to match messages against it.
	Store RelayStore
	// Pool connects to the event store's database, where the relay keeps
	// its cursor and takes its advisory lock (on a dedicated connection
	// made from the pool's config).
	Pool *pgxpool.Pool
	// Conn is the NATS connection to publish on. It should reconnect
	// forever (nats.MaxReconnects(-1)); the relay notices reconnects and
	// checks the stream for lost messages after each.
	Conn *nats.Conn
	// Stream is the stream layout; see StreamConfig.
	Stream StreamConfig
	// BatchSize is how many events are read and published per round; the
	// cursor advances once per round. Default 1000.
	BatchSize int
	// MaxPending bounds the async publish window: the number of
	// publishes awaiting their ack. Default 4096.
	MaxPending int
	// AckTimeout is how long to wait for the acks of a batch before
	// publishing it again. Default 10s.
	AckTimeout time.Duration
	// NotifyChannel is the Postgres channel the event store notifies on
	// commit; the relay LISTENs on it to wake at once. Empty means polling
	// only.
	NotifyChannel string
	// PollInterval is the fallback wake-up when no notification comes.
	// Default 1s; 250ms when NotifyChannel is empty.
	PollInterval time.Duration
	// LockRetryInterval is how often a standby relay tries to take the
	// lock. Default 1s.
	LockRetryInterval time.Duration
	// CursorInterval is how often an active relay that is not idle stores
	// its cursor; an idle relay stores it before it waits. Storing less
	// often than every batch saves a write per batch; a relay that dies
	// publishes the events since again (duplicates JetStream and the
	// consumers drop). Default 100ms.
	CursorInterval time.Duration
	// CheckInterval is how often an active relay compares the stream's
	// last stored event with its cursor even without a reconnect, to catch
	// a stream that was deleted and recreated. Default 10s.
	CheckInterval time.Duration
	// FloorInterval is how often an active relay records the durable
	// consumers' floors (relay_floor.go), from which it publishes again
	// when NATS lost the stream. Default 2s.
	FloorInterval time.Duration
	// FloorRetention is how long the floor of a consumer that is no longer
	// seen (deleted, or not re-created yet after NATS lost it) still
	// counts, measured from the newest floor recorded. Keep it at least
	// the inbox retention. Default 7 days.
	FloorRetention time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics defaults to NopMetrics.
	Metrics Metrics
	// Seal, when set, makes the active relay seal the log; see SealConfig.
	Seal *SealConfig

	// afterPublish is a test hook called after a batch was acknowledged
	// and before the cursor is stored.
	afterPublish func(ctx context.Context, batch []eventstore.Envelope)
}

func (c *RelayConfig) setDefaults() {
	if c.Name == "" {
		c.Name = "onboarding"
	}
	c.Stream.setDefaults()
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 4096
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
		if c.NotifyChannel == "" {
			c.PollInterval = 250 * time.Millisecond
		}
	}
	if c.LockRetryInterval <= 0 {
		c.LockRetryInterval = time.Second
	}
	if c.CursorInterval <= 0 {
		c.CursorInterval = 100 * time.Millisecond
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = 10 * time.Second
	}
	if c.FloorInterval <= 0 {
		c.FloorInterval = 2 * time.Second
	}
	if c.FloorRetention <= 0 {
		c.FloorRetention = 7 * 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	if c.Seal != nil {
		seal := *c.Seal
		seal.setDefaults()
		c.Seal = &seal
	}
}

// Validate reports every invalid field at once.
func (c RelayConfig) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("store is required"))
	}
	if c.Pool == nil {
		errs = append(errs, errors.New("pool is required"))
	}
	if c.Conn == nil {
		errs = append(errs, errors.New("nats connection is required"))
	}
	if err := c.Stream.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Seal != nil && c.Seal.Store == nil {
		errs = append(errs, errors.New("seal: store is required"))
	}
	if c.Seal != nil && len(c.Seal.Key) != ed25519.PrivateKeySize {
		errs = append(errs, errors.New("seal: an ed25519 private key is required"))
	}
	return errors.Join(errs...)
}

// Relay publishes committed events from the event store to JetStream in
// global order, at least once, and keeps its cursor in Postgres.
//
// Each event is published with Nats-Msg-Id = event id, so JetStream drops
// re-publishes within the stream's duplicate window; the cursor advances
// only after JetStream acknowledged every event up to it. Only the relay
// holding the Postgres advisory lock for its name publishes; others wait
// and take over within LockRetryInterval after its connection is gone.
type Relay struct {
	cfg RelayConfig
	js  jetstream.JetStream

	active    atomic.Bool
	alertMu   sync.Mutex
	alerts    map[string]string
	published atomic.Int64
	rewinds   atomic.Int64
	leads     atomic.Int64
	// forgedSeq is the highest stream sequence of a forged message the
	// stream check reported; only the active relay's goroutine uses it.
	forgedSeq uint64
}

// RelayStats are counters of one Relay since it was created.
type RelayStats struct {
	// Active reports whether the relay holds the lock now.
	Active bool
	// Published counts events acknowledged by JetStream (re-publishes
	// included).
	Published int64
	// Rewinds counts the times the relay found the stream behind its
	// cursor and went back.
	Rewinds int64
	// Leads counts the times the relay took the lock.
	Leads int64
}

// NewRelay validates cfg and returns a relay; Run starts it.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new relay: %w: %w", ErrInvalidConfig, err)
	}
	js, err := jetstream.New(cfg.Conn,
		jetstream.WithPublishAsyncMaxPending(cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("new relay: %w", err)
	}
	return &Relay{cfg: cfg, js: js}, nil
}

// Stats returns the relay's counters.
func (r *Relay) Stats() RelayStats {
	return RelayStats{
		Active:    r.active.Load(),
		Published: r.published.Load(),
		Rewinds:   r.rewinds.Load(),
		Leads:     r.leads.Load(),
	}
}

// Run ensures the streams, then waits for the relay lock and
// publishes until ctx is done, when it returns ctx.Err(). Losing the
// database connection that holds the lock sends the relay back to waiting;
// NATS outages are retried forever.
func (r *Relay) Run(ctx context.Context) error {
	log := r.cfg.Logger.With("relay", r.cfg.Name)
	for {
		conn, err := r.acquireLock(ctx)
		if err != nil {
			return err
		}
		r.leads.Add(1)
		r.active.Store(true)
		log.Info("relay: took the lock, publishing")
		err = r.lead(ctx, conn)
		r.active.Store(false)
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = conn.Close(closeCtx) // closing the session releases the lock
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("relay: lost the lock, waiting to take it again", "err", err)
		if err := sleep(ctx, r.cfg.LockRetryInterval); err != nil {
			return err
		}
	}
}

// acquireLock returns a dedicated connection holding the relay's session
// advisory lock, trying every LockRetryInterval until ctx is done.
func (r *Relay) acquireLock(ctx context.Context) (*pgx.Conn, error) {
	var conn *pgx.Conn
	for {
		if conn == nil {
			c, err := r.connect(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				r.cfg.Logger.Warn("relay: connect for lock failed", "relay", r.cfg.Name, "err", err)
			}
			conn = c
		}
		if conn != nil {
			var locked bool
			err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, r.lockKey()).Scan(&locked)
			switch {
			case err == nil && locked:
				return conn, nil
			case err != nil:
				if ctx.Err() != nil {
					_ = conn.Close(context.WithoutCancel(ctx))
					return nil, ctx.Err()
				}
				_ = conn.Close(ctx)
				conn = nil
			}
		}
		if err := sleep(ctx, r.cfg.LockRetryInterval); err != nil {
			if conn != nil {
				_ = conn.Close(context.WithoutCancel(ctx))
			}
			return nil, err
		}
	}
}

// connect opens the relay's own session. Its context watcher sets a
// deadline instead of sending a cancel request, so that waking from
// WaitForNotification leaves the session (and its lock) intact.
func (r *Relay) connect(ctx context.Context) (*pgx.Conn, error) {
	cc := r.cfg.Pool.Config().ConnConfig.Copy()
	cc.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	// The session only writes the cursor: losing its last writes in a
	// database crash means publishing some events again, which is safe,
	// so it need not wait for the WAL flush.
	cc.RuntimeParams["synchronous_commit"] = "off"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("relay %s: connect: %w", r.cfg.Name, err)
	}
	return conn, nil
}

func (r *Relay) lockKey() string { return "onboard.messaging.relay:" + r.cfg.Name }
