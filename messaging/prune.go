package messaging

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

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
