package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/projections"
)

// Action is what a bulk operation does to each customer it selects.
type Action string

// The bulk actions: the operator commands of one customer, applied to many.
const (
	ActionRetry  Action = "retry"
	ActionSkip   Action = "skip"
	ActionCancel Action = "cancel"
)

// The statuses of a bulk operation.
const (
	BulkRunning = "running"
	BulkDone    = "done"
)

// Errors of bulk operations that callers branch on.
var (
	// ErrBulkNotFound: no bulk operation with the id.
	ErrBulkNotFound = errors.New("bulk operation not found")
	// ErrKeyReused: the Idempotency-Key started another bulk operation
	// with a different request.
	ErrKeyReused = errors.New("idempotency key used for a different bulk operation")
)

// BulkRequest asks for a bulk operation.
type BulkRequest struct {
	Action Action
	Filter Filter
	Reason string
	// Operator is the actor recorded on every customer's event.
	Operator string
	// IdempotencyKey and Fingerprint (of the request's content) make a
	// repeated request return the operation the first one started.
	IdempotencyKey, Fingerprint string
	// Rate is the most commands a second; 0 or more than the configured
	// rate means the configured rate.
	Rate float64
}

// Bulk is a bulk operation and its progress.
type Bulk struct {
	ID       uuid.UUID `json:"id"`
	Action   Action    `json:"action"`
	Filter   Filter    `json:"filter"`
	Reason   string    `json:"reason"`
	Operator string    `json:"operator"`
	// Status is running until every target is done or failed.
	Status string  `json:"status"`
	Rate   float64 `json:"rate"`
	// Total is the number of customers selected; Done and Failed those
	// acted on and those whose command was refused (or that vanished).
	Total      int        `json:"total"`
	Done       int        `json:"done"`
	Failed     int        `json:"failed"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// Failures are the first failed targets, with their errors.
	Failures []BulkFailure `json:"failures"`
}

// BulkFailure is a target whose command failed.
type BulkFailure struct {
	CustomerID uuid.UUID `json:"customer_id"`
	Error      string    `json:"error"`
}

// BulkConfig configures bulk operations.
type BulkConfig struct {
	// Pool holds the operator_bulk tables (package schema).
	Pool     *pgxpool.Pool
	Commands *commands.Handler
	// Records finds a customer's idempotency record of a bulk operation:
	// the proof that its command committed before an executor stopped.
	Records eventstore.IdempotencyReader
	Reads   CustomerLister
	// Rate is the most commands a second of one operation, and the
	// default; default 20.
	Rate float64
	// MaxTargets bounds the customers of one operation; default 10000.
	MaxTargets int
	// Lease is how long an executor holds an operation without news
	// before another takes it over; default 30s.
	Lease  time.Duration
	Logger *slog.Logger
}

// Bulks starts bulk operations, reports their progress and (Run) executes
// them.
type Bulks struct {
	cfg BulkConfig
}

// NewBulks returns the bulk operations, or an error naming every missing
// setting.
func NewBulks(cfg BulkConfig) (*Bulks, error) {
	var errs []error
	if cfg.Pool == nil {
		errs = append(errs, errors.New("operator: Pool is required"))
	}
	if cfg.Commands == nil {
		errs = append(errs, errors.New("operator: Commands is required"))
	}
	if cfg.Records == nil {
		errs = append(errs, errors.New("operator: Records is required"))
	}
	if cfg.Reads == nil {
		errs = append(errs, errors.New("operator: Reads is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 20
	}
	if cfg.MaxTargets <= 0 {
		cfg.MaxTargets = 10000
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Bulks{cfg: cfg}, nil
}

// Rate is the configured rate: the most commands a second of one
// operation.
func (b *Bulks) Rate() float64 { return b.cfg.Rate }

// scope is the filter an action acts within: retry and skip act on paused
// customers only, cancel on customers not yet at the end of their journey.
func scope(action Action, f Filter) (Filter, func(projections.Customer) bool, error) {
	switch action {
	case ActionRetry, ActionSkip:
		if f.State != "" && f.State != string(domain.StatePaused) {
			return f, nil, &FieldError{"/filter/state", fmt.Sprintf("%s acts on paused customers only", action)}
		}
		f.State = string(domain.StatePaused)
		return f, func(projections.Customer) bool { return true }, nil
	case ActionCancel:
		if f.State != "" && (domain.State(f.State).Terminal() || f.State == string(domain.StateCancelling)) {
			return f, nil, &FieldError{"/filter/state", "cancel acts on customers not yet active, rejected or cancelled"}
		}
		return f, func(c projections.Customer) bool {
			return !domain.State(c.State).Terminal() && c.State != string(domain.StateCancelling)
		}, nil
	}
	return f, nil, &FieldError{"/action", fmt.Sprintf("action %q is not one of retry, skip, cancel", action)}
}

// targets returns the customers an action with filter f acts on.
func (b *Bulks) targets(ctx context.Context, action Action, f Filter) ([]projections.Customer, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	f, keep, err := scope(action, f)
	if err != nil {
		return nil, err
	}
	all, err := Select(ctx, b.cfg.Reads, f, b.cfg.MaxTargets)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, c := range all {
		if keep(c) {
			out = append(out, c)
		}
	}
	// Oldest first: the longest paused (or, not paused, signed up) wait
	// least for their turn.
	slices.SortStableFunc(out, func(a, b projections.Customer) int {
		return since(a).Compare(since(b))
	})
	return out, nil
}

func since(c projections.Customer) time.Time {
	if c.PausedAt != nil {
		return *c.PausedAt
	}
	return c.CreatedAt
}

// DryRun returns how many customers the action would act on, and up to
// sample of them.
func (b *Bulks) DryRun(ctx context.Context, action Action, f Filter, sample int) (int, []projections.Customer, error) {
	all, err := b.targets(ctx, action, f)
	if err != nil {
		return 0, nil, err
	}
	return len(all), all[:min(sample, len(all))], nil
}

// Start selects the targets and stores the operation, for Run to execute.
// A request repeated with the same operator and idempotency key returns
// the operation the first one started, and replayed true; with other
// content, an error wrapping ErrKeyReused.
func (b *Bulks) Start(ctx context.Context, req BulkRequest) (op Bulk, replayed bool, err error) {
	if req.Reason == "" {
		return Bulk{}, false, &FieldError{"/reason", "a reason is required: it is recorded on every customer's event"}
	}
	if req.IdempotencyKey == "" {
		return Bulk{}, false, errors.New("operator: a bulk operation needs an idempotency key")
	}
	if prior, found, err := b.byKey(ctx, req); found || err != nil {
		return prior, found, err
	}
	all, err := b.targets(ctx, req.Action, req.Filter)
	if err != nil {
		return Bulk{}, false, err
	}
	rate := b.cfg.Rate
	if req.Rate > 0 && req.Rate < rate {
		rate = req.Rate
	}
	id := uuid.Must(uuid.NewV7())
	filter, err := json.Marshal(req.Filter)
	if err != nil {
		return Bulk{}, false, err
	}
	ids := make([]uuid.UUID, len(all))
	for i, c := range all {
		ids[i] = c.ID
	}
	err = pgx.BeginFunc(ctx, b.cfg.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO operator_bulk (id, operator, idempotency_key, fingerprint, action, filter,
				reason, rate, total, status, finished_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $9 = 0 THEN 'done' ELSE 'running' END,
				CASE WHEN $9 = 0 THEN now() END)
			ON CONFLICT (operator, idempotency_key) DO NOTHING`,
			id, req.Operator, req.IdempotencyKey, req.Fingerprint, string(req.Action), filter, req.Reason, rate, len(ids))
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO operator_bulk_items (bulk_id, seq, customer_id)
			SELECT $1, s.seq, s.id FROM unnest($2::uuid[]) WITH ORDINALITY AS s(id, seq)`, id, ids)
		return err
	})
	if err != nil {
		return Bulk{}, false, fmt.Errorf("start bulk %s: %w", req.Action, err)
	}
	// A concurrent request with the key won: it is the operation.
	if prior, found, err := b.byKey(ctx, req); found || err != nil {
		return prior, prior.ID != id, err
	}
	return Bulk{}, false, fmt.Errorf("start bulk %s: the operation vanished", req.Action)
}

// byKey returns the operation req's key started, if any.
func (b *Bulks) byKey(ctx context.Context, req BulkRequest) (Bulk, bool, error) {
	var id uuid.UUID
	var fp string
	err := b.cfg.Pool.QueryRow(ctx, `SELECT id, fingerprint FROM operator_bulk WHERE operator = $1 AND idempotency_key = $2`,
		req.Operator, req.IdempotencyKey).Scan(&id, &fp)
	if errors.Is(err, pgx.ErrNoRows) {
		return Bulk{}, false, nil
	}
	if err != nil {
		return Bulk{}, false, fmt.Errorf("bulk by key: %w", err)
	}
	if fp != req.Fingerprint {
		return Bulk{}, false, fmt.Errorf("bulk %s: %w", id, ErrKeyReused)
	}
	op, err := b.Get(ctx, id)
	return op, err == nil, err
}

// maxFailuresShown bounds Bulk.Failures.
const maxFailuresShown = 20

// Get returns the operation and its progress, or an error wrapping
// ErrBulkNotFound.
func (b *Bulks) Get(ctx context.Context, id uuid.UUID) (Bulk, error) {
	op := Bulk{ID: id, Failures: []BulkFailure{}}
	var action string
	var filter []byte
	err := b.cfg.Pool.QueryRow(ctx, `SELECT action, filter, reason, operator, status, rate, total, created_at, finished_at,
			(SELECT count(*) FILTER (WHERE status = 'done') FROM operator_bulk_items WHERE bulk_id = $1),
			(SELECT count(*) FILTER (WHERE status = 'failed') FROM operator_bulk_items WHERE bulk_id = $1)
		FROM operator_bulk WHERE id = $1`, id).Scan(&action, &filter, &op.Reason, &op.Operator, &op.Status, &op.Rate,
		&op.Total, &op.CreatedAt, &op.FinishedAt, &op.Done, &op.Failed)
	if errors.Is(err, pgx.ErrNoRows) {
		return Bulk{}, fmt.Errorf("bulk %s: %w", id, ErrBulkNotFound)
	}
	if err != nil {
		return Bulk{}, fmt.Errorf("bulk %s: %w", id, err)
	}
	op.Action = Action(action)
	if err := json.Unmarshal(filter, &op.Filter); err != nil {
		return Bulk{}, fmt.Errorf("bulk %s: filter: %w", id, err)
	}
	if op.Failed == 0 {
		return op, nil
	}
	rows, err := b.cfg.Pool.Query(ctx, `SELECT customer_id, error FROM operator_bulk_items
		WHERE bulk_id = $1 AND status = 'failed' ORDER BY seq LIMIT $2`, id, maxFailuresShown)
	if err != nil {
		return Bulk{}, fmt.Errorf("bulk %s: failures: %w", id, err)
	}
	op.Failures, err = pgx.CollectRows(rows, pgx.RowToStructByPos[BulkFailure])
	if err != nil {
		return Bulk{}, fmt.Errorf("bulk %s: failures: %w", id, err)
	}
	return op, nil
}

// List returns the most recent operations, newest first.
func (b *Bulks) List(ctx context.Context, limit int) ([]Bulk, error) {
	rows, err := b.cfg.Pool.Query(ctx, `SELECT id FROM operator_bulk ORDER BY created_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list bulk operations: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("list bulk operations: %w", err)
	}
	out := make([]Bulk, 0, len(ids))
	for _, id := range ids {
		op, err := b.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, op)
	}
	return out, nil
}
