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
	_, err := w.pool.Exec(ctx, `INSERT INTO messaging_inbox (handler, event_id)
		SELECT * FROM unnest($1::text[], $2::uuid[]) ON CONFLICT DO NOTHING`, handlers, ids)
	if err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	return nil
}
