package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// Errors of the command side that callers branch on.
var (
	// ErrCustomerNotFound: no stream for the customer id.
	ErrCustomerNotFound = errors.New("customer not found")
	// ErrVersionMismatch: the caller named the version it expects (HTTP
	// If-Match) and the customer is at another one.
	ErrVersionMismatch = errors.New("customer version mismatch")
	// ErrEmailTaken: another customer already signed up with the email;
	// see *EmailTakenError for its id.
	ErrEmailTaken = errors.New("email already signed up")
)

// EmailTakenError names the customer that holds an email.
type EmailTakenError struct {
	ExistingID uuid.UUID
}

func (e *EmailTakenError) Error() string {
	return fmt.Sprintf("email already signed up by customer %s", e.ExistingID)
}

// Unwrap returns ErrEmailTaken.
func (e *EmailTakenError) Unwrap() error { return ErrEmailTaken }

// VersionMismatchError carries the expected and actual versions.
type VersionMismatchError struct {
	Expected, Actual int
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("customer is at version %d, not %d", e.Actual, e.Expected)
}

// Unwrap returns ErrVersionMismatch.
func (e *VersionMismatchError) Unwrap() error { return ErrVersionMismatch }

// CustomerStore is what command handlers need of the event store.
type CustomerStore interface {
	eventstore.Appender
	eventstore.StreamReader
}

// Meta is who asks and why: it becomes the metadata of every event a
// command raises.
type Meta struct {
	Actor          string
	CorrelationID  string
	CausationID    string
	RequestID      string
	IdempotencyKey string
	Trace          map[string]string
}

// Result describes the outcome of a command.
type Result struct {
	CustomerID uuid.UUID
	State      domain.State
	// Version is the customer's stream version after the command.
	Version int
	// Position is the global position of the last event appended, for
	// read-your-writes; Cursor is its place in the global order.
	Position int64
	Cursor   eventstore.Cursor
	// Events are the events the command raised.
	Events []domain.Event
}

// Handler loads customers, runs a command on them and appends the events
// with the expected version. It is safe for concurrent use.
type Handler struct {
	store      CustomerStore
	newID      func() uuid.UUID
	maxRetries int
	observe    func(domain.Command, string, time.Duration)
	histories  *histories // nil when disabled
	trust      bool       // decide on remembered histories first
	keys       eventstore.KeyStore
}

// Config configures a Handler.
type Config struct {
	Store CustomerStore
	// NewID generates event and customer ids; default uuid.NewV7.
	NewID func() uuid.UUID
	// MaxConflictRetries bounds reload-and-retry on a concurrency
	// conflict; default 5.
	MaxConflictRetries int
	// Observe, when set, is told the outcome of every command ("ok",
	// "rejected", "conflict", "error") and how long its append took (0 when
	// it did not append): the metrics hook.
	Observe func(cmd domain.Command, outcome string, appendDuration time.Duration)
	// Histories is how many customers' decoded events Load remembers, so
	// that it reads and decodes only the events after them; default 4096,
	// negative for none. A customer in a terminal state is forgotten.
	Histories int
	// TrustHistories makes Execute and LoadSince decide on a remembered
	// history without reading the stream first. Optimistic concurrency
	// alone keeps that safe: appends are durable when they return and
	// events immutable, so a remembered history is a prefix of the stream,
	// possibly short of it (another process appended since) but never
	// wrong; an append decided on it carries its version as the expected
	// version, so a shortfall fails as a concurrency conflict and is
	// decided again on the stream, as is a refusal. It saves a read per
	// command in the process that appends most of its customers' events
	// (the worker); elsewhere the remembered history is mostly behind and
	// it would cost a failed append instead.
	TrustHistories bool
	// Keys encrypts the personal fields of the events the commands raise
	// under each customer's data key, and keys the email reservation by a
	// keyed hash. Without it events are stored in plain text (tests of
	// other rules; a deployment always has one).
	Keys eventstore.KeyStore
}

