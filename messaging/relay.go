package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	backoffv5 "github.com/cenkalti/backoff/v5"
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

// errStreamMoved means the stream is not at the sequence the relay last
// saw: it was recreated, or something else published to it (a redrive).
var errStreamMoved = errors.New("stream moved since the last publish")

// RelayConfig configures a Relay.
type RelayConfig struct {
	// Name identifies the relay: its cursor row and its advisory lock.
	// Relays with the same name share one cursor and only one of them is
	// active at a time. Default "onboarding".
	Name string
	// Store is read in global order from the relay's cursor.
	Store eventstore.AllReader
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
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics defaults to NopMetrics.
	Metrics Metrics

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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
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
	published atomic.Int64
	rewinds   atomic.Int64
	leads     atomic.Int64
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

// Cursor returns the relay's stored cursor: every event up to it has been
// acknowledged by JetStream.
func (r *Relay) Cursor(ctx context.Context) (eventstore.Cursor, error) {
	var tx, pos int64
	err := r.cfg.Pool.QueryRow(ctx,
		`SELECT transaction_id, position FROM messaging_relay_cursor WHERE relay = $1`, r.cfg.Name).Scan(&tx, &pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Cursor{}, fmt.Errorf("relay %s: read cursor: %w", r.cfg.Name, err)
	}
	return eventstore.Cursor{TransactionID: uint64(tx), Position: pos}, nil
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

// lead publishes while conn holds the lock. It returns when ctx is done or
// conn fails (the lock may be gone).
func (r *Relay) lead(ctx context.Context, conn *pgx.Conn) error {
	log := r.cfg.Logger.With("relay", r.cfg.Name)
	if r.cfg.NotifyChannel != "" {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{r.cfg.NotifyChannel}.Sanitize()); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	committed, incarnation, err := loadCursor(ctx, conn, r.cfg.Name)
	if err != nil {
		return err
	}
	s := leadState{committed: committed, from: committed, check: true, storedIncarnation: incarnation}
	reconnects := r.cfg.Conn.Stats().Reconnects
	failures := 0
	var ahead chan readResult
	// eager is the next short wait after activity (taking the lead counts:
	// appends notified before the LISTEN may still be held back); 0 means
	// wait for the polling interval.
	eager := time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if rc := r.cfg.Conn.Stats().Reconnects; rc != reconnects {
			reconnects = rc
			s.check = true
		}
		if s.check || time.Since(s.checkedAt) >= r.cfg.CheckInterval {
			if err := r.checkStream(ctx, &s, log); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				failures++
				log.Warn("relay: stream check failed, retrying", "err", err)
				if _, err := r.idle(ctx, conn, backoff(failures)); err != nil {
					return err
				}
				continue
			}
		}
		var batch []eventstore.Envelope
		var err error
		if ra := ahead; ra != nil {
			ahead = nil
			res := <-ra
			if res.err == nil && res.from == s.from && !s.check {
				batch = res.events
			}
		}
		if batch == nil {
			batch, err = r.read(ctx, s.from)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
			log.Warn("relay: read events failed, retrying", "err", err)
			if _, err := r.idle(ctx, conn, backoff(failures)); err != nil {
				return err
			}
			continue
		}
		if len(batch) == 0 {
			failures = 0
			if err := r.storeCursor(ctx, conn, &s); err != nil {
				return err
			}
			// Events that committed may not be safe to read yet: a
			// transaction elsewhere (any that writes, on the whole
			// server) holds the store's horizon back, and its end sends
			// no notification. After activity, look again soon, backing
			// off to the polling interval.
			d := r.cfg.PollInterval
			if eager > 0 {
				d = min(eager, d)
				eager *= 2
				if eager >= r.cfg.PollInterval {
					eager = 0
				}
			}
			woken, err := r.idle(ctx, conn, d)
			if err != nil {
				return err
			}
			if woken {
				eager = time.Millisecond
			}
			continue
		}
		eager = time.Millisecond
		// While JetStream acknowledges a full batch, read the next one.
		readAhead := func() {
			if len(batch) < r.cfg.BatchSize {
				return
			}
			from := batch[len(batch)-1].Cursor()
			ch := make(chan readResult, 1)
			ahead = ch
			go func() {
				events, err := r.read(ctx, from)
				ch <- readResult{from: from, events: events, err: err}
			}()
		}
		if err := r.publish(ctx, batch, &s, readAhead); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.check = true
			if errors.Is(err, errStreamMoved) {
				log.Debug("relay: stream moved, checking it", "err", err)
				continue
			}
			failures++
			log.Warn("relay: publish failed, publishing the batch again", "err", err, "from", s.from.String())
			if err := sleep(ctx, backoff(failures)); err != nil {
				return err
			}
			continue
		}
		failures = 0
		if r.cfg.afterPublish != nil {
			r.cfg.afterPublish(ctx, batch)
		}
		last := batch[len(batch)-1]
		s.from = last.Cursor()
		r.published.Add(int64(len(batch)))
		r.cfg.Metrics.EventsRelayed(len(batch), time.Since(last.RecordedAt))
		if time.Since(s.storedAt) >= r.cfg.CursorInterval {
			if err := r.storeCursor(ctx, conn, &s); err != nil {
				return err
			}
		}
	}
}

