package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// OutageConfig configures Outages.
type OutageConfig struct {
	Pool     *pgxpool.Pool
	Store    ProviderStreams
	Commands *commands.Handler
	// Providers are the providers watched; default the five of the journey.
	Providers []string
	// ResumeRate is how many waiting customers resume per second once
	// their provider answers again (ONBOARD_RESUME_RATE); default 20.
	// Each wait between two resumes is drawn from [0.5, 1.5] of 1/rate.
	ResumeRate float64
	// ProbeEvery is how often, while a provider is down, its oldest
	// waiting customer is resumed to try it; default 5s.
	ProbeEvery time.Duration
	// Tick is how often each provider's outage is looked at; default 500ms.
	Tick time.Duration
	// Settle is how long after an outage ended customers that start to
	// wait are taken for stragglers of it (another process's breaker is
	// still open) and resumed without a new alert; default 1m.
	Settle time.Duration
	// OnAlert is called once per outage (its metric); OnWaiting with the
	// customers waiting on a provider at every tick (a gauge).
	OnAlert   func(provider string, waiting int)
	OnWaiting func(provider string, waiting int)
	Logger    *slog.Logger
	Now       func() time.Time
	NewID     func() uuid.UUID
}

// ProviderStreams is what Outages needs of the event store: the providers'
// outage streams.
type ProviderStreams interface {
	eventstore.Appender
	eventstore.StreamReader
}

func (c *OutageConfig) setDefaults() {
	if len(c.Providers) == 0 {
		for _, s := range domain.Steps() {
			c.Providers = append(c.Providers, s.Provider())
		}
	}
	if c.ResumeRate <= 0 {
		c.ResumeRate = 20
	}
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = 5 * time.Second
	}
	if c.Tick <= 0 {
		c.Tick = 500 * time.Millisecond
	}
	if c.Settle <= 0 {
		c.Settle = time.Minute
	}
	if c.OnAlert == nil {
		c.OnAlert = func(string, int) {}
	}
	if c.OnWaiting == nil {
		c.OnWaiting = func(string, int) {}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewID == nil {
		c.NewID = func() uuid.UUID { return uuid.Must(uuid.NewV7()) }
	}
}

// Outages decides each provider's outage cycle and resumes the customers
// that wait on it. Customers start waiting on their own (Manager.attempt
// blocks a customer whose call the provider's breaker refused); Outages,
// run by one process at a time (a Postgres advisory lock), does the rest:
//
//   - up, with customers waiting: it raises the outage's one alert
//     (OutageStarted on the provider's stream, an ERROR log line, OnAlert);
//   - down: every ProbeEvery it resumes the oldest waiting customer as a
//     probe; when the probe's call gets an answer the provider has
//     recovered (OutageRecovered);
//   - recovering: it resumes the waiting customers, oldest first, at
//     ResumeRate with jitter, and ends the outage (OutageEnded) when none
//     is left.
//
// Every decision is an append at the version of the provider's stream the
// decision was made on, so two processes that decide at once (a lock
// handed over) append it once.
type Outages struct {
	cfg OutageConfig

	mu     sync.Mutex
	probes map[string]uuid.UUID // provider → the customer resumed as its probe
}

// NewOutages returns the outage supervisor.
func NewOutages(cfg OutageConfig) (*Outages, error) {
	if cfg.Pool == nil || cfg.Store == nil || cfg.Commands == nil {
		return nil, errors.New("process: Outages needs Pool, Store and Commands")
	}
	cfg.setDefaults()
	return &Outages{cfg: cfg, probes: map[string]uuid.UUID{}}, nil
}

// outageLockKey is the advisory lock of the one process that runs Outages.
const outageLockKey = "onboard.process.outages"