// New returns the command handler over cfg.Store.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("commands: a store is required")
	}
	if cfg.NewID == nil {
		cfg.NewID = func() uuid.UUID { return uuid.Must(uuid.NewV7()) }
	}
	if cfg.MaxConflictRetries <= 0 {
		cfg.MaxConflictRetries = 5
	}
	if cfg.Observe == nil {
		cfg.Observe = func(domain.Command, string, time.Duration) {}
	}
	if cfg.Histories == 0 {
		cfg.Histories = 4096
	}
	h := &Handler{store: cfg.Store, newID: cfg.NewID, maxRetries: cfg.MaxConflictRetries, observe: cfg.Observe, trust: cfg.TrustHistories, keys: cfg.Keys}
	if cfg.Histories > 0 {
		h.histories = newHistories(cfg.Histories)
	}
	return h, nil
}

// StreamID is the event-store stream of a customer.
func StreamID(id uuid.UUID) string { return "customer-" + id.String() }

// ParseStreamID returns the customer id of a customer stream.
func ParseStreamID(streamID string) (uuid.UUID, error) {
	raw, ok := cutPrefix(streamID, "customer-")
	if !ok {
		return uuid.Nil, fmt.Errorf("stream %q is not a customer stream", streamID)
	}
	return uuid.Parse(raw)
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || s[:len(prefix)] != prefix {
		return s, false
	}
	return s[len(prefix):], true
}

// SignUp creates a customer and requests its verification, reserving its
// email in the same transaction so that two signups with one email cannot
// both succeed. Extra append options (an idempotency record) commit with it.
func (h *Handler) SignUp(ctx context.Context, details domain.SignupDetails, meta Meta, opts ...eventstore.AppendOption) (Result, error) {
	id := h.newID()
	c, err := domain.SignUp(id, details)
	if err != nil {
		h.observe(domain.CmdSignUp, "rejected", 0)
		return Result{}, err
	}
	// The journey's first step is requested in the signup's own append:
	// the verification manager gets to work without a round trip through
	// the relay, and the relay routes the signup to no one (see process.RouteOf).
	if _, err := c.RequestStep(domain.StepVerification); err != nil {
		return Result{}, fmt.Errorf("sign up: request verification: %w", err)
	}
	opts = append(opts, eventstore.WithReservation(eventstore.Reservation{Kind: "email", Value: h.emailIndex(c.Details().Email)}))
	res, err := h.append(ctx, c, history{id: id}, meta, opts...)
	var taken *eventstore.ReservationError
	if errors.As(err, &taken) {
		existing, perr := ParseStreamID(taken.OwnerStreamID)
		if perr != nil {
			return Result{}, fmt.Errorf("sign up: %w", err)
		}
		return Result{}, &EmailTakenError{ExistingID: existing}
	}
	return res, err
}

// Load returns the customer as its stream says, or ErrCustomerNotFound.
func (h *Handler) Load(ctx context.Context, id uuid.UUID) (*domain.Customer, error) {
	c, _, err := h.load(ctx, id, true)
	return c, err
}

// LoadSince returns the customer as of at least version: from the
// remembered history alone when the commands trust histories (see
// Config.TrustHistories) and it holds that many events, and
// otherwise as Load does. A reaction to the event at version needs no later
// state than the remembered one: each later event has its own reaction.
func (h *Handler) LoadSince(ctx context.Context, id uuid.UUID, version int) (*domain.Customer, error) {
	if h.trust && version > 0 {
		if c, _, ok := h.remembered(id); ok && c.Version() >= version {
			return c, nil
		}
	}
	return h.Load(ctx, id)
}

// remembered returns the customer as its remembered history says, and the
// history, if there is one that rehydrates.
func (h *Handler) remembered(id uuid.UUID) (*domain.Customer, history, bool) {
	known, ok := h.histories.get(id)
	if !ok {
		return nil, history{}, false
	}
	if known.state != nil && known.state.Version() == len(known.events) {
		return known.state.Clone(), known, true
	}
	c, err := domain.FromHistory(id, known.events)
	if err != nil {
		return nil, history{}, false
	}
	return c, known, true
}

