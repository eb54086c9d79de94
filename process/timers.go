package process

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
)

// TimerKind says what a timer does when it fires.
type TimerKind string

// The timers of the process managers.
const (
	// TimerRetry requests the next attempt of a step after its backoff.
	TimerRetry TimerKind = "retry"
	// TimerDeadline polls the identity provider when no verdict came.
	TimerDeadline TimerKind = "deadline"
	// TimerCompensate retries a failed compensation.
	TimerCompensate TimerKind = "compensate"
	// TimerNotify retries telling support about a rejection.
	TimerNotify TimerKind = "notify"
)

// Timer is a durable wake-up call: it lives in Postgres, so a retry or a
// deadline survives a crash of the process that scheduled it.
type Timer struct {
	CustomerID uuid.UUID
	Kind       TimerKind
	Step       domain.Step
	// Attempt is the attempt (or poll count) the timer belongs to; a timer
	// whose attempt no longer matches the customer is dropped.
	Attempt int
	// Ref is free data (the KYC check id of a deadline).
	Ref   string
	DueAt time.Time
	// Trace is the trace context of the reaction that scheduled the timer;
	// Schedule fills it from its context, so a retry stays in the
	// customer's trace.
	Trace map[string]string
	gen   int64
}

// Timers stores timers in Postgres. One timer per (customer, kind, step):
// scheduling again replaces it.
type Timers struct {
	pool  *pgxpool.Pool
	lease time.Duration
}

// NewTimers returns the timer store. Its table comes from the database's
// migrations (package schema).
func NewTimers(pool *pgxpool.Pool) *Timers {
	return &Timers{pool: pool, lease: 30 * time.Second}
}

// Schedule stores tm, replacing the customer's timer of the same kind and
// step.
func (t *Timers) Schedule(ctx context.Context, tm Timer) error {
	if tm.Trace == nil {
		tm.Trace = commands.TraceOf(ctx)
	}
	if tm.Trace == nil {
		tm.Trace = map[string]string{}
	}
	_, err := t.pool.Exec(ctx, `
INSERT INTO onboard_timers (customer_id, kind, step, attempt, ref, due_at, trace)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (customer_id, kind, step) DO UPDATE
SET attempt = EXCLUDED.attempt, ref = EXCLUDED.ref, due_at = EXCLUDED.due_at, trace = EXCLUDED.trace, gen = onboard_timers.gen + 1`,
		tm.CustomerID, string(tm.Kind), string(tm.Step), tm.Attempt, tm.Ref, tm.DueAt, tm.Trace)
	if err != nil {
		return fmt.Errorf("schedule %s timer: %w", tm.Kind, err)
	}
	return nil
}

// Claim leases up to limit due timers: they are pushed into the future
// by the lease, so a process that dies while firing them lets another
// fire them once the lease runs out.
func (t *Timers) Claim(ctx context.Context, limit int) ([]Timer, error) {
	rows, err := t.pool.Query(ctx, `
UPDATE onboard_timers AS t SET due_at = now() + $2::interval
FROM (SELECT customer_id, kind, step FROM onboard_timers WHERE due_at <= now()
      ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) AS due
WHERE t.customer_id = due.customer_id AND t.kind = due.kind AND t.step = due.step
RETURNING t.customer_id, t.kind, t.step, t.attempt, t.ref, t.due_at, t.gen, t.trace`, limit, t.lease.String())
	if err != nil {
		return nil, fmt.Errorf("claim timers: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Timer, error) {
		var tm Timer
		var kind, step string
		err := row.Scan(&tm.CustomerID, &kind, &step, &tm.Attempt, &tm.Ref, &tm.DueAt, &tm.gen, &tm.Trace)
		tm.Kind, tm.Step = TimerKind(kind), domain.Step(step)
		return tm, err
	})
}

// Done deletes a fired timer unless it was scheduled again meanwhile.
func (t *Timers) Done(ctx context.Context, tm Timer) error {
	_, err := t.pool.Exec(ctx, `DELETE FROM onboard_timers WHERE customer_id = $1 AND kind = $2 AND step = $3 AND gen = $4`,
		tm.CustomerID, string(tm.Kind), string(tm.Step), tm.gen)
	return err
}

// Pending returns every stored timer, soonest first (for tests and the
// operator console).
func (t *Timers) Pending(ctx context.Context) ([]Timer, error) {
	rows, err := t.pool.Query(ctx, `SELECT customer_id, kind, step, attempt, ref, due_at, gen FROM onboard_timers ORDER BY due_at`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Timer, error) {
		var tm Timer
		var kind, step string
		err := row.Scan(&tm.CustomerID, &kind, &step, &tm.Attempt, &tm.Ref, &tm.DueAt, &tm.gen)
		tm.Kind, tm.Step = TimerKind(kind), domain.Step(step)
		return tm, err
	})
}

// Of returns the customer's pending timers, soonest first (for explain
// and the stuck detector).
func (t *Timers) Of(ctx context.Context, customerID uuid.UUID) ([]Timer, error) {
	rows, err := t.pool.Query(ctx, `SELECT customer_id, kind, step, attempt, ref, due_at, gen FROM onboard_timers
		WHERE customer_id = $1 ORDER BY due_at`, customerID)
	if err != nil {
		return nil, fmt.Errorf("timers of %s: %w", customerID, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Timer, error) {
		var tm Timer
		var kind, step string
		err := row.Scan(&tm.CustomerID, &kind, &step, &tm.Attempt, &tm.Ref, &tm.DueAt, &tm.gen)
		tm.Kind, tm.Step = TimerKind(kind), domain.Step(step)
		return tm, err
	})
}
