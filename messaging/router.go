package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
)

// Handler handles one relayed event inside a Postgres transaction. Its
// effect on the database must go through tx: the router commits tx together
// with the inbox row (handler name, event id) that makes a redelivery a
// no-op, and rolls it back when Handler returns an error.
//
// Effects outside tx (an external call, an append to the event store) must
// be idempotent on their own, keyed for example by the event id: a crash
// after such an effect and before the commit delivers the event again.
//
// Returning an error asks for redelivery after a backoff; after MaxDeliver
// deliveries, or at once for an error wrapped with Permanent, the event
// becomes a dead letter. ctx carries the handler timeout and is cancelled
// when the router stops.
type Handler func(ctx context.Context, tx pgx.Tx, e eventstore.Envelope) error

// RouterConfig configures a Router.
type RouterConfig struct {
	// Pool is the database of the inbox, dead letters and the handlers'
	// effects.
	Pool *pgxpool.Pool
	// Conn is the NATS connection; it should reconnect forever.
	Conn *nats.Conn
	// Events is the event store the relay publishes from. Every delivery
	// is checked against it before its handler runs (see ErrForged): a
	// message that does not match becomes a dead letter at once.
	Events eventstore.StreamReader
	// Stream is the stream layout; it must match the relay's.
	Stream StreamConfig
	// AckWait is how long JetStream waits for an ack, or a sign of
	// progress, before it delivers a message again (to this or another
	// instance). While a handler runs, the router tells JetStream every
	// AckWait/3 that the message is in progress: AckWait bounds how long a
	// delivery lost on its way (with a NATS node or a worker that died)
	// waits to be delivered again, not how long a handler may run.
	// Default 30s.
	AckWait time.Duration
	// HandlerTimeout cancels a handler's context. Default AckWait * 2/3.
	HandlerTimeout time.Duration
	// MaxDeliver is how many times a message is delivered to a failing
	// handler before it becomes a dead letter. Default 5.
	MaxDeliver int
	// BackOff are the delays before the 2nd, 3rd, ... delivery after a
	// handler error; the last one repeats. Default (nil) 1s, 5s, 15s,
	// 30s; an empty slice redelivers at once.
	BackOff []time.Duration
	// MaxAckPending is how many unacknowledged messages JetStream lets a
	// handler's consumer have: up to that many events are handled
	// concurrently, in no particular order. Default 64; 1 handles
	// everything one at a time in stream order.
	MaxAckPending int
	// CloseTimeout bounds how long Run waits for running handlers when it
	// stops. Default 30s.
	CloseTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics defaults to NopMetrics.
	Metrics Metrics
}

func (c *RouterConfig) setDefaults() {
	c.Stream.setDefaults()
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.HandlerTimeout <= 0 {
		c.HandlerTimeout = c.AckWait * 2 / 3
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if c.BackOff == nil {
		c.BackOff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second}
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 64
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
}

// Validate reports every invalid field at once.
func (c RouterConfig) Validate() error {
	var errs []error
	if c.Pool == nil {
		errs = append(errs, errors.New("pool is required"))
	}
	if c.Conn == nil {
		errs = append(errs, errors.New("nats connection is required"))
	}
	if c.Events == nil {
		errs = append(errs, errors.New("event store is required (deliveries are checked against it)"))
	}
	for _, d := range c.BackOff {
		if d < 0 {
			errs = append(errs, fmt.Errorf("negative backoff %v", d))
		}
	}
	if err := c.Stream.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// HandlerOption configures one handler.
type HandlerOption func(*handlerOptions)

type handlerOptions struct {
	route      string
	deliverNew bool
	noTx       bool
}

// WithoutTx is for a handler whose effects are all outside the database
// transaction (calls, appends to the event store), like a process manager:
// it gets a nil tx, and the router checks and writes its inbox row in
// statements of their own instead of holding a connection and a
// transaction through the handler. Two deliveries of one event at once may
// then both run it, which such a handler tolerates by design (see Handler).
func WithoutTx() HandlerOption {
	return func(o *handlerOptions) { o.noTx = true }
}

// WithRoute makes the handler receive only the events the stream's Route
// gives route (and its re-driven dead letters); by default it receives
// every event.
func WithRoute(route string) HandlerOption {
	return func(o *handlerOptions) { o.route = route }
}

// WithDeliverNew makes a handler whose durable consumer does not exist yet
// start with the events relayed from now on instead of the whole stream.
func WithDeliverNew() HandlerOption {
	return func(o *handlerOptions) { o.deliverNew = true }
}

var handlerNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Router delivers relayed events to handlers: one durable JetStream
// consumer per handler name, run by a Watermill router with this middleware,
// outermost first:
//
//  1. PoisonQueue: a handler error marked final (MaxDeliver reached, or
//     Permanent) is recorded as a dead letter (table and subject) and the
//     message acknowledged; other errors Nack it for a redelivery after
//     BackOff.
//  2. Timeout: the handler's context is cancelled after HandlerTimeout.
//
// Inside the chain each delivery is first checked against the event store
// (RouterConfig.Events): a message that does not match it is logged,
// counted (Metrics.MessageForged) and dead-lettered without reaching the
// handler. Then it runs in a Postgres transaction with the handler's inbox
// row (see Handler); a panic in the handler itself is an error of that
// delivery.
type Router struct {
	cfg  RouterConfig
	js   jetstream.JetStream
	wm   *message.Router
	dead *DeadLetters

	inbox *inboxWriter // the inbox rows of handlers WithoutTx

	mu   sync.Mutex
	subs []*consumerSubscriber
	seen map[string]bool
}

// NewRouter ensures the streams and returns a router without handlers.
func NewRouter(ctx context.Context, cfg RouterConfig) (*Router, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new router: %w: %w", ErrInvalidConfig, err)
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("new router: %w", err)
	}
	tries := 0
	if err := whileAway(ctx, func(ctx context.Context) error {
		if tries++; tries == 2 {
			// A worker's NATS user may not create the streams: it waits
			// for the relay to.
			cfg.Logger.Warn("messaging: waiting for the streams (the relay creates them)")
		}
		return EnsureStreams(ctx, js, cfg.Stream)
	}); err != nil {
		return nil, fmt.Errorf("new router: %w", err)
	}
	logger := watermill.NewSlogLoggerWithLevelMapping(cfg.Logger, map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug,
	})
	wm, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, logger)
	if err != nil {
		return nil, fmt.Errorf("new router: %w", err)
	}
	dead := newDeadLetters(cfg.Pool, js, cfg.Stream, cfg.Metrics)
	poison, err := middleware.PoisonQueueWithFilter(dead.publisher(), cfg.Stream.DeadLetterPrefix, isFinal)
	if err != nil {
		return nil, fmt.Errorf("new router: %w", err)
	}
	wm.AddMiddleware(poison, middleware.Timeout(cfg.HandlerTimeout))
	return &Router{cfg: cfg, js: js, wm: wm, dead: dead, inbox: &inboxWriter{pool: cfg.Pool}, seen: map[string]bool{}}, nil
}