// AwaitRemembered waits, for at most timeout, until the customer this
// process remembers satisfies done: for news that this process's own
// commands will record (the worker running here), which memory learns
// of at once and the stream only by polling. It returns at once where the
// commands do not trust their memory (it would not learn of other
// processes' news) or remember nothing of the customer; the caller then
// reads the stream as usual. It reports whether done held.
func (h *Handler) AwaitRemembered(ctx context.Context, id uuid.UUID, done func(*domain.Customer) bool, timeout time.Duration) bool {
	if !h.trust || h.histories == nil {
		return false
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		// Watch before looking, so that a put in between is not missed.
		news := h.histories.watch(id)
		c, _, ok := h.remembered(id)
		if !ok || done(c) {
			h.histories.unwatch(id, news)
			return ok
		}
		select {
		case <-news:
		case <-timer.C:
			h.histories.unwatch(id, news)
			return false
		case <-ctx.Done():
			h.histories.unwatch(id, news)
			return false
		}
	}
}

// LastTrace returns the trace context of the last event of the customer
// this process remembers, if it remembers one: what a command that
// continues the customer's trace needs, without reading the stream. It may
// be an earlier event's than the stream's last (another process appended
// since), which is still the customer's trace.
func (h *Handler) LastTrace(id uuid.UUID) (map[string]string, bool) {
	known, ok := h.histories.get(id)
	if !ok || len(known.events) == 0 {
		return nil, false
	}
	return known.trace, true
}

// load reads the customer's events after those remembered (rereading the
// last remembered one to check it), or all of them when none are or
// remember is false, and returns the customer with its whole history.
func (h *Handler) load(ctx context.Context, id uuid.UUID, remember bool) (*domain.Customer, history, error) {
	known, ok := history{id: id}, false
	if remember {
		known, ok = h.histories.get(id)
	}
	from := int64(1)
	if ok {
		from = int64(len(known.events))
	}
	envs, err := h.store.ReadStream(ctx, StreamID(id), from)
	if errors.Is(err, eventstore.ErrStreamNotFound) || (err == nil && len(envs) == 0) {
		h.histories.forget(id)
		return nil, history{}, fmt.Errorf("customer %s: %w", id, ErrCustomerNotFound)
	}
	if err != nil {
		return nil, history{}, fmt.Errorf("load customer %s: %w", id, err)
	}
	if ok {
		if envs[0].Version != from || envs[0].ID != known.lastID {
			// Not the remembered event: an append-only store never
			// does this, but a restored database might. Start over.
			h.histories.forget(id)
			return h.load(ctx, id, false)
		}
		envs = envs[1:]
	}
	events, err := DecodeEnvelopes(envs)
	if err != nil {
		return nil, history{}, fmt.Errorf("load customer %s: %w", id, err)
	}
	if len(events) > 0 {
		known.events = append(known.events, events...)
		known.lastID = envs[len(envs)-1].ID
		known.trace = envs[len(envs)-1].Metadata.Trace
	}
	c, err := domain.FromHistory(id, known.events)
	if err != nil {
		return nil, history{}, err
	}
	known.state = c.Clone()
	h.histories.put(known)
	return c, known, nil
}