// Run waits for the outage lock, then watches every provider until ctx
// is done. Losing the lock's connection sends it back to waiting.
func (o *Outages) Run(ctx context.Context) error {
	for {
		err := o.lead(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		o.cfg.Logger.Warn("outages: lost the lock; waiting to take it again", "err", err)
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
}

// lead holds the lock on a connection of its own while it watches.
func (o *Outages) lead(ctx context.Context) error {
	pooled, err := o.cfg.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The session's lock goes with the connection, which never returns to
	// the pool.
	conn := pooled.Hijack()
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	for {
		var locked bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, outageLockKey).Scan(&locked); err != nil {
			return err
		}
		if locked {
			break
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range o.cfg.Providers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.watch(ctx, p)
		}()
	}
	defer wg.Wait()
	for {
		if err := sleepCtx(ctx, 5*time.Second); err != nil {
			return err
		}
		if err := conn.Ping(ctx); err != nil {
			return fmt.Errorf("outage lock connection: %w", err)
		}
	}
}

// watch runs provider's outage cycle until ctx is done.
func (o *Outages) watch(ctx context.Context, provider string) {
	for ctx.Err() == nil {
		wait, err := o.step(ctx, provider)
		if err != nil && ctx.Err() == nil {
			o.cfg.Logger.Warn("outages: step failed", "provider", provider, "err", err)
			wait = o.cfg.Tick
		}
		if sleepCtx(ctx, wait) != nil {
			return
		}
	}
}

// step takes one decision for provider and returns how long to wait
// before the next.
func (o *Outages) step(ctx context.Context, provider string) (time.Duration, error) {
	p, err := LoadProvider(ctx, o.cfg.Store, provider)
	if err != nil {
		return 0, err
	}
	waiting, err := o.waiting(ctx, provider)
	if err != nil {
		return 0, err
	}
	o.cfg.OnWaiting(provider, waiting)
	switch p.Status() {
	case domain.ProviderUp:
		if waiting == 0 {
			return o.cfg.Tick, nil
		}
		if p.Version() > 0 && o.cfg.Now().Sub(p.Since()) < o.cfg.Settle {
			return o.resumeOne(ctx, provider, true) // stragglers of the outage just over
		}
		e, err := p.StartOutage(waiting)
		if err != nil {
			return 0, err
		}
		if err := o.append(ctx, p, provider, e); err != nil {
			return 0, err
		}
		o.cfg.Logger.Error("provider outage: customers wait for it", "provider", provider, "waiting", waiting)
		o.cfg.OnAlert(provider, waiting)
		return o.cfg.Tick, nil
	case domain.ProviderDown:
		return o.probe(ctx, p, provider, waiting)
	default:
		return o.resumeNext(ctx, p, provider, waiting)
	}
}

// probe resumes the oldest waiting customer every ProbeEvery and reports
// the provider recovered once that customer's call got an answer.
func (o *Outages) probe(ctx context.Context, p *domain.Provider, provider string, waiting int) (time.Duration, error) {
	o.mu.Lock()
	id, probing := o.probes[provider]
	o.mu.Unlock()
	if probing {
		c, err := o.cfg.Commands.Load(ctx, id)
		if err != nil {
			return 0, err
		}
		switch {
		case c.BlockedOn() != "": // refused again: the provider is still down
			o.setProbe(provider, uuid.Nil)
			return o.cfg.ProbeEvery, nil
		case c.InFlight(c.CurrentStep()) != 0:
			return o.cfg.Tick, nil
		case c.State() == domain.StateCancelling || c.State() == domain.StateCancelled:
			o.setProbe(provider, uuid.Nil) // no answer to learn from
			return o.cfg.Tick, nil
		}
		o.setProbe(provider, uuid.Nil)
		e, err := p.Recover(waiting)
		if err != nil {
			return 0, err
		}
		o.cfg.Logger.Info("provider answers again: waiting customers resume", "provider", provider, "waiting", waiting)
		return 0, o.append(ctx, p, provider, e)
	}
	if waiting == 0 { // every waiting customer left (cancelled): nothing to probe with
		e, err := p.Recover(0)
		if err != nil {
			return 0, err
		}
		return 0, o.append(ctx, p, provider, e)
	}
	id, ok, err := o.oldest(ctx, provider)
	if err != nil || !ok {
		return o.cfg.Tick, err
	}
	o.setProbe(provider, id)
	// The probe keeps its place: its row stays until it resumes for good.
	return o.cfg.Tick, o.resume(ctx, id)
}

func (o *Outages) setProbe(provider string, id uuid.UUID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if id == uuid.Nil {
		delete(o.probes, provider)
		return
	}
	o.probes[provider] = id
}

// resumeNext resumes the oldest waiting customer of a recovering provider
// and returns the jittered wait before the next; with none left it ends
// the outage.
func (o *Outages) resumeNext(ctx context.Context, p *domain.Provider, provider string, waiting int) (time.Duration, error) {
	if waiting == 0 {
		resumed, err := o.resumedSince(ctx, provider)
		if err != nil {
			return 0, err
		}
		e, err := p.EndOutage(resumed)
		if err != nil {
			return 0, err
		}
		o.cfg.Logger.Info("provider outage over: every waiting customer resumed", "provider", provider, "resumed", resumed)
		return o.cfg.Tick, o.append(ctx, p, provider, e)
	}
	return o.resumeOne(ctx, provider, false)
}

// resumeOne resumes the customer waiting longest on provider and returns
// the jittered wait before the next. Its row is marked resumed, to be
// counted when the outage ends, or with forget deleted.
func (o *Outages) resumeOne(ctx context.Context, provider string, forget bool) (time.Duration, error) {
	id, ok, err := o.oldest(ctx, provider)
	if err != nil || !ok {
		return o.cfg.Tick, err
	}
	if err := o.resume(ctx, id); err != nil {
		return 0, err
	}
	sql := `UPDATE onboard_waits SET resumed_at = now() WHERE customer_id = $1`
	if forget {
		sql = `DELETE FROM onboard_waits WHERE customer_id = $1`
	}
	if _, err := o.cfg.Pool.Exec(ctx, sql, id); err != nil {
		return 0, err
	}
	return o.jitter(), nil
}

// jitter is the wait between two resumes: 1/ResumeRate, scaled by a
// uniform draw from [0.5, 1.5].
func (o *Outages) jitter() time.Duration {
	return time.Duration(float64(time.Second) / o.cfg.ResumeRate * (0.5 + rand.Float64()))
}

// resume ends the customer's wait and requests its step again, in one
// append. A customer that no longer waits (cancelled, resumed before) is
// left as it is.
func (o *Outages) resume(ctx context.Context, id uuid.UUID) error {
	meta := commands.Meta{Actor: "system:outages", CausationID: "outages:resume"}
	_, err := o.cfg.Commands.Execute(ctx, id, nil, meta, func(c *domain.Customer) error {
		step := c.CurrentStep()
		if err := c.Unblock(); err != nil {
			return err
		}
		_, err := c.RequestStep(step)
		return err
	})
	if err != nil && !benign(err) {
		return err
	}
	return nil
}

// waiting counts the customers waiting on provider (not yet resumed).
func (o *Outages) waiting(ctx context.Context, provider string) (int, error) {
	var n int
	err := o.cfg.Pool.QueryRow(ctx, `SELECT count(*) FROM onboard_waits WHERE provider = $1 AND resumed_at IS NULL`, provider).Scan(&n)
	return n, err
}

// oldest is the customer waiting longest on provider.
func (o *Outages) oldest(ctx context.Context, provider string) (uuid.UUID, bool, error) {
	var id uuid.UUID
	err := o.cfg.Pool.QueryRow(ctx, `SELECT customer_id FROM onboard_waits WHERE provider = $1 AND resumed_at IS NULL
		ORDER BY since, customer_id LIMIT 1`, provider).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, false, nil
	}
	return id, err == nil, err
}

