package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Idle returns the customers not at the end of their journey whose last
// event was recorded before before, longest idle first, at most limit:
// the candidates of the stuck detector.
func (p *Projections) Idle(ctx context.Context, before time.Time, limit int) ([]Customer, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+customerColumns+` FROM customer_summary
		WHERE state NOT IN ('active', 'rejected', 'cancelled') AND updated_at < $1
		ORDER BY updated_at, id LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("idle customers: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Customer, error) { return scanCustomer(r) })
	if err != nil {
		return nil, fmt.Errorf("idle customers: %w", err)
	}
	return out, nil
}
