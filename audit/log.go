package audit

import (
	"context"
	"time"

	"github.com/onboard/onboard/eventstore"
)

// readLog pages through the global log from the start and calls fn with
// each page, until until (inclusive) or, when until is zero, until a page
// comes back empty.
//
// ReadAll only returns events below the safe horizon: while any
// transaction of the database cluster is in flight, events committed after
// it began stay hidden. An empty page therefore does not mean the end of
// the log when until says more was committed: readLog waits poll and asks
// again, for as long as ctx allows. A caller that wants "everything
// committed when I started" passes the last committed event's cursor.
// waiting, when set, is told how long readLog has waited so far, after
// each wait.
func readLog(ctx context.Context, r eventstore.AllReader, pageSize int, until eventstore.Cursor, poll time.Duration,
	waiting func(time.Duration), fn func([]eventstore.Envelope) error) error {
	var (
		after  eventstore.Cursor
		waited time.Duration
	)
	for {
		if !until.IsZero() && after.Compare(until) >= 0 {
			return nil
		}
		events, err := r.ReadAll(ctx, after, pageSize)
		if err != nil {
			return err
		}
		if !until.IsZero() {
			n := len(events)
			for n > 0 && events[n-1].Cursor().Compare(until) > 0 {
				n--
			}
			if n < len(events) {
				if n > 0 {
					if err := fn(events[:n]); err != nil {
						return err
					}
				}
				return nil
			}
		}
		if len(events) == 0 {
			if until.IsZero() {
				return nil
			}
			t := time.NewTimer(poll)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			waited += poll
			if waiting != nil {
				waiting(waited)
			}
			continue
		}
		waited = 0
		if err := fn(events); err != nil {
			return err
		}
		after = events[len(events)-1].Cursor()
	}
}
