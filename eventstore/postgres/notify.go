package postgres

import "context"

// Subscribers are woken by a NOTIFY sent after the append commits, from one
// goroutine per Store, not by a NOTIFY inside the append's transaction:
// Postgres serialises the commits of all notifying transactions behind one
// database-wide lock held through the commit's WAL flush, which would cap
// the append rate at one commit per flush. Coalescing wake-ups here costs
// at most one extra tiny transaction per round trip, however many appends
// commit meanwhile. A wake-up lost to a crash between commit and notify is
// covered by the subscribers' polling.

// wakeSubscribers asks the notifier to send a notification soon. It never
// blocks: a pending request already covers this one.
func (s *Store) wakeSubscribers() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Store) notifier(ctx context.Context) {
	defer close(s.closed)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		// synchronous_commit off: the notification is delivered at commit
		// either way, and there is nothing to make durable.
		_, _ = s.pool.Exec(ctx, "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')", s.cfg.Channel)
	}
}
