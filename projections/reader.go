package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/domain"
)

// ErrNotFound means the read model has no such customer.
var ErrNotFound = errors.New("projections: not found")

// Customer returns the summary of one customer, or an error wrapping
// ErrNotFound.
func (p *Projections) Customer(ctx context.Context, id uuid.UUID) (Customer, error) {
	c, err := scanCustomer(p.pool.QueryRow(ctx, `SELECT `+customerColumns+` FROM customer_summary WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Customer{}, fmt.Errorf("customer %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Customer{}, fmt.Errorf("customer %s: %w", id, err)
	}
	return c, nil
}

// MaxListLimit is the largest page ListCustomers returns.
const MaxListLimit = 200

// ListQuery selects a page of customers, newest first.
type ListQuery struct {
	// State and Step, when set, must match exactly.
	State, Step string
	// Search, when set, matches a substring of the email or the company,
	// ignoring case.
	Search string
	// CreatedBy, when set, keeps only the customers that actor signed up.
	CreatedBy string
	// After is the keyset cursor: the last id of the previous page, or
	// uuid.Nil for the first page.
	After uuid.UUID
	// Limit is clamped to 1..MaxListLimit; 0 means 50.
	Limit int
}

// CustomerPage is one page of customers.
type CustomerPage struct {
	Items []Customer
	// Next is the After of the next page, uuid.Nil on the last page.
	Next uuid.UUID
}

// ClampLimit returns limit within 1..MaxListLimit, 50 for 0.
func ClampLimit(limit int) int {
	switch {
	case limit == 0:
		return 50
	case limit < 1:
		return 1
	case limit > MaxListLimit:
		return MaxListLimit
	}
	return limit
}

// ListCustomers returns a page of customers, newest first (by id: UUIDv7
// ids sort by signup time). Paging by keyset stays fast and stable however
// deep the page and whatever is inserted meanwhile.
func (p *Projections) ListCustomers(ctx context.Context, q ListQuery) (CustomerPage, error) {
	limit := ClampLimit(q.Limit)
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.State != "" {
		where = append(where, "state = "+arg(q.State))
	}
	if q.Step != "" {
		where = append(where, "step = "+arg(q.Step))
	}
	if q.CreatedBy != "" {
		where = append(where, "created_by = "+arg(q.CreatedBy))
	}
	if q.Search != "" {
		like := "%" + escapeLike(strings.ToLower(q.Search)) + "%"
		a := arg(like)
		// Emails are stored lower-cased; both sides match the trigram
		// indexes' expressions.
		where = append(where, "(email LIKE "+a+" OR lower(company) LIKE "+a+")")
	}
	if q.After != uuid.Nil {
		where = append(where, "id < "+arg(q.After))
	}
	sql := `SELECT ` + customerColumns + ` FROM customer_summary`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY id DESC LIMIT " + arg(limit+1)
	rows, err := p.pool.Query(ctx, sql, args...)
	if err != nil {
		return CustomerPage{}, fmt.Errorf("list customers: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Customer, error) { return scanCustomer(r) })
	if err != nil {
		return CustomerPage{}, fmt.Errorf("list customers: %w", err)
	}
	page := CustomerPage{Items: items}
	if len(items) > limit {
		page.Items = items[:limit]
		page.Next = items[limit-1].ID
	}
	return page, nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// FunnelQuery selects the customers the funnel counts.
type FunnelQuery struct {
	// CreatedBy, when set, counts only the customers that actor signed up.
	CreatedBy string
	// Since starts the window of time to active: customers activated at or
	// after it.
	Since time.Time
}

// Funnel is the onboarding funnel.
type Funnel struct {
	// States counts customers per state; every state is present.
	States map[string]int64 `json:"states"`
	// Steps counts the customers still in progress (not in a terminal
	// state) per current step; every step is present.
	Steps map[string]int64 `json:"steps"`
	// ByStateAndStep counts customers per state and current step.
	ByStateAndStep []FunnelCount `json:"by_state_and_step"`
	TimeToActive   TimeToActive  `json:"time_to_active"`
}

// FunnelCount is the number of customers in one state at one step.
type FunnelCount struct {
	State string `json:"state"`
	Step  string `json:"step"`
	Count int64  `json:"count"`
}

// TimeToActive summarises how long customers activated in the window took
// from signup to active.
type TimeToActive struct {
	Since      time.Time `json:"since"`
	Count      int64     `json:"count"`
	P50Seconds float64   `json:"p50_seconds"`
	P95Seconds float64   `json:"p95_seconds"`
}

// Funnel counts customers per state and step and measures the time to
// active of the customers activated since q.Since.
func (p *Projections) Funnel(ctx context.Context, q FunnelQuery) (Funnel, error) {
	f := Funnel{States: map[string]int64{}, Steps: map[string]int64{}, ByStateAndStep: []FunnelCount{}}
	for _, s := range domain.States() {
		f.States[string(s)] = 0
	}
	for _, s := range domain.Steps() {
		f.Steps[string(s)] = 0
	}
	rows, err := p.pool.Query(ctx, `SELECT state, step, count(*) FROM customer_summary
		WHERE ($1 = '' OR created_by = $1) GROUP BY state, step ORDER BY state, step`, q.CreatedBy)
	if err != nil {
		return f, fmt.Errorf("funnel: %w", err)
	}
	counts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[FunnelCount])
	if err != nil {
		return f, fmt.Errorf("funnel: %w", err)
	}
	for _, c := range counts {
		f.ByStateAndStep = append(f.ByStateAndStep, c)
		f.States[c.State] += c.Count
		if !domain.State(c.State).Terminal() {
			f.Steps[c.Step] += c.Count
		}
	}
	var p50, p95 *float64
	err = p.pool.QueryRow(ctx, `SELECT count(*),
			percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM activated_at - created_at)),
			percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM activated_at - created_at))
		FROM customer_summary WHERE activated_at >= $1 AND ($2 = '' OR created_by = $2)`,
		q.Since, q.CreatedBy).Scan(&f.TimeToActive.Count, &p50, &p95)
	if err != nil {
		return f, fmt.Errorf("funnel: time to active: %w", err)
	}
	f.TimeToActive.Since = q.Since
	if p50 != nil && p95 != nil {
		f.TimeToActive.P50Seconds, f.TimeToActive.P95Seconds = *p50, *p95
	}
	return f, nil
}

// QueueEntry is a paused customer waiting for an operator.
type QueueEntry struct {
	ID        uuid.UUID `json:"id"`
	Email     string    `json:"email"`
	Company   string    `json:"company"`
	Step      string    `json:"step"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	Version   int64     `json:"version"`
}

