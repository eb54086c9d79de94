package messaging

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/eventstore"
)

// The statements on messaging_relay_cursor, one row per relay name: the
// cursor up to which JetStream acknowledged every event, and the creation
// time (Unix ns) of the stream those events went to.

// Cursor returns the relay's stored cursor: every event up to it has been
// acknowledged by JetStream.
func (r *Relay) Cursor(ctx context.Context) (eventstore.Cursor, error) {
	var tx, pos int64
	err := r.cfg.Pool.QueryRow(ctx,
		`SELECT transaction_id, position FROM messaging_relay_cursor WHERE relay = $1`, r.cfg.Name).Scan(&tx, &pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Cursor{}, fmt.Errorf("relay %s: read cursor: %w", r.cfg.Name, err)
	}
	return eventstore.Cursor{TransactionID: uint64(tx), Position: pos}, nil
}

// loadCursor returns the stored cursor and stream creation time, or the
// start of the log and 0 when the relay has none yet.
func loadCursor(ctx context.Context, conn *pgx.Conn, relay string) (eventstore.Cursor, int64, error) {
	var tx, pos, created int64
	err := conn.QueryRow(ctx, `SELECT transaction_id, position, stream_created FROM messaging_relay_cursor
		WHERE relay = $1`, relay).Scan(&tx, &pos, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, 0, nil
	}
	if err != nil {
		return eventstore.Cursor{}, 0, fmt.Errorf("load cursor: %w", err)
	}
	return eventstore.Cursor{TransactionID: uint64(tx), Position: pos}, created, nil
}

// storeCursor stores the cursor and the stream incarnation it is about. It
// never moves the cursor back, so a rewind re-publishes without forgetting
// how far the relay had come.
func storeCursor(ctx context.Context, conn *pgx.Conn, relay string, c eventstore.Cursor, streamCreated int64) error {
	if c.TransactionID > math.MaxInt64 {
		return fmt.Errorf("store cursor %s: transaction id out of range", c)
	}
	_, err := conn.Exec(ctx, `
		INSERT INTO messaging_relay_cursor (relay, transaction_id, position, stream_created) VALUES ($1, $2, $3, $4)
		ON CONFLICT (relay) DO UPDATE SET transaction_id = excluded.transaction_id,
			position = excluded.position, stream_created = excluded.stream_created, updated_at = now()
		WHERE (messaging_relay_cursor.transaction_id, messaging_relay_cursor.position)
			<= (excluded.transaction_id, excluded.position)`,
		relay, int64(c.TransactionID), c.Position, streamCreated)
	if err != nil {
		return fmt.Errorf("store cursor %s: %w", c, err)
	}
	return nil
}
