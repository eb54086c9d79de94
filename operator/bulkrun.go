package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/time/rate"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// claimed is an operation an executor holds the lease of.
type claimed struct {
	id       uuid.UUID
	operator string
	key      string
	action   Action
	reason   string
	rate     float64
}

// Run executes the running operations, one at a time, until ctx is done.
// Several processes may run it: a lease gives each operation to one of
// them, and another takes it over once the lease runs out. A store that
// fails is retried after a pause.
func (b *Bulks) Run(ctx context.Context) error {
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	for {
		op, ok, err := b.claim(ctx)
		if err == nil && ok {
			err = b.execute(ctx, op)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			b.cfg.Logger.ErrorContext(ctx, "bulk operation: will try again", "err", err)
		}
		if ok && err == nil {
			continue // maybe more operations are waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-idle.C:
		}
	}
}

func (b *Bulks) claim(ctx context.Context) (claimed, bool, error) {
	var op claimed
	var action string
	err := b.cfg.Pool.QueryRow(ctx, `UPDATE operator_bulk SET lease_until = now() + $1::interval
		WHERE id = (SELECT id FROM operator_bulk WHERE status = 'running' AND lease_until < now()
			ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING id, operator, idempotency_key, action, reason, rate`, b.cfg.Lease.String()).
		Scan(&op.id, &op.operator, &op.key, &action, &op.reason, &op.rate)
	if errors.Is(err, pgx.ErrNoRows) {
		return claimed{}, false, nil
	}
	if err != nil {
		return claimed{}, false, fmt.Errorf("claim a bulk operation: %w", err)
	}
	op.action = Action(action)
	return op, true, nil
}

type bulkItem struct {
	seq      int
	customer uuid.UUID
}

// execute acts on the operation's pending targets in order, at its rate,
// recording each outcome (and renewing the lease) as it goes, and marks it
// done when none is left.
func (b *Bulks) execute(ctx context.Context, op claimed) error {
	log := b.cfg.Logger.With("bulk_id", op.id, "action", op.action)
	log.InfoContext(ctx, "bulk operation running", "rate", op.rate)
	limiter := rate.NewLimiter(rate.Limit(op.rate), 1)
	for {
		rows, err := b.cfg.Pool.Query(ctx, `SELECT seq, customer_id FROM operator_bulk_items
			WHERE bulk_id = $1 AND status = 'pending' ORDER BY seq LIMIT 100`, op.id)
		if err != nil {
			return fmt.Errorf("bulk %s: pending targets: %w", op.id, err)
		}
		items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (bulkItem, error) {
			var it bulkItem
			return it, r.Scan(&it.seq, &it.customer)
		})
		if err != nil {
			return fmt.Errorf("bulk %s: pending targets: %w", op.id, err)
		}
		if len(items) == 0 {
			break
		}
		for _, it := range items {
			if err := limiter.Wait(ctx); err != nil {
				return err
			}
			if err := b.act(ctx, op, it); err != nil {
				return err
			}
		}
	}
	_, err := b.cfg.Pool.Exec(ctx, `UPDATE operator_bulk SET status = 'done', finished_at = now(), lease_until = '-infinity'
		WHERE id = $1`, op.id)
	if err != nil {
		return fmt.Errorf("bulk %s: finish: %w", op.id, err)
	}
	log.InfoContext(ctx, "bulk operation done")
	return nil
}

// act runs the operation's command on one target and records the
// outcome. It returns an error only when the outcome is unknown (the store
// failed): the target stays pending.
func (b *Bulks) act(ctx context.Context, op claimed, it bulkItem) error {
	scope := "bulk:" + op.id.String()
	meta := commands.Meta{Actor: op.operator, CorrelationID: op.id.String(), CausationID: scope, RequestID: scope,
		IdempotencyKey: op.key}
	decide := func(c *domain.Customer) error {
		switch op.action {
		case ActionRetry:
			return c.RetryStep(op.operator, op.reason)
		case ActionSkip:
			return c.SkipStep(op.operator, op.reason)
		default:
			return c.Cancel(op.operator, op.reason)
		}
	}
	record := eventstore.WithIdempotency(eventstore.IdempotencyRecord{Scope: scope, Key: it.customer.String(),
		Fingerprint: string(op.action), StatusCode: 202, TTL: 30 * 24 * time.Hour})
	res, err := b.cfg.Commands.Execute(ctx, it.customer, nil, meta, decide, record)
	status, msg, position := "done", "", &res.Position
	if err != nil {
		position = nil
		// Acted on before an executor stopped, the customer has moved
		// on (or the append found the record): its record says so.
		rec, found, lerr := b.cfg.Records.LookupIdempotency(ctx, scope, it.customer.String())
		switch {
		case lerr != nil:
			return fmt.Errorf("bulk %s: customer %s: %w", op.id, it.customer, lerr)
		case found:
			if n := len(rec.Result.Positions); n > 0 {
				position = &rec.Result.Positions[n-1]
			}
		case refused(err):
			status, msg = "failed", err.Error()
		default:
			return fmt.Errorf("bulk %s: customer %s: %w", op.id, it.customer, err)
		}
	}
	_, err = b.cfg.Pool.Exec(ctx, `WITH item AS (
			UPDATE operator_bulk_items SET status = $3, error = $4, position = $5, done_at = now()
			WHERE bulk_id = $1 AND seq = $2)
		UPDATE operator_bulk SET lease_until = now() + $6::interval WHERE id = $1`,
		op.id, it.seq, status, msg, position, b.cfg.Lease.String())
	if err != nil {
		return fmt.Errorf("bulk %s: record customer %s: %w", op.id, it.customer, err)
	}
	return nil
}

// refused reports whether err is the customer's answer to the command
// (it is not in a state the action applies to, or does not exist), not a
// failure of the store.
func refused(err error) bool {
	var ce *domain.CommandError
	var ve *domain.ValidationError
	return errors.As(err, &ce) || errors.As(err, &ve) || errors.Is(err, commands.ErrCustomerNotFound)
}
