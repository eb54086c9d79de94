package process

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/providers"
)

// healthBucket is the span of one row of provider_samples, and of one point
// of a provider's health series.
const healthBucket = 10 * time.Second

// HealthRecorder samples this process's provider calls (through the
// resilience layer's hooks) and writes them to provider_samples every few
// seconds, with its breakers' states, so that any process can tell a
// provider's health across the workers that call it.
type HealthRecorder struct {
	pool     *pgxpool.Pool
	process  string
	breakers func(provider string) providers.BreakerState

	mu      sync.Mutex
	samples map[string]*sample // by provider
}

type sample struct {
	attempts, errors int64
	sum, max         float64 // milliseconds
}

// NewHealthRecorder returns a recorder that writes as this process
// (hostname and pid).
func NewHealthRecorder(pool *pgxpool.Pool, breakers func(provider string) providers.BreakerState) *HealthRecorder {
	host, _ := os.Hostname()
	return &HealthRecorder{pool: pool, process: fmt.Sprintf("%s:%d", host, os.Getpid()), breakers: breakers, samples: map[string]*sample{}}
}

// Hooks returns inner with OnAttempt also feeding the recorder. A call the
// breaker or bulkhead refused was not sent: it counts neither as an attempt
// nor as an error. A permanent failure (a declined card) is an answer, not
// an error of the provider.
func (r *HealthRecorder) Hooks(inner providers.Hooks) providers.Hooks {
	next := inner.OnAttempt
	inner.OnAttempt = func(provider, op string, outcome providers.Outcome, d time.Duration) {
		if next != nil {
			next(provider, op, outcome, d)
		}
		if outcome == providers.OutcomeRejected {
			return
		}
		ms := float64(d) / float64(time.Millisecond)
		r.mu.Lock()
		defer r.mu.Unlock()
		s := r.samples[provider]
		if s == nil {
			s = &sample{}
			r.samples[provider] = s
		}
		s.attempts++
		if outcome == providers.OutcomeTransient {
			s.errors++
		}
		s.sum += ms
		s.max = max(s.max, ms)
	}
	return inner
}

// Run writes the samples every interval (default 5s) until ctx is done.
func (r *HealthRecorder) Run(ctx context.Context, interval time.Duration, log *slog.Logger) error {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	for {
		if err := sleepCtx(ctx, interval); err != nil {
			return err
		}
		if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
			log.Warn("writing provider health samples failed", "err", err)
		}
	}
}

// Flush writes what was sampled since the last flush, and every provider's
// breaker state, into the current bucket; it drops buckets over an hour
// old.
func (r *HealthRecorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	taken := r.samples
	r.samples = map[string]*sample{}
	r.mu.Unlock()
	bucket := time.Now().Truncate(healthBucket)
	b := &pgx.Batch{}
	for _, s := range domain.Steps() {
		p := s.Provider()
		x := taken[p]
		if x == nil {
			x = &sample{}
		}
		b.Queue(`INSERT INTO provider_samples AS t (process, provider, bucket, attempts, errors, latency_sum, latency_max, breaker)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (provider, bucket, process) DO UPDATE SET attempts = t.attempts + EXCLUDED.attempts, errors = t.errors + EXCLUDED.errors,
	latency_sum = t.latency_sum + EXCLUDED.latency_sum, latency_max = greatest(t.latency_max, EXCLUDED.latency_max),
	breaker = EXCLUDED.breaker, updated_at = now()`,
			r.process, p, bucket, x.attempts, x.errors, x.sum, x.max, r.breakers(p).String())
	}
	b.Queue(`DELETE FROM provider_samples WHERE bucket < now() - interval '1 hour'`)
	return r.pool.SendBatch(ctx, b).Close()
}

// HealthReader reads the providers' health from the workers' samples, the
// providers' outage streams and the customers waiting on them.
type HealthReader struct {
	Pool   *pgxpool.Pool
	Store  eventstore.StreamReader
	Window time.Duration // default 5m
}

// Health returns every provider's health over the last Window.
func (h HealthReader) Health(ctx context.Context) ([]providers.Health, error) {
	window := h.Window
	if window <= 0 {
		window = 5 * time.Minute
	}
	var out []providers.Health
	for _, s := range domain.Steps() {
		p := s.Provider()
		ph := providers.Health{Provider: p, Window: int(window / time.Second), Breaker: providers.BreakerClosed.String(), Series: []providers.HealthPoint{}}
		prov, err := LoadProvider(ctx, h.Store, p)
		if err != nil {
			return nil, err
		}
		ph.Outage = string(prov.Status())
		if err := h.Pool.QueryRow(ctx, `SELECT count(*) FROM onboard_waits WHERE provider = $1 AND resumed_at IS NULL`, p).Scan(&ph.Waiting); err != nil {
			return nil, err
		}
		if err := h.calls(ctx, &ph, window); err != nil {
			return nil, err
		}
		out = append(out, ph)
	}
	return out, nil
}

// calls fills the breaker, the totals and the series of ph.
func (h HealthReader) calls(ctx context.Context, ph *providers.Health, window time.Duration) error {
	var worst string
	// Each process's latest word on its breaker, from the processes that
	// wrote in the last minute.
	err := h.Pool.QueryRow(ctx, `SELECT coalesce(max(CASE breaker WHEN 'open' THEN 2 WHEN 'half-open' THEN 1 ELSE 0 END), 0)::text
		FROM (SELECT DISTINCT ON (process) breaker FROM provider_samples
		      WHERE provider = $1 AND updated_at > now() - interval '1 minute' ORDER BY process, bucket DESC) latest`, ph.Provider).Scan(&worst)
	if err != nil {
		return err
	}
	switch worst {
	case "2":
		ph.Breaker = providers.BreakerOpen.String()
	case "1":
		ph.Breaker = providers.BreakerHalfOpen.String()
	}
	rows, err := h.Pool.Query(ctx, `SELECT bucket, sum(attempts), sum(errors), sum(latency_sum), max(latency_max)
		FROM provider_samples WHERE provider = $1 AND bucket > now() - $2::interval GROUP BY bucket ORDER BY bucket`, ph.Provider, window.String())
	if err != nil {
		return err
	}
	defer rows.Close()
	var sum float64
	for rows.Next() {
		var at time.Time
		var n, errs int64
		var lsum, lmax float64
		if err := rows.Scan(&at, &n, &errs, &lsum, &lmax); err != nil {
			return err
		}
		pt := providers.HealthPoint{At: at, Attempts: n}
		if n > 0 {
			pt.ErrorRate, pt.LatencyAvgMS = float64(errs)/float64(n), lsum/float64(n)
		}
		ph.Series = append(ph.Series, pt)
		ph.Attempts += n
		ph.Errors += errs
		sum += lsum
		ph.LatencyMaxMS = max(ph.LatencyMaxMS, lmax)
	}
	if ph.Attempts > 0 {
		ph.ErrorRate, ph.LatencyAvgMS = float64(ph.Errors)/float64(ph.Attempts), sum/float64(ph.Attempts)
	}
	return rows.Err()
}
