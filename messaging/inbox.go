package messaging

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// inboxWriter writes the inbox rows of handlers without a transaction
// (WithoutTx) in group commits: the first writer flushes at once, and
// whatever arrives while a flush is in flight goes in the next one, in one
// statement. Under load one statement records many deliveries; alone, a
// delivery waits for nothing but its own insert.
type inboxWriter struct {
	pool *pgxpool.Pool

	mu       sync.Mutex
	pending  []inboxRow
	flushing bool
}

type inboxRow struct {
	handler string
	eventID uuid.UUID
	done    chan error
}

// inboxFlushTimeout bounds one flush; it does not depend on any one
// delivery's context, since it records many.
const inboxFlushTimeout = 30 * time.Second

// write records (handler, eventID) and returns once it is committed (or
// ctx is done, in which case it may still be committed later).
func (w *inboxWriter) write(ctx context.Context, handler string, eventID uuid.UUID) error {
	row := inboxRow{handler: handler, eventID: eventID, done: make(chan error, 1)}
	w.mu.Lock()
	w.pending = append(w.pending, row)
	lead := !w.flushing
	w.flushing = true
	w.mu.Unlock()
	if lead {
		go w.drain()
	}
	select {
	case err := <-row.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// inboxGather is how long a flush waits for more rows to join it: under
// load it records several deliveries per statement instead of one or two,
// for a few milliseconds more before each delivery is acknowledged.
const inboxGather = time.Millisecond

// drain flushes until nothing is pending.
func (w *inboxWriter) drain() {
	for {
		time.Sleep(inboxGather)
		w.mu.Lock()
		batch := w.pending
		w.pending = nil
		if len(batch) == 0 {
			w.flushing = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		err := w.flush(batch)
		for _, r := range batch {
			r.done <- err
		}
	}
}

// durableCTE makes the statement that references it (once, in a WHERE
// that Postgres evaluates before the rows: count(*) of it is a one-time
// filter) commit only once the WAL is flushed past it, whatever the
// session's synchronous_commit: it writes a WAL record of its own (a
// logical message nothing decodes), so that a commit that changes
// nothing else still waits, and waits for the local flush when the
// session would not. The flush makes durable every commit before it:
// the Deferred appends of the handlers whose deliveries the statement
// records (see WithoutTx).
const durableCTE = `durable AS (
	SELECT pg_logical_emit_message(true, 'onboard.inbox', '') AS lsn,
		CASE WHEN current_setting('synchronous_commit') = 'off' THEN set_config('synchronous_commit', 'local', true) END AS sync
)`

// inboxFlushSQL records a batch of deliveries in one durable statement.
const inboxFlushSQL = `WITH ` + durableCTE + `
INSERT INTO messaging_inbox (handler, event_id)
SELECT u.handler, u.event_id FROM unnest($1::text[], $2::uuid[]) AS u(handler, event_id)
WHERE (SELECT count(*) FROM durable) >= 0
ON CONFLICT DO NOTHING`

func (w *inboxWriter) flush(batch []inboxRow) error {
	handlers := make([]string, len(batch))
	// pgtype.UUID: pgx encodes a uuid.UUID (a driver.Valuer) through its
	// text form, planning that anew for every element.
	ids := make([]pgtype.UUID, len(batch))
	for i, r := range batch {
		handlers[i], ids[i] = r.handler, pgtype.UUID{Bytes: r.eventID, Valid: true}
	}
	ctx, cancel := context.WithTimeout(context.Background(), inboxFlushTimeout)
	defer cancel()
	_, err := w.pool.Exec(ctx, inboxFlushSQL, handlers, ids)
	if err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	return nil
}
