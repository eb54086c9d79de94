package providers

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics feeds Prometheus from the resilience layer's hooks. Its
// collectors are registered on the Registerer given to NewMetrics, never on
// the global one. One Metrics serves every client of a process.
type Metrics struct {
	state    *prometheus.GaugeVec
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

// NewMetrics creates and registers:
//
//	onboard_external_breaker_state{provider}          0 closed, 1 half-open, 2 open
//	onboard_external_attempts_total{provider,op,outcome}
//	onboard_external_attempt_duration_seconds{provider,op}
//	onboard_external_retries_total{provider,op}
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "onboard_external_breaker_state",
			Help: "State of the provider's circuit breaker: 0 closed, 1 half-open, 2 open.",
		}, []string{"provider"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onboard_external_attempts_total",
			Help: "Attempts to call a provider, by outcome (success, transient, permanent, rejected).",
		}, []string{"provider", "op", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onboard_external_attempt_duration_seconds",
			Help:    "Duration of one attempt to call a provider.",
			Buckets: prometheus.DefBuckets,
		}, []string{"provider", "op"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onboard_external_retries_total",
			Help: "In-process retries of provider calls.",
		}, []string{"provider", "op"}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.state, m.attempts, m.duration, m.retries} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Hooks returns the hooks to put in Policy.Hooks of every client.
func (m *Metrics) Hooks() Hooks {
	return Hooks{
		OnStateChange: func(provider string, _, to BreakerState) {
			m.state.WithLabelValues(provider).Set(float64(to))
		},
		OnAttempt: func(provider, op string, outcome Outcome, d time.Duration) {
			m.attempts.WithLabelValues(provider, op, string(outcome)).Inc()
			m.duration.WithLabelValues(provider, op).Observe(d.Seconds())
		},
		OnRetry: func(provider, op string, _ error, _ time.Duration) {
			m.retries.WithLabelValues(provider, op).Inc()
		},
	}
}