// resumedSince counts the customers resumed since the provider
// recovered, and forgets them: the rows of earlier outages went at their
// end.
func (o *Outages) resumedSince(ctx context.Context, provider string) (int, error) {
	tag, err := o.cfg.Pool.Exec(ctx, `DELETE FROM onboard_waits WHERE provider = $1 AND resumed_at IS NOT NULL`, provider)
	return int(tag.RowsAffected()), err
}

// Wait records that customer id waits on provider since the time of its
// Blocked event, unless it waits already: a customer refused again keeps
// its place while it was the probe, and joins the end of the line once
// resumed.
func (o *Outages) Wait(ctx context.Context, id uuid.UUID, provider string, step domain.Step, since time.Time) error {
	_, err := o.cfg.Pool.Exec(ctx, `
INSERT INTO onboard_waits (customer_id, provider, step, since) VALUES ($1, $2, $3, $4)
ON CONFLICT (customer_id) DO UPDATE SET provider = EXCLUDED.provider, step = EXCLUDED.step, resumed_at = NULL,
	since = CASE WHEN onboard_waits.resumed_at IS NULL THEN onboard_waits.since ELSE EXCLUDED.since END`,
		id, provider, string(step), since)
	if err != nil {
		return fmt.Errorf("record the wait of %s on %s: %w", id, provider, err)
	}
	return nil
}

// Status is the provider's outage status, as its stream says.
func (o *Outages) Status(ctx context.Context, provider string) (domain.ProviderStatus, error) {
	p, err := LoadProvider(ctx, o.cfg.Store, provider)
	if err != nil {
		return "", err
	}
	return p.Status(), nil
}

// append appends e to the provider's stream at the version p was loaded
// at. Another process that decided first makes it a no-op.
func (o *Outages) append(ctx context.Context, p *domain.Provider, provider string, e domain.ProviderEvent) error {
	data, err := jsonOf(e)
	if err != nil {
		return err
	}
	_, err = o.cfg.Store.Append(ctx, domain.ProviderStreamID(provider), eventstore.ExpectedVersion(p.Version()),
		[]eventstore.NewEvent{{ID: o.cfg.NewID(), Type: e.EventType(), SchemaVersion: 1, Data: data,
			Metadata: eventstore.Metadata{Actor: "system:outages"}}},
		eventstore.WithStreamType("provider"))
	if errors.Is(err, eventstore.ErrConcurrencyConflict) {
		return nil // decided elsewhere: the next step reads it
	}
	return err
}

// LoadProvider reads a provider's outage cycle from its stream.
func LoadProvider(ctx context.Context, store eventstore.StreamReader, provider string) (*domain.Provider, error) {
	envs, err := store.ReadStream(ctx, domain.ProviderStreamID(provider), 1)
	if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil, err
	}
	events := make([]domain.ProviderEvent, 0, len(envs))
	at := make([]time.Time, 0, len(envs))
	for _, env := range envs {
		e, err := domain.DecodeProviderEvent(env.Type, env.Data)
		if err != nil {
			return nil, err
		}
		events = append(events, e)
		at = append(at, env.RecordedAt)
	}
	return domain.ProviderFromHistory(provider, events, at), nil
}

func jsonOf(e domain.ProviderEvent) ([]byte, error) { return json.Marshal(e) }

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
