package providers

import (
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Policy configures the resilience layer around one provider client. The
// zero value is usable: setDefaults fills what is left zero.
//
// The in-process retries are deliberately short (a few attempts within a few
// seconds): waits longer than that are durable retries done by the process
// managers, which survive a crash.
type Policy struct {
	// Timeout bounds one attempt (connect, send, wait, read). Default 5s.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one call, the first included.
	// Default 3; 1 disables in-process retries.
	MaxAttempts int
	// BaseDelay and MaxDelay shape the backoff between attempts:
	// exponential with full jitter, wait = rand[0, min(MaxDelay,
	// BaseDelay·2^retry)]. Defaults 100ms and 2s.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter is the longest Retry-After honoured in process. A
	// provider asking for a longer wait ends the call with a transient
	// *Error whose RetryAfter tells the process manager when to retry.
	// Default 5s.
	MaxRetryAfter time.Duration
	// MaxElapsed bounds the whole call, waits included. Default 15s.
	MaxElapsed time.Duration

	Breaker  BreakerPolicy
	Bulkhead BulkheadPolicy

	// Now is the clock used to read Retry-After dates. Default time.Now.
	Now func() time.Time

	// Hooks observe the layer (metrics, logs). NewMetrics returns Hooks
	// that feed Prometheus.
	Hooks Hooks
}

// BreakerPolicy configures the circuit breaker of one provider. Only
// transient failures count against it: a permanent error (a declined card)
// says nothing about the provider's health, and a call the caller abandoned
// (its ctx ended) is not counted at all.
type BreakerPolicy struct {
	// FailureThreshold is the number of consecutive transient failures
	// (attempts, not calls) that opens the breaker. Default 5.
	FailureThreshold uint32
	// OpenTimeout is how long the breaker stays open before letting probes
	// through (half-open). Default 30s.
	OpenTimeout time.Duration
	// HalfOpenRequests is the number of probes allowed while half-open; that
	// many successes close the breaker, one failure reopens it. Default 1.
	HalfOpenRequests uint32
}

// BulkheadPolicy bounds the concurrent attempts to one provider, so that a
// slow provider cannot take every goroutine and connection of the process.
type BulkheadPolicy struct {
	// MaxConcurrent is the number of attempts in flight at once. Default 16.
	MaxConcurrent int
	// MaxWait is how long an attempt waits for a free slot (also bounded by
	// its ctx). The default, 0, fails fast: a full bulkhead returns a
	// transient *Error wrapping ErrBulkheadFull at once, because queueing
	// in process under overload only piles up goroutines, and the process
	// managers retry durably anyway.
	MaxWait time.Duration
}

// BreakerState is the state of a provider's circuit breaker.
type BreakerState int

// The breaker states, with the numeric values exported as the
// onboard_external_breaker_state gauge.
const (
	BreakerClosed   BreakerState = 0
	BreakerHalfOpen BreakerState = 1
	BreakerOpen     BreakerState = 2
)

// String returns "closed", "half-open" or "open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerHalfOpen:
		return "half-open"
	case BreakerOpen:
		return "open"
	default:
		return "unknown"
	}
}

// Outcome is how one attempt ended, as reported to Hooks.OnAttempt.
type Outcome string

// The attempt outcomes.
const (
	OutcomeSuccess   Outcome = "success"
	OutcomeTransient Outcome = "transient"
	OutcomePermanent Outcome = "permanent"
	// OutcomeRejected: the attempt was not sent (breaker open, bulkhead
	// full).
	OutcomeRejected Outcome = "rejected"
)

// Hooks observe the resilience layer. Every field is optional. Hooks are
// called synchronously and must be quick and safe for concurrent use;
// OnStateChange runs under the breaker's lock and must not call the client.
type Hooks struct {
	// OnStateChange is called on every breaker transition, and once when
	// the client is built (from == to == BreakerClosed) so that a gauge
	// starts at a known value.
	OnStateChange func(provider string, from, to BreakerState)
	// OnAttempt is called after each attempt with its outcome and duration.
	OnAttempt func(provider, op string, outcome Outcome, d time.Duration)
	// OnRetry is called before waiting d to retry after err.
	OnRetry func(provider, op string, err error, d time.Duration)
}