// read reads the next batch after from. Every append is durable when it
// returns, so what the relay publishes cannot be taken back by a crash of
// the database.
func (r *Relay) read(ctx context.Context, from eventstore.Cursor) ([]eventstore.Envelope, error) {
	return r.cfg.Store.ReadAll(ctx, from, r.cfg.BatchSize)
}

// storeCursor stores s.from as the cursor when the relay has come past the
// stored one. The stream incarnation is stored only once the stream has
// everything up to the cursor again: a relay that dies while re-publishing
// into a recreated stream leaves its successor a reason to start over.
func (r *Relay) storeCursor(ctx context.Context, conn *pgx.Conn, s *leadState) error {
	cmp := s.from.Compare(s.committed)
	if cmp < 0 || cmp == 0 && s.incarnation == s.storedIncarnation {
		return nil
	}
	if err := storeCursor(ctx, conn, r.cfg.Name, s.from, s.incarnation); err != nil {
		return err
	}
	s.committed = s.from
	s.storedIncarnation = s.incarnation
	s.storedAt = time.Now()
	return nil
}

// readResult is a batch read ahead.
type readResult struct {
	from   eventstore.Cursor
	events []eventstore.Envelope
	err    error
}

// leadState is what an active relay tracks between rounds.
type leadState struct {
	// committed is the stored cursor; from is where the next read starts:
	// everything up to it is acknowledged (it is before committed after a
	// rewind).
	committed, from eventstore.Cursor
	// storedAt is when the cursor was last stored.
	storedAt time.Time
	// check asks for a comparison of the stream with the cursor before
	// the next round; checkedAt is when the last one happened.
	check     bool
	checkedAt time.Time
	// lastSeq is the highest stream sequence seen; a new (not duplicate)
	// ack below it means the stream was recreated.
	lastSeq uint64
	// incarnation is the creation time (Unix ns) of the stream seen by the
	// last check; storedIncarnation the one stored with the cursor.
	incarnation, storedIncarnation int64
}

// checkStream compares the stream with the cursor and rewinds s.from when
// the stream lacks events the cursor says were published: JetStream may lose
// what it acknowledged (the fsync interval of a single node), and a stream
// may be deleted and recreated. Postgres may not lose anything, so the
// relay publishes those events again.
//
// A stream created after the one the cursor is about lacks everything: the
// relay starts over from the beginning of the log. Otherwise the cursor of
// the stream's last event is where it has to resume.
func (r *Relay) checkStream(ctx context.Context, s *leadState, log *slog.Logger) error {
	if err := EnsureStreams(ctx, r.js, r.cfg.Stream); err != nil {
		return err
	}
	stream, err := r.js.Stream(ctx, r.cfg.Stream.Name)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	info := stream.CachedInfo()
	created := info.Created.UnixNano()
	stored := eventstore.Start
	if created == s.storedIncarnation {
		msg, err := stream.GetLastMsgForSubject(ctx, r.cfg.Stream.AllEventsFilter())
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return fmt.Errorf("last stored event: %w", err)
		default:
			if stored, err = cursorOf(msg.Header); err != nil {
				return fmt.Errorf("last stored event (seq %d): %w", msg.Sequence, err)
			}
		}
	}
	if stored.Compare(s.from) < 0 {
		log.Warn("relay: stream lacks relayed events, publishing again",
			"from", stored.String(), "was", s.from.String(), "cursor", s.committed.String(),
			"recreated", created != s.storedIncarnation)
		s.from = stored
		r.rewinds.Add(1)
		r.cfg.Metrics.RelayRewound()
	}
	s.lastSeq = info.State.LastSeq
	s.incarnation = created
	s.check = false
	s.checkedAt = time.Now()
	return nil
}

