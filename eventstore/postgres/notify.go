package postgres

import "context"

// Subscribers are woken by a NOTIFY sent after the append commits, from one
// goroutine per Store, not by a NOTIFY inside the append's transaction:
// Postgres serialises the commits of all notifying transactions behind one
// database-wide lock held through the commit's WAL flush, which would cap
// the append rate at one commit per flush. The notifier sends at most one
// notification per Config.NotifyInterval: the first append after a quiet
// spell wakes subscribers at once, and under load one notification covers
// many appends (subscribers that are behind read full batches without
// waiting anyway). A wake-up lost to a crash between commit and notify is
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
		// either way, and there is nothing to make durable. A failure is
		// left to the subscribers' polling.
		_, _ = s.pool.Exec(ctx, "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')", s.cfg.Channel)
		if err := sleep(ctx, s.cfg.NotifyInterval); err != nil {
			return
		}
	}
}
