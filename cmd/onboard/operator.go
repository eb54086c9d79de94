package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/operator"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/projections"
)

// defaultBulkRate is the most commands a second of one bulk operation
// (ONBOARD_BULK_RATE).
const defaultBulkRate = 20

// operatorTools are the bulk operations, explain and the stuck detector,
// wired to this process's store, timers and dead letters.
type operatorTools struct {
	bulks     *operator.Bulks
	reads     *projections.Projections
	explainer operator.Explainer
	stuck     operator.Detector
	dead      httpapi.DeadLetterAdmin
}

// policyOf is what the process managers do next, for explain's diagnosis
// and the stuck deadlines.
func policyOf(pc process.Config) operator.Policy {
	return operator.Policy{MaxAttempts: pc.MaxAttempts, VerificationDeadline: pc.VerificationDeadline,
		VerificationPolls: pc.VerificationPolls, BaseDelay: pc.BaseDelay, MaxDelay: pc.MaxDelay}.WithDefaults()
}

// stuckDeadlines are the derived deadlines with ONBOARD_STUCK_DEADLINES over
// them.
func stuckDeadlines(cfg runConfig) (operator.Deadlines, error) {
	d, err := operator.ParseDeadlines(cfg.stuckDeadlines, operator.DefaultDeadlines(policyOf(cfg.process)))
	if err != nil {
		return nil, fmt.Errorf("ONBOARD_STUCK_DEADLINES: %w", err)
	}
	return d, nil
}