// publish publishes batch and waits for every ack. The first event goes
// alone, on the condition that the stream is still at the last sequence
// seen: a stream deleted and recreated since then refuses it, and the relay
// rewinds before publishing anything out of order into the new stream. The
// rest go asynchronously, in a window of MaxPending.
//
// whileWaiting is called once every message is sent, before the acks are
// awaited.
func (r *Relay) publish(ctx context.Context, batch []eventstore.Envelope, s *leadState, whileWaiting func()) error {
	following := nextOfStream(batch)
	first, err := eventMsg(r.cfg.Stream, batch[0], following[0])
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.AckTimeout)
	ack, err := r.js.PublishMsg(pctx, first, jetstream.WithExpectStream(r.cfg.Stream.Name),
		jetstream.WithExpectLastSequence(s.lastSeq))
	cancel()
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			s.check = true
			return fmt.Errorf("publish event %s: %w: %w", batch[0].ID, errStreamMoved, err)
		}
		return fmt.Errorf("publish event %s: %w", batch[0].ID, err)
	}
	if !ack.Duplicate {
		s.lastSeq = ack.Sequence
	}
	rest := batch[1:]
	futures := make([]jetstream.PubAckFuture, 0, len(rest))
	for i, e := range rest {
		m, err := eventMsg(r.cfg.Stream, e, following[i+1])
		if err != nil {
			return err
		}
		f, err := r.js.PublishMsgAsync(m, jetstream.WithExpectStream(r.cfg.Stream.Name))
		if err != nil {
			return fmt.Errorf("publish event %s: %w", e.ID, err)
		}
		futures = append(futures, f)
	}
	whileWaiting()
	timer := time.NewTimer(r.cfg.AckTimeout)
	defer timer.Stop()
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				continue
			}
			if ack.Sequence <= s.lastSeq {
				// A new message got a sequence we have seen: the stream was
				// deleted and recreated, and may have lost what we
				// published before. Finish the batch, then check.
				s.check = true
			}
			s.lastSeq = ack.Sequence
		case err := <-f.Err():
			return fmt.Errorf("publish event %s: %w", rest[i].ID, err)
		case <-timer.C:
			return ErrAckTimeout
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// nextOfStream returns, for each event of batch, the next event of its
// stream in batch, or nil when there is none: what StreamConfig.Route is
// given to route it.
func nextOfStream(batch []eventstore.Envelope) []*eventstore.Envelope {
	out := make([]*eventstore.Envelope, len(batch))
	later := make(map[string]*eventstore.Envelope, len(batch))
	for i := len(batch) - 1; i >= 0; i-- {
		out[i] = later[batch[i].StreamID]
		later[batch[i].StreamID] = &batch[i]
	}
	return out
}

// idle waits up to d for a notification or ctx, and reports whether a
// notification came. It also proves the lock session alive: an error from
// it means the lock may be gone.
func (r *Relay) idle(ctx context.Context, conn *pgx.Conn, d time.Duration) (woken bool, err error) {
	if r.cfg.NotifyChannel == "" {
		if err := sleep(ctx, d); err != nil {
			return false, err
		}
		// Prove the session alive at the polling pace, not at every
		// short wait.
		if d >= r.cfg.PollInterval {
			if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
				return false, fmt.Errorf("lock session: %w", err)
			}
		}
		return false, nil
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_, err = conn.WaitForNotification(wctx)
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		return false, ctx.Err()
	case wctx.Err() != nil && !conn.IsClosed():
		return false, nil
	}
	return false, fmt.Errorf("lock session: %w", err)
}

func loadCursor(ctx context.Context, conn *pgx.Conn, relay string) (eventstore.Cursor, int64, error) {
	var tx, pos, created int64
	err := conn.QueryRow(ctx, `SELECT transaction_id, position, stream_created FROM messaging_relay_cursor
		WHERE relay = $1`, relay).Scan(&tx, &pos, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, 0, nil
	}
	if err != nil {
		return eventstore.Cursor{}, 0, fmt.Errorf("load cursor: %w", err)
	}
	return eventstore.Cursor{TransactionID: uint64(tx), Position: pos}, created, nil
}

// storeCursor stores the cursor and the stream incarnation it is about. It
// never moves the cursor back, so a rewind re-publishes without forgetting
// how far the relay had come.
func storeCursor(ctx context.Context, conn *pgx.Conn, relay string, c eventstore.Cursor, streamCreated int64) error {
	if c.TransactionID > math.MaxInt64 {
		return fmt.Errorf("store cursor %s: transaction id out of range", c)
	}
	_, err := conn.Exec(ctx, `
		INSERT INTO messaging_relay_cursor (relay, transaction_id, position, stream_created) VALUES ($1, $2, $3, $4)
		ON CONFLICT (relay) DO UPDATE SET transaction_id = excluded.transaction_id,
			position = excluded.position, stream_created = excluded.stream_created, updated_at = now()
		WHERE (messaging_relay_cursor.transaction_id, messaging_relay_cursor.position)
			<= (excluded.transaction_id, excluded.position)`,
		relay, int64(c.TransactionID), c.Position, streamCreated)
	if err != nil {
		return fmt.Errorf("store cursor %s: %w", c, err)
	}
	return nil
}

// backoff is the wait after the n-th consecutive failure: 100ms doubling to
// at most 2s.
func backoff(n int) time.Duration {
	b := &backoffv5.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, Multiplier: 2, MaxInterval: 2 * time.Second}
	b.Reset()
	d := b.NextBackOff()
	for i := 1; i < n && d < b.MaxInterval; i++ {
		d = b.NextBackOff()
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
