package postgres

import (
	"context"
	"fmt"

	"github.com/onboard/onboard/eventstore"
)

var _ eventstore.Syncer = (*Store)(nil)

// syncSQL commits a transaction that writes one WAL record (a logical
// message, which any role may emit and nothing decodes) and waits for
// its flush, which makes every commit before it durable: the WAL is
// flushed in order. A session whose synchronous_commit is off would not
// wait, so it waits for the local flush for this one transaction; a
// stricter setting (synchronous replicas) is kept.
const syncSQL = `SELECT CASE WHEN current_setting('synchronous_commit') = 'off'
	THEN set_config('synchronous_commit', 'local', true) END, pg_logical_emit_message(true, 'onboard.sync', '')`

// Sync implements eventstore.Syncer: it returns once every append
// committed before the call, Deferred ones included, is durable.
func (s *Store) Sync(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, syncSQL); err != nil {
		return fmt.Errorf("sync the event store: %w", err)
	}
	return nil
}