// DeadLetters returns the dead-letter store of the router's database.
func (r *Router) DeadLetters() *DeadLetters { return r.dead }

// AddHandler registers h under name, which names its durable consumer and
// its inbox rows: keep it stable across releases, or the handler starts
// over. name may hold letters, digits, '_' and '-'. The consumer is created
// or updated now; delivery starts with Run. Errors wrap ErrHandlerExists
// or ErrInvalidConfig, or come from JetStream.
func (r *Router) AddHandler(ctx context.Context, name string, h Handler, opts ...HandlerOption) error {
	if !handlerNameRE.MatchString(name) {
		return fmt.Errorf("add handler %q: %w: name must match %s", name, ErrInvalidConfig, handlerNameRE)
	}
	if h == nil {
		return fmt.Errorf("add handler %q: %w: nil handler", name, ErrInvalidConfig)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[name] {
		return fmt.Errorf("add handler %q: %w", name, ErrHandlerExists)
	}
	var o handlerOptions
	for _, opt := range opts {
		opt(&o)
	}
	events := r.cfg.Stream.AllEventsFilter()
	if o.route != "" {
		events = r.cfg.Stream.RoutedFilter(o.route)
	}
	filters := []string{events, r.cfg.Stream.redriveSubject(name)}
	deliver := jetstream.DeliverAllPolicy
	if o.deliverNew {
		deliver = jetstream.DeliverNewPolicy
	}
	cc := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "onboard handler " + name,
		DeliverPolicy: deliver,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.cfg.AckWait,
		// One delivery more than the router allows handler attempts: a
		// message whose previous deliveries ended without an outcome (the
		// process crashed, the ack was lost) is dead-lettered on it
		// instead of silently dropped by JetStream.
		MaxDeliver:     r.cfg.MaxDeliver + 1,
		FilterSubjects: filters,
		MaxAckPending:  r.cfg.MaxAckPending,
	}
	sub := newConsumerSubscriber(r.js, r.cfg.Stream.Name, cc, r.cfg.BackOff, r.cfg.Logger)
	if _, err := sub.ensure(ctx); err != nil {
		return fmt.Errorf("add handler %q: %w", name, err)
	}
	r.wm.AddConsumerHandler(name, name, sub, r.handlerFunc(name, h, o))
	r.seen[name] = true
	r.subs = append(r.subs, sub)
	return nil
}

// Run delivers messages to the handlers until ctx is done or Close is
// called; it returns nil then, after the running handlers finished (up to
// CloseTimeout).
func (r *Router) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = r.wm.Close() })
	defer stop()
	if err := r.wm.Run(ctx); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	return nil
}

// Running is closed once Run has started every handler.
func (r *Router) Running() <-chan struct{} { return r.wm.Running() }

// Close stops Run and waits for running handlers.
func (r *Router) Close() error { return r.wm.Close() }

func (r *Router) handlerFunc(name string, h Handler, o handlerOptions) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		start := time.Now()
		err := r.handle(msg, name, h, o)
		r.cfg.Metrics.MessageHandled(name, time.Since(start), err)
		return err
	}
}

