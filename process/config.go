package process

import (
	"errors"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/providers"
)

// Config configures the process managers.
type Config struct {
	Commands  *commands.Handler
	Providers Providers
	Timers    TimerStore
	// MaxAttempts is how many attempts a step gets (per attempt group)
	// before the customer is paused; default 5 for every step.
	MaxAttempts map[domain.Step]int
	// BaseDelay and MaxDelay shape the durable retry backoff: attempt n
	// waits a uniformly random time in [0, min(MaxDelay, BaseDelay·2^(n-1))]
	// (full jitter), or the provider's Retry-After when that is longer.
	// Defaults 1s and 5m.
	BaseDelay, MaxDelay time.Duration
	// VerificationDeadline is how long to wait for a KYC webhook before
	// polling the provider; VerificationPolls how many polls before the
	// customer is paused. Defaults 15m and 3.
	VerificationDeadline time.Duration
	VerificationPolls    int
	// SupportEmail is told about rejected customers.
	SupportEmail string
	// OnPause is called for every operator alert (its metric hook): each
	// pause, and a support email refused for good (verification, permanent).
	OnPause func(step domain.Step, class domain.ErrorClass)
	// OnRetry is called for every durable retry scheduled.
	OnRetry func(step domain.Step)
	// Outages, when set, makes a customer whose provider is down wait
	// (Blocked) instead of spending its attempt; Breakers reports this
	// process's breaker of a provider. Without Outages every failure
	// counts as an attempt.
	Outages  OutageBoard
	Breakers func(provider string) providers.BreakerState
	// Keys decrypts the customers' personal data for the providers
	// that need it, and destroys an erased customer's key should its
	// erasure have stopped short of it; without it encrypted fields read as
	// erased.
	Keys   Keys
	Now    func() time.Time
	Logger *slog.Logger
	// Tracer records a span per reaction and per provider call, continuing
	// the trace carried in the event's metadata; default: no tracing.
	Tracer trace.Tracer
}

func (c *Config) setDefaults() {
	if c.BaseDelay <= 0 {
		c.BaseDelay = time.Second
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = 5 * time.Minute
	}
	if c.VerificationDeadline <= 0 {
		c.VerificationDeadline = 15 * time.Minute
	}
	if c.VerificationPolls <= 0 {
		c.VerificationPolls = 3
	}
	if c.SupportEmail == "" {
		c.SupportEmail = "support@onboard.dev"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.OnPause == nil {
		c.OnPause = func(domain.Step, domain.ErrorClass) {}
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider().Tracer("onboard")
	}
	if c.OnRetry == nil {
		c.OnRetry = func(domain.Step) {}
	}
}

// Validate names every missing setting.
func (c Config) Validate() error {
	var errs []error
	if c.Commands == nil {
		errs = append(errs, errors.New("process: Commands is required"))
	}
	if c.Timers == nil {
		errs = append(errs, errors.New("process: Timers is required"))
	}
	errs = append(errs, c.Providers.Validate())
	return errors.Join(errs...)
}