// LoadCustomer reads and rehydrates a customer from store.
func LoadCustomer(ctx context.Context, store eventstore.StreamReader, id uuid.UUID) (*domain.Customer, error) {
	envs, err := store.ReadStream(ctx, StreamID(id), 1)
	if errors.Is(err, eventstore.ErrStreamNotFound) || (err == nil && len(envs) == 0) {
		return nil, fmt.Errorf("customer %s: %w", id, ErrCustomerNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load customer %s: %w", id, err)
	}
	events, err := DecodeEnvelopes(envs)
	if err != nil {
		return nil, fmt.Errorf("load customer %s: %w", id, err)
	}
	return domain.FromHistory(id, events)
}

// DecodeEnvelopes decodes stored events into domain events.
func DecodeEnvelopes(envs []eventstore.Envelope) ([]domain.Event, error) {
	events := make([]domain.Event, 0, len(envs))
	for _, env := range envs {
		e, err := domain.DecodeEvent(env.Type, env.Data)
		if err != nil {
			return nil, fmt.Errorf("event %s (version %d): %w", env.ID, env.Version, err)
		}
		events = append(events, e)
	}
	return events, nil
}

// Execute loads the customer, runs decide on it and appends what it raised
// with the loaded version as expected version. On a concurrency conflict it
// reloads and decides again, a bounded number of times. When
// expectedVersion is not nil the customer must be at that version
// (ErrVersionMismatch otherwise), and a conflict is not retried.
func (h *Handler) Execute(ctx context.Context, id uuid.UUID, expectedVersion *int, meta Meta, decide func(*domain.Customer) error, opts ...eventstore.AppendOption) (Result, error) {
	trust := h.trust && expectedVersion == nil
	for attempt := 0; ; attempt++ {
		var c *domain.Customer
		known, fromMemory := history{}, false
		if trust {
			c, known, fromMemory = h.remembered(id)
		}
		if !fromMemory {
			var err error
			if c, known, err = h.load(ctx, id, true); err != nil {
				return Result{}, err
			}
		}
		if expectedVersion != nil && c.Version() != *expectedVersion {
			return Result{}, &VersionMismatchError{Expected: *expectedVersion, Actual: c.Version()}
		}
		if err := decide(c); err != nil {
			if fromMemory {
				// The remembered history may be behind: decide again on
				// the stream's before refusing.
				trust = false
				attempt--
				continue
			}
			var ce *domain.CommandError
			cmd := domain.Command("")
			if errors.As(err, &ce) {
				cmd = ce.Command
			}
			h.observe(cmd, "rejected", 0)
			return Result{}, err
		}
		if len(c.Changes()) == 0 {
			return Result{}, errors.New("commands: the command raised no event")
		}
		res, err := h.append(ctx, c, known, meta, opts...)
		if errors.Is(err, eventstore.ErrConcurrencyConflict) {
			trust = false
			if expectedVersion != nil {
				var ce *eventstore.ConcurrencyError
				actual := *expectedVersion + 1
				if errors.As(err, &ce) {
					actual = int(ce.Actual)
				}
				return Result{}, &VersionMismatchError{Expected: *expectedVersion, Actual: actual}
			}
			if attempt < h.maxRetries {
				continue
			}
		}
		return res, err
	}
}

// append appends c's changes; known is the history c was built from,
// which with the changes becomes the remembered one.
func (h *Handler) append(ctx context.Context, c *domain.Customer, known history, meta Meta, opts ...eventstore.AppendOption) (Result, error) {
	changes := c.Changes()
	stored, err := h.encrypt(ctx, c.ID(), changes)
	if err != nil {
		return Result{}, err
	}
	events := make([]eventstore.NewEvent, 0, len(changes))
	for _, e := range stored {
		typ, version, data, err := domain.EncodeEvent(e)
		if err != nil {
			return Result{}, err
		}
		events = append(events, eventstore.NewEvent{
			ID: h.newID(), Type: typ, SchemaVersion: version, Data: data,
			Metadata: eventstore.Metadata{
				Actor: meta.Actor, CorrelationID: meta.CorrelationID, CausationID: meta.CausationID,
				RequestID: meta.RequestID, IdempotencyKey: meta.IdempotencyKey, Trace: meta.Trace,
			},
		})
	}
	expected := eventstore.ExpectedVersion(c.Version())
	all := append([]eventstore.AppendOption{eventstore.WithStreamType("customer")}, opts...)
	start := time.Now()
	ar, err := h.store.Append(ctx, StreamID(c.ID()), expected, events, all...)
	took := time.Since(start)
	cmd := domain.CommandOf(changes[0])
	if err != nil {
		outcome := "error"
		switch {
		case errors.Is(err, eventstore.ErrConcurrencyConflict):
			outcome = "conflict"
		case errors.Is(err, eventstore.ErrReservationTaken), errors.Is(err, eventstore.ErrIdempotencyKeyUsed), errors.Is(err, eventstore.ErrIdempotencyKeyMismatch):
			outcome = "rejected"
		}
		h.observe(cmd, outcome, took)
		return Result{}, err
	}
	h.observe(cmd, "ok", took)
	whole := len(known.events) == c.Version() // known is all c was built from
	c.MarkCommitted()
	if whole {
		all := make([]domain.Event, 0, len(known.events)+len(changes))
		all = append(append(all, known.events...), changes...)
		h.histories.put(history{id: c.ID(), events: all, lastID: events[len(events)-1].ID, trace: meta.Trace, state: c.Clone()})
	}
	res := Result{CustomerID: c.ID(), State: c.State(), Version: int(ar.LastVersion), Cursor: ar.Cursor(), Events: changes}
	if n := len(ar.Positions); n > 0 {
		res.Position = ar.Positions[n-1]
	}
	return res, nil
}