// handle runs one delivery and decides whether a failure is final.
func (r *Router) handle(msg *message.Message, name string, h Handler, o handlerOptions) error {
	delivered, _ := strconv.ParseUint(msg.Metadata.Get(MetadataNumDelivered), 10, 64)
	e, err := UnmarshalEnvelope(msg.Payload)
	if err != nil {
		return &ExhaustedError{Handler: name, Deliveries: delivered, Err: Permanent(err)}
	}
	if delivered > uint64(r.cfg.MaxDeliver) {
		return &ExhaustedError{Handler: name, EventID: e.ID, Deliveries: delivered,
			Err: fmt.Errorf("no outcome recorded for the previous %d deliveries (crash or ack timeout)", delivered-1)}
	}
	redrive := strings.HasPrefix(msg.Metadata.Get(MetadataSubject), r.cfg.Stream.RedrivePrefix+".")
	ctx := msg.Context()
	if err := matchStore(ctx, r.cfg.Events, e); err != nil {
		if errors.Is(err, ErrForged) {
			r.cfg.Logger.Error("messaging: forged message, dead-lettered", "handler", name, "event_id", e.ID,
				"stream_id", e.StreamID, "subject", msg.Metadata.Get(MetadataSubject), "err", err)
			r.cfg.Metrics.MessageForged(name)
			return &ExhaustedError{Handler: name, EventID: e.ID, Deliveries: delivered, Err: Permanent(err)}
		}
		return fmt.Errorf("handler %s, event %s, delivery %d: %w", name, e.ID, delivered, err)
	}
	if o.noTx {
		err = r.withoutTx(ctx, name, e, h, redrive, delivered)
	} else {
		err = r.inTx(ctx, name, e, h, redrive)
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrPermanent) || delivered >= uint64(r.cfg.MaxDeliver) {
		return &ExhaustedError{Handler: name, EventID: e.ID, Deliveries: delivered, Err: err}
	}
	return fmt.Errorf("handler %s, event %s (%s), delivery %d: %w", name, e.ID, e.Type, delivered, err)
}

// inTx runs h in a transaction with the inbox row of (name, e.ID); a
// delivery whose inbox row is already committed is skipped.
//
// The row is written after h, not before: a transaction takes a
// transaction id at its first write and holds it to the end, and while it
// does, every event committed after that id waits behind it in the event
// store's global order. A handler that calls a provider would hold back
// the whole pipeline's events for the length of the call. Two deliveries
// of one event at once both run h; the second's insert waits for the
// first's commit, finds the row and rolls back.
func (r *Router) inTx(ctx context.Context, name string, e eventstore.Envelope, h Handler, redrive bool) (err error) {
	tx, err := r.cfg.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	var handled bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM messaging_inbox WHERE handler = $1 AND event_id = $2)`, name, e.ID).Scan(&handled); err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	if handled {
		// Already handled: a redelivery after a lost ack or a crash, or a
		// re-publish the stream's duplicate window did not catch.
		return tx.Rollback(ctx)
	}
	if err := callHandler(ctx, tx, e, h); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx,
		`INSERT INTO messaging_inbox (handler, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, name, e.ID)
	if err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return tx.Rollback(ctx) // a concurrent delivery of the event committed first
	}
	if redrive {
		if _, err := tx.Exec(ctx, `UPDATE messaging_dead_letters SET status = 'resolved', updated_at = now()
			WHERE handler = $1 AND event_id = $2`, name, e.ID); err != nil {
			return fmt.Errorf("resolve dead letter: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// withoutTx runs h unless the inbox holds (name, e.ID), then writes the
// row in the next group commit of the inbox (see WithoutTx). A first delivery
// skips the check: only a re-publish the stream's duplicate window missed
// or a re-created consumer could have handled it before, and a handler
// without a transaction tolerates a second run.
func (r *Router) withoutTx(ctx context.Context, name string, e eventstore.Envelope, h Handler, redrive bool, delivered uint64) error {
	if delivered != 1 || redrive {
		var handled bool
		if err := r.cfg.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM messaging_inbox WHERE handler = $1 AND event_id = $2)`, name, e.ID).Scan(&handled); err != nil {
			return fmt.Errorf("inbox: %w", err)
		}
		if handled {
			return nil
		}
	}
	if err := callHandler(ctx, nil, e, h); err != nil {
		return err
	}
	if redrive {
		if _, err := r.cfg.Pool.Exec(ctx, `WITH inbox AS (INSERT INTO messaging_inbox (handler, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING)
UPDATE messaging_dead_letters SET status = 'resolved', updated_at = now() WHERE handler = $1 AND event_id = $2`, name, e.ID); err != nil {
			return fmt.Errorf("inbox: %w", err)
		}
		return nil
	}
	return r.inbox.write(ctx, name, e.ID)
}

// callHandler turns a panic of h into an error, so that it counts as a
// failed delivery and rolls the transaction back.
func callHandler(ctx context.Context, tx pgx.Tx, e eventstore.Envelope, h Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return h(ctx, tx, e)
}

// isFinal reports whether a handler error goes to the dead letters.
func isFinal(err error) bool {
	return errors.Is(err, ErrDeliveriesExhausted) || errors.Is(err, ErrPermanent)
}
