package main

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/projections"
)

// metrics are the pipeline's Prometheus metrics, on a registry of their own
// (never the global one) served at /metrics.
type metrics struct {
	reg         *prometheus.Registry
	commands    *prometheus.CounterVec
	appendTime  prometheus.Histogram
	retries     *prometheus.CounterVec
	pauses      *prometheus.CounterVec
	relayed     prometheus.Counter
	relayLag    prometheus.Gauge
	rewinds     prometheus.Counter
	handled     *prometheus.CounterVec
	handleTime  *prometheus.HistogramVec
	deadLetters *prometheus.CounterVec
	forged      *prometheus.CounterVec
	idemExpired prometheus.Counter
	outages     *prometheus.CounterVec
	waiting     *prometheus.GaugeVec
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	// The live heap at the last collection (go_gc_heap_live_bytes) beside
	// the usual memstats: with GOGC at defaultGCPercent, heap_alloc runs up
	// to five times the live heap between collections, which is garbage.
	reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		reg: reg,
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onboard_commands_total",
			Help: "Commands run on customers, by command and outcome (ok, rejected, conflict, error)."}, []string{"command", "outcome"}),
		appendTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "onboard_append_duration_seconds",
			Help: "Time to append a command's events to the event store.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onboard_step_retries_total",
			Help: "Durable retries scheduled after transient step failures, by step."}, []string{"step"}),
		pauses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onboard_pauses_total",
			Help: "Customers paused for an operator (alerts raised), by step and error class."}, []string{"step", "error_class"}),
		relayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "onboard_relay_events_total",
			Help: "Events the relay published and JetStream acknowledged."}),
		relayLag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "onboard_relay_lag_seconds",
			Help: "Time from an event's recording to JetStream's ack, for the last relayed batch."}),
		rewinds: prometheus.NewCounter(prometheus.CounterOpts{Name: "onboard_relay_rewinds_total",
			Help: "Times the relay found the stream behind its cursor and published again."}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onboard_consumer_messages_total",
			Help: "Deliveries to durable consumers, by handler and outcome."}, []string{"handler", "outcome"}),
		handleTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "onboard_consumer_handle_seconds",
			Help: "Time a durable consumer's handler took.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"handler"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onboard_dead_letters_total",
			Help: "Messages recorded as dead letters, by handler and event type."}, []string{"handler", "event_type"}),
		forged: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onboard_forged_messages_total",
			Help: "Messages on NATS that do not match the event store (an alert), by the handler that dead-lettered them or relay."}, []string{"where"}),
		idemExpired: prometheus.NewCounter(prometheus.CounterOpts{Name: "onboard_idempotency_records_deleted_total",
			Help: "Expired idempotency records the command role deleted."}),
		outages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onboard_provider_outage_alerts_total",
			Help: "Provider outages alerted: one per outage, by provider."}, []string{"provider"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "onboard_provider_waiting_customers",
			Help: "Customers waiting on a provider that is down (reported by the process that resumes them)."}, []string{"provider"}),
	}
	reg.MustRegister(m.commands, m.appendTime, m.retries, m.pauses, m.relayed, m.relayLag, m.rewinds, m.handled, m.handleTime, m.deadLetters,
		m.forged, m.idemExpired, m.outages, m.waiting)
	return m
}

func (m *metrics) observeCommand(cmd domain.Command, outcome string, d time.Duration) {
	name := string(cmd)
	if name == "" {
		name = "unknown"
	}
	m.commands.WithLabelValues(name, outcome).Inc()
	if d > 0 {
		m.appendTime.Observe(d.Seconds())
	}
}

func (m *metrics) idempotencyDeleted(n int64) { m.idemExpired.Add(float64(n)) }

func (m *metrics) outageAlert(provider string, _ int) { m.outages.WithLabelValues(provider).Inc() }

func (m *metrics) waitingOn(provider string, n int) {
	m.waiting.WithLabelValues(provider).Set(float64(n))
}

func (m *metrics) onRetry(step domain.Step) { m.retries.WithLabelValues(string(step)).Inc() }

func (m *metrics) onPause(step domain.Step, class domain.ErrorClass) {
	m.pauses.WithLabelValues(string(step), string(class)).Inc()
}

// The messaging.Metrics methods.

func (m *metrics) EventsRelayed(n int, lag time.Duration) {
	m.relayed.Add(float64(n))
	m.relayLag.Set(lag.Seconds())
}

func (m *metrics) RelayRewound() { m.rewinds.Inc() }

func (m *metrics) MessageHandled(handler string, d time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.handled.WithLabelValues(handler, outcome).Inc()
	m.handleTime.WithLabelValues(handler).Observe(d.Seconds())
}

func (m *metrics) MessageForged(where string) { m.forged.WithLabelValues(where).Inc() }

func (m *metrics) DeadLettered(handler, eventType string) {
	m.deadLetters.WithLabelValues(handler, eventType).Inc()
}

// readModelCollector reports, at each scrape, the projections' lag and the
// funnel: onboardings by state and time to active.
type readModelCollector struct {
	p        *projections.Projections
	lagPos   *prometheus.Desc
	lagSec   *prometheus.Desc
	byState  *prometheus.Desc
	toActive *prometheus.Desc
}

func newReadModelCollector(p *projections.Projections) *readModelCollector {
	return &readModelCollector{
		p:        p,
		lagPos:   prometheus.NewDesc("onboard_projection_lag_events", "Events a projection has not applied yet.", []string{"projection"}, nil),
		lagSec:   prometheus.NewDesc("onboard_projection_lag_seconds", "Age of the oldest event a projection has not applied yet.", []string{"projection"}, nil),
		byState:  prometheus.NewDesc("onboard_customers", "Customers by onboarding state.", []string{"state"}, nil),
		toActive: prometheus.NewDesc("onboard_time_to_active_seconds", "Signup-to-active time of the customers activated in the last 24 hours.", []string{"quantile"}, nil),
	}
}

func (c *readModelCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lagPos
	ch <- c.lagSec
	ch <- c.byState
	ch <- c.toActive
}

func (c *readModelCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range projections.Names() {
		lag, err := c.p.Lag(ctx, name)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.lagPos, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.lagPos, prometheus.GaugeValue, float64(lag.Positions), name)
		ch <- prometheus.MustNewConstMetric(c.lagSec, prometheus.GaugeValue, lag.Seconds, name)
	}
	f, err := c.p.Funnel(ctx, projections.FunnelQuery{Since: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.byState, errors.Join(errors.New("funnel"), err))
		return
	}
	for state, n := range f.States {
		ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(c.toActive, prometheus.GaugeValue, f.TimeToActive.P50Seconds, "0.5")
	ch <- prometheus.MustNewConstMetric(c.toActive, prometheus.GaugeValue, f.TimeToActive.P95Seconds, "0.95")
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
