package messaging

import (
	"context"
	"fmt"
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
