package messaging

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaLockKey serialises EnsureSchema across processes: concurrent
// CREATE TABLE IF NOT EXISTS can still collide on the catalog's unique
// indexes.
const schemaLockKey = "onboard.messaging.schema"

// schemaDDL creates the tables messaging owns. They live beside the event
// store's tables but are not part of its migrations, so every statement is
// idempotent and runs at start.
const schemaDDL = `
CREATE TABLE IF NOT EXISTS messaging_relay_cursor (
	relay          text PRIMARY KEY,
	transaction_id bigint NOT NULL,
	position       bigint NOT NULL,
	-- stream_created identifies the stream incarnation the cursor is about
	-- (its creation time in Unix nanoseconds): a recreated stream lacks
	-- everything published before.
	stream_created bigint NOT NULL DEFAULT 0,
	updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS messaging_inbox (
	handler      text NOT NULL,
	event_id     uuid NOT NULL,
	processed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (handler, event_id)
);
CREATE INDEX IF NOT EXISTS messaging_inbox_processed_at ON messaging_inbox (processed_at);
CREATE TABLE IF NOT EXISTS messaging_dead_letters (
	id            bigserial PRIMARY KEY,
	handler       text NOT NULL,
	event_id      uuid NOT NULL,
	event_type    text NOT NULL,
	stream_id     text NOT NULL,
	subject       text NOT NULL,
	error         text NOT NULL,
	deliveries    bigint NOT NULL,
	payload       bytea NOT NULL,
	headers       jsonb NOT NULL,
	status        text NOT NULL DEFAULT 'dead' CHECK (status IN ('dead', 'redriven', 'resolved')),
	dead_count    integer NOT NULL DEFAULT 1,
	redrive_count integer NOT NULL DEFAULT 0,
	created_at    timestamptz NOT NULL DEFAULT now(),
	updated_at    timestamptz NOT NULL DEFAULT now(),
	UNIQUE (handler, event_id)
);
CREATE INDEX IF NOT EXISTS messaging_dead_letters_status ON messaging_dead_letters (status, id);
`

// EnsureSchema creates the relay cursor, inbox and dead-letter tables if
// they do not exist. The relay and the router call it at start; it is safe
// to call concurrently from several processes.
func EnsureSchema(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("ensure messaging schema: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // rollback after commit is a no-op
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, schemaLockKey); err != nil {
		return fmt.Errorf("ensure messaging schema: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, schemaDDL); err != nil {
		return fmt.Errorf("ensure messaging schema: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("ensure messaging schema: %w", err)
	}
	return nil
}

// PruneInbox deletes inbox rows older than olderThan, at most limit of
// them, and returns how many it deleted. A pruned row no longer stops a
// redelivery of its event: keep rows well beyond the longest time an event
// can be redelivered or re-published (the relay's outage plus the stream's
// duplicate window); a week is a safe default.
func PruneInbox(ctx context.Context, pool *pgxpool.Pool, olderThan time.Duration, limit int) (int64, error) {
	tag, err := pool.Exec(ctx, `DELETE FROM messaging_inbox WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM messaging_inbox WHERE processed_at < now() - $1::interval LIMIT $2))`,
		olderThan, limit)
	if err != nil {
		return 0, fmt.Errorf("prune inbox: %w", err)
	}
	return tag.RowsAffected(), nil
}

// PruneInboxEvery runs PruneInbox for rows older than retention every
// interval (and once at the start), in chunks until a chunk comes back
// short, until ctx is done; it returns nil then. A failed round is logged
// and tried again the next time.
func PruneInboxEvery(ctx context.Context, pool *pgxpool.Pool, retention, interval time.Duration, logger *slog.Logger) error {
	const chunk = 10000
	for {
		var total int64
		for {
			n, err := PruneInbox(ctx, pool, retention, chunk)
			total += n
			if err != nil {
				if ctx.Err() == nil {
					logger.Warn("messaging: pruning the inbox failed; trying again later", "err", err, "deleted", total)
				}
				break
			}
			if n < chunk {
				break
			}
		}
		if total > 0 {
			logger.Info("messaging: pruned the inbox", "deleted", total, "older_than", retention)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}
