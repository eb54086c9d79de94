package postgres

import (
	"context"
	"fmt"

	"github.com/onboard/onboard/eventstore"
)

var (
	_ eventstore.Syncer           = (*Store)(nil)
	_ eventstore.DurableAllReader = (*Store)(nil)
)

// flushSelect is the select list that makes a statement's commit a
// flush: one WAL record (a transactional logical message, which any role
// may emit and nothing decodes) and, when the session's
// synchronous_commit is off, the local flush for this one transaction; a
// stricter setting (synchronous replicas) is kept. The WAL is flushed in
// order, so the flush makes every commit before it durable.
const flushSelect = `pg_logical_emit_message(true, 'onboard.sync', '') AS lsn,
		CASE WHEN current_setting('synchronous_commit') = 'off' THEN set_config('synchronous_commit', 'local', true) END AS sync`

// syncSQL commits a transaction that is nothing but that flush.
const syncSQL = `SELECT ` + flushSelect

// Sync implements eventstore.Syncer: it returns once every append
// committed before the call, Deferred ones included, is durable.
func (s *Store) Sync(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, syncSQL); err != nil {
		return fmt.Errorf("sync the event store: %w", err)
	}
	return nil
}

// readAllDurableSQL is ReadAll's read and, when it finds events, Sync's
// WAL record in one statement: its commit, which waits for the flush,
// comes after the snapshot the rows were read in, so every event it
// returns is durable once the statement has completed. A read that finds
// nothing writes nothing and waits for nothing.
const readAllDurableSQL = `WITH batch AS (
	` + selectEvents + `
	WHERE (transaction_id, position) > ($1::xid8, $2::bigint) AND ` + safeHorizon + `
	ORDER BY transaction_id, position LIMIT $3
), durable AS (
	SELECT ` + flushSelect + `
	WHERE EXISTS (SELECT 1 FROM batch)
)
SELECT * FROM batch WHERE (SELECT count(*) FROM durable) >= 0 ORDER BY transaction_id, position`

// ReadAllDurable implements eventstore.DurableAllReader in one round trip.
func (s *Store) ReadAllDurable(ctx context.Context, after eventstore.Cursor, limit int) ([]eventstore.Envelope, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read all: limit %d: %w", limit, eventstore.ErrInvalidEvent)
	}
	rows, err := s.pool.Query(ctx, readAllDurableSQL, after.TransactionID, after.Position, limit)
	if err != nil {
		return nil, fmt.Errorf("read all after %s: %w", after, err)
	}
	events, err := collectEnvelopes(rows, min(limit, 64))
	if err == nil {
		// The commit (and its flush) ends the statement after its last
		// row: its failure shows only once the rows are closed, which
		// collectEnvelopes has done.
		err = rows.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("read all after %s: %w", after, err)
	}
	return events, nil
}