// OperatorQueue returns the paused customers, longest waiting first, at most
// limit (clamped like ListCustomers).
func (p *Projections) OperatorQueue(ctx context.Context, limit int) ([]QueueEntry, error) {
	rows, err := p.pool.Query(ctx, `SELECT id, email, company, paused_step, pause_reason, paused_at, attempts, last_error, version
		FROM customer_summary WHERE state = 'paused' ORDER BY paused_at, id LIMIT $1`, ClampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("operator queue: %w", err)
	}
	q, err := pgx.CollectRows(rows, pgx.RowToStructByPos[QueueEntry])
	if err != nil {
		return nil, fmt.Errorf("operator queue: %w", err)
	}
	return q, nil
}

// ProviderCallStats returns the call counts of every step's provider, in
// journey order; steps never called count zero.
func (p *Projections) ProviderCallStats(ctx context.Context) ([]ProviderCalls, error) {
	rows, err := p.pool.Query(ctx, `SELECT step, provider, requested, succeeded, failed, permanent_failures FROM provider_stats`)
	if err != nil {
		return nil, fmt.Errorf("provider stats: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ProviderCalls])
	if err != nil {
		return nil, fmt.Errorf("provider stats: %w", err)
	}
	out := make([]ProviderCalls, 0, len(domain.Steps()))
	for _, s := range domain.Steps() {
		c := ProviderCalls{Step: string(s), Provider: ProviderOf(s)}
		for _, g := range got {
			if g.Step == string(s) {
				c = g
			}
		}
		out = append(out, c)
	}
	return out, nil
}
