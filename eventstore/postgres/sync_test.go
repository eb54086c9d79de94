package postgres

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/internal/pgtest"
)

// TestDeferredStatementsCommitWithoutWaiting runs each statement shape in
// a transaction of its own and asks the transaction's synchronous_commit
// afterwards: off after a deferred shape (its commit does not wait for the
// WAL flush), the session's after the others.
func TestDeferredStatementsCommitWithoutWaiting(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	migrate(t, dbURL)
	pool := pgtest.NewPool(t, dbURL, 2)
	s, err := New(pool, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for _, deferred := range []bool{false, true} {
		for _, idem := range []bool{false, true} {
			opts := eventstore.AppendOptions{Deferred: deferred, StreamType: "customer"}
			if idem {
				opts.Idempotency = &eventstore.IdempotencyRecord{Scope: "test", Key: t.Name() + uuid.NewString(), Fingerprint: "f"}
			}
			stream := "customer-shape-" + uuid.NewString()
			events, err := eventstore.PrepareAppend(stream, eventstore.NoStream, []eventstore.NewEvent{newTestEvent(), newTestEvent()}, opts)
			if err != nil {
				t.Fatal(err)
			}
			query, ok := statementFor(len(events), opts)
			if !ok {
				t.Fatalf("no statement for %+v", opts)
			}
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.appendStatement(ctx, tx, stream, query, appendStatementArgs(stream, eventstore.NoStream, events, opts)); err != nil {
				_ = tx.Rollback(ctx)
				t.Fatalf("deferred %v, idempotency %v: %v", deferred, idem, err)
			}
			var setting string
			if err := tx.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&setting); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]string{false: "on", true: "off"}[deferred]; setting != want {
				t.Errorf("deferred %v, idempotency %v: synchronous_commit %s after the statement, want %s", deferred, idem, setting, want)
			}
		}
	}
}

// TestSyncMakesDeferredAppendsDurable appends deferred events through a
// session whose commits never wait for the flush (the test stores'), and
// checks that once Sync returns the WAL is flushed past everything
// written before it.
func TestSyncMakesDeferredAppendsDurable(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	stream := "customer-sync-" + uuid.NewString()
	if _, err := s.Append(ctx, stream, eventstore.NoStream, []eventstore.NewEvent{newTestEvent()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, stream, 1, []eventstore.NewEvent{newTestEvent(), newTestEvent()}, eventstore.Deferred()); err != nil {
		t.Fatal(err)
	}
	var written string
	if err := s.pool.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&written); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var durable bool
	var flushed string
	if err := s.pool.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn, pg_current_wal_flush_lsn()::text`, written).Scan(&durable, &flushed); err != nil {
		t.Fatal(err)
	}
	if !durable {
		t.Errorf("after Sync the WAL is flushed to %s, before the deferred append's %s", flushed, written)
	}
}
