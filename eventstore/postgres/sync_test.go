package postgres

import (
	"context"
	"errors"
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
	dbURL := pgtest.NewMigratedDatabase(t)
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

// TestReadAllDurableReturnsDurableEvents reads deferred appends with
// ReadAllDurable through a session whose commits never wait for the
// flush: they come back as ReadAll gives them, and by then the WAL is
// flushed past everything written before the read.
func TestReadAllDurableReturnsDurableEvents(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	start, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream := "customer-durable-" + uuid.NewString()
	if _, err := s.Append(ctx, stream, eventstore.NoStream, []eventstore.NewEvent{newTestEvent(), newTestEvent()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, stream, 2, []eventstore.NewEvent{newTestEvent()}, eventstore.Deferred()); err != nil {
		t.Fatal(err)
	}
	var written string
	if err := s.pool.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&written); err != nil {
		t.Fatal(err)
	}
	plain, err := s.ReadAll(ctx, start, 100)
	if err != nil {
		t.Fatal(err)
	}
	durable, err := s.ReadAllDurable(ctx, start, 100)
	if err != nil {
		t.Fatal(err)
	}
	var flushed bool
	if err := s.pool.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn`, written).Scan(&flushed); err != nil {
		t.Fatal(err)
	}
	if !flushed {
		t.Errorf("after ReadAllDurable the WAL is not flushed past the deferred append (%s)", written)
	}
	if len(durable) != len(plain) || len(durable) < 3 {
		t.Fatalf("ReadAllDurable read %d events, ReadAll %d; want the same, at least the 3 appended", len(durable), len(plain))
	}
	for i := range durable {
		if durable[i].ID != plain[i].ID || durable[i].Cursor() != plain[i].Cursor() || string(durable[i].Data) != string(plain[i].Data) {
			t.Errorf("event %d: ReadAllDurable gives %s at %s, ReadAll %s at %s", i, durable[i].ID, durable[i].Cursor(), plain[i].ID, plain[i].Cursor())
		}
	}
	if _, err := s.ReadAllDurable(ctx, start, 0); !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Errorf("ReadAllDurable with limit 0: %v, want ErrInvalidEvent", err)
	}
	last := durable[len(durable)-1].Cursor()
	if none, err := s.ReadAllDurable(ctx, last, 100); err != nil || len(none) != 0 {
		t.Errorf("ReadAllDurable after the last event: %d events, %v; want none", len(none), err)
	}
}