func (p *Policy) setDefaults() {
	if p.Timeout == 0 {
		p.Timeout = 5 * time.Second
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 3
	}
	if p.BaseDelay == 0 {
		p.BaseDelay = 100 * time.Millisecond
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = 2 * time.Second
	}
	if p.MaxRetryAfter == 0 {
		p.MaxRetryAfter = 5 * time.Second
	}
	if p.MaxElapsed == 0 {
		p.MaxElapsed = 15 * time.Second
	}
	if p.Breaker.FailureThreshold == 0 {
		p.Breaker.FailureThreshold = 5
	}
	if p.Breaker.OpenTimeout == 0 {
		p.Breaker.OpenTimeout = 30 * time.Second
	}
	if p.Breaker.HalfOpenRequests == 0 {
		p.Breaker.HalfOpenRequests = 1
	}
	if p.Bulkhead.MaxConcurrent == 0 {
		p.Bulkhead.MaxConcurrent = 16
	}
	if p.Now == nil {
		p.Now = time.Now
	}
}

// Validate reports every invalid field at once.
func (p Policy) Validate() error {
	var errs []error
	if p.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	if p.MaxAttempts < 0 {
		errs = append(errs, errors.New("max attempts must not be negative"))
	}
	if p.BaseDelay < 0 || p.MaxDelay < 0 || p.MaxRetryAfter < 0 || p.MaxElapsed < 0 {
		errs = append(errs, errors.New("delays must not be negative"))
	}
	if p.BaseDelay > 0 && p.MaxDelay > 0 && p.MaxDelay < p.BaseDelay {
		errs = append(errs, errors.New("max delay must not be below base delay"))
	}
	if p.Breaker.OpenTimeout < 0 {
		errs = append(errs, errors.New("breaker open timeout must not be negative"))
	}
	if p.Bulkhead.MaxConcurrent < 0 {
		errs = append(errs, errors.New("bulkhead max concurrent must not be negative"))
	}
	if p.Bulkhead.MaxWait < 0 {
		errs = append(errs, errors.New("bulkhead max wait must not be negative"))
	}
	return errors.Join(errs...)
}

// backOff returns the wait between attempts: backoff/v5's exponential
// backoff around half the ceiling with a randomization factor of 1, which
// draws from [0, ceiling] (full jitter, AWS architecture blog, "Exponential
// Backoff And Jitter"): around the ceiling itself, as by default, the
// retries of calls that failed together would stay in step.
func (p Policy) backOff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: p.BaseDelay / 2, RandomizationFactor: 1, Multiplier: 2, MaxInterval: p.MaxDelay / 2}
}

// Health is a provider's health as the operator sees it: its breaker (the
// worst of the processes that call it), its outage status, the customers
// waiting on it, and its calls over the last minutes, whole and as a
// series of points for a chart.
type Health struct {
	Provider string `json:"provider"`
	// Breaker is "closed", "half-open" or "open": the worst state reported
	// by a process in the last minute.
	Breaker string `json:"breaker"`
	// Outage is "up", "down" or "recovering".
	Outage  string `json:"outage"`
	Waiting int    `json:"waiting"`
	// Window is the span the figures below cover, in seconds.
	Window       int           `json:"window_seconds"`
	Attempts     int64         `json:"attempts"`
	Errors       int64         `json:"errors"`
	ErrorRate    float64       `json:"error_rate"`
	LatencyAvgMS float64       `json:"latency_avg_ms"`
	LatencyMaxMS float64       `json:"latency_max_ms"`
	Series       []HealthPoint `json:"series"`
}

// HealthPoint is one bucket of a provider's calls.
type HealthPoint struct {
	At           time.Time `json:"at"`
	Attempts     int64     `json:"attempts"`
	ErrorRate    float64   `json:"error_rate"`
	LatencyAvgMS float64   `json:"latency_avg_ms"`
}
