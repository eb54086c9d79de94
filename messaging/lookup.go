package messaging

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// InboxRow records that a handler handled an event.
type InboxRow struct {
	Handler     string
	EventID     uuid.UUID
	ProcessedAt time.Time
}

// InboxOf returns the inbox rows of the given handlers for the given
// events (what explain shows of a customer's deliveries), in the order
// they were processed.
func InboxOf(ctx context.Context, pool *pgxpool.Pool, handlers []string, eventIDs []uuid.UUID) ([]InboxRow, error) {
	rows, err := pool.Query(ctx, `SELECT i.handler, i.event_id, i.processed_at FROM messaging_inbox i
		JOIN unnest($1::text[]) AS h(handler) ON h.handler = i.handler
		WHERE i.event_id = ANY($2) ORDER BY i.processed_at`, handlers, eventIDs)
	if noTable(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inbox rows: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[InboxRow])
	if err != nil {
		return nil, fmt.Errorf("inbox rows: %w", err)
	}
	return out, nil
}

// OfStream returns the dead letters of one stream's events, in id order.
func (d *DeadLetters) OfStream(ctx context.Context, streamID string) ([]DeadLetter, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM messaging_dead_letters
		WHERE stream_id = $1 ORDER BY id`, streamID)
	if noTable(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dead letters of %s: %w", streamID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) { return scanDeadLetter(r) })
	if err != nil {
		return nil, fmt.Errorf("dead letters of %s: %w", streamID, err)
	}
	return out, nil
}