// loadOperatorConfig reads ONBOARD_BULK_RATE and ONBOARD_STUCK_DEADLINES
// (after the process managers' settings, which the deadlines derive from).
func loadOperatorConfig(cfg *runConfig) []error {
	var errs []error
	if r := os.Getenv("ONBOARD_BULK_RATE"); r != "" {
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 || v > 10000 {
			errs = append(errs, fmt.Errorf("ONBOARD_BULK_RATE: want commands a second, above 0 and at most 10000, got %q", r))
		}
		cfg.bulkRate = v
	}
	cfg.stuckDeadlines = os.Getenv("ONBOARD_STUCK_DEADLINES")
	if _, err := stuckDeadlines(*cfg); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func newOperatorTools(ctx context.Context, cfg runConfig, store *postgres.Store, keys eventstore.KeyReader, cmds *commands.Handler,
	proj *projections.Projections, nc *nats.Conn, log *slog.Logger) (*operatorTools, error) {
	pool := store.Pool()
	if proj == nil {
		// Only read from: the projector runs elsewhere.
		var err error
		if proj, err = projections.New(projections.Config{Pool: pool, Source: store}); err != nil {
			return nil, err
		}
	}
	rate := cfg.bulkRate
	if rate <= 0 {
		rate = defaultBulkRate
	}
	bulks, err := operator.NewBulks(operator.BulkConfig{Pool: pool, Commands: cmds, Records: store, Reads: proj, Rate: rate,
		Logger: log})
	if err != nil {
		return nil, err
	}
	deadlines, err := stuckDeadlines(cfg)
	if err != nil {
		return nil, err
	}
	dl, err := messaging.NewDeadLetters(ctx, pool, nc, messaging.StreamConfig{})
	if err != nil {
		return nil, err
	}
	timers := timerSource{process.NewTimers(pool)}
	dead := deadLetterSource{d: dl, canPublish: nc != nil}
	return &operatorTools{
		bulks: bulks, reads: proj, dead: dead,
		explainer: operator.Explainer{Events: store, Timers: timers, Inbox: inboxSource{pool}, DeadLetters: dead, Policy: policyOf(cfg.process), Keys: keys},
		stuck:     operator.Detector{Reads: proj, Timers: timers, Deadlines: deadlines},
	}, nil
}

func (t *operatorTools) api(log *slog.Logger) *httpapi.OperatorAPI {
	return httpapi.NewOperatorAPI(httpapi.OperatorConfig{Bulks: t.bulks, Reads: t.reads, Explainer: t.explainer, Stuck: t.stuck,
		DeadLetters: t.dead, Logger: log})
}

// timerSource reads the worker's timers for explain and the stuck detector.
type timerSource struct{ t *process.Timers }

func (s timerSource) TimersOf(ctx context.Context, id uuid.UUID) ([]operator.PendingTimer, error) {
	ts, err := s.t.Of(ctx, id)
	out := make([]operator.PendingTimer, len(ts))
	for i, t := range ts {
		out[i] = operator.PendingTimer{Kind: string(t.Kind), Step: string(t.Step), Attempt: t.Attempt, Ref: t.Ref, DueAt: t.DueAt}
	}
	return out, err
}

// inboxSource reads the process managers' inbox rows.
type inboxSource struct{ pool *pgxpool.Pool }

func (s inboxSource) InboxOf(ctx context.Context, ids []uuid.UUID) ([]operator.InboxEntry, error) {
	var handlers []string
	for _, m := range process.Managers() {
		handlers = append(handlers, pmHandler(m))
	}
	rows, err := messaging.InboxOf(ctx, s.pool, handlers, ids)
	out := make([]operator.InboxEntry, len(rows))
	for i, r := range rows {
		out[i] = operator.InboxEntry{Handler: r.Handler, EventID: r.EventID, ProcessedAt: r.ProcessedAt}
	}
	return out, err
}

// deadLetterSource lists and re-drives the messaging's dead letters.
type deadLetterSource struct {
	d *messaging.DeadLetters
	// canPublish is false in a process without a NATS connection: it lists
	// but cannot re-drive.
	canPublish bool
}

func entryOf(d messaging.DeadLetter) operator.DeadLetterEntry {
	return operator.DeadLetterEntry{ID: d.ID, Handler: d.Handler, EventID: d.EventID, EventType: d.EventType, Error: d.Error,
		Status: string(d.Status), Deliveries: d.Deliveries, UpdatedAt: d.UpdatedAt}
}

func (s deadLetterSource) DeadLettersOf(ctx context.Context, streamID string) ([]operator.DeadLetterEntry, error) {
	got, err := s.d.OfStream(ctx, streamID)
	out := make([]operator.DeadLetterEntry, len(got))
	for i, d := range got {
		out[i] = entryOf(d)
	}
	return out, err
}

func (s deadLetterSource) List(ctx context.Context, status string, limit int) ([]operator.DeadLetterEntry, error) {
	got, err := s.d.List(ctx, messaging.DeadLetterFilter{Status: messaging.DeadLetterStatus(status), Limit: limit})
	out := make([]operator.DeadLetterEntry, len(got))
	for i, d := range got {
		out[i] = entryOf(d)
	}
	return out, err
}

func (s deadLetterSource) Redrive(ctx context.Context, id int64) error {
	if !s.canPublish {
		_, err := s.d.Get(ctx, id)
		if errors.Is(err, messaging.ErrDeadLetterNotFound) {
			return fmt.Errorf("%w: %w", httpapi.ErrDeadLetterNotFound, err)
		}
		return errors.Join(httpapi.ErrRedriveUnavailable, err)
	}
	err := s.d.Redrive(ctx, id)
	switch {
	case errors.Is(err, messaging.ErrDeadLetterNotFound):
		return fmt.Errorf("%w: %w", httpapi.ErrDeadLetterNotFound, err)
	case errors.Is(err, messaging.ErrDeadLetterResolved):
		return fmt.Errorf("%w: %w", httpapi.ErrDeadLetterResolved, err)
	}
	return err
}

// stuckCollector serves onboard_stuck_customers: the customers past the
// deadline of their next event, by state.
type stuckCollector struct {
	d    operator.Detector
	desc *prometheus.Desc
}

func newStuckCollector(d operator.Detector) *stuckCollector {
	return &stuckCollector{d: d, desc: prometheus.NewDesc("onboard_stuck_customers",
		"Customers past the deadline of their next expected event (GET /v1/operator/stuck), by state.", []string{"state"}, nil)}
}

func (c *stuckCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stuckCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stuck, err := c.d.Stuck(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	n := map[string]int{}
	for _, s := range stuck {
		n[s.State]++
	}
	for _, state := range []string{"pending", "verifying", "verified", "provisioning", "paused", "cancelling"} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n[state]), state)
	}
}
