package projections_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/projections"
	"github.com/onboard/onboard/projections/projectiontest"
)

// pausingSource is the event store, whose at-th ReadAll waits for proceed
// after closing reached.
type pausingSource struct {
	projections.Source
	at      int32
	calls   atomic.Int32
	reached chan struct{}
	proceed chan struct{}
}

func (s *pausingSource) ReadAll(ctx context.Context, after eventstore.Cursor, limit int) ([]eventstore.Envelope, error) {
	if s.calls.Add(1) == s.at {
		close(s.reached)
		select {
		case <-s.proceed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Source.ReadAll(ctx, after, limit)
}

// TestFailedRebuildCleansUp makes a rebuild fail mid-way for real and
// checks the catalog: neither the half-built tables nor their row in
// projection_versions may stay behind, and the active version keeps
// serving.
//
// The test holds a lock on the new table, taken after the bulk load's
// first batches, until the load waits for it: so the failure lands in the
// middle of the load.
func TestFailedRebuildCleansUp(t *testing.T) {
	for _, tt := range []struct {
		name string
		// fail makes the rebuild fail while its bulk load waits for the
		// lock on table; lockConn holds that lock.
		fail func(t *testing.T, lockConn *pgx.Conn, cancel context.CancelFunc)
	}{
		{"the connection is lost", func(t *testing.T, lockConn *pgx.Conn, _ context.CancelFunc) {
			// Every connection but the test's: the pool's idle ones die
			// too, as when the server restarts or the network drops.
			if _, err := lockConn.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
				t.Fatal(err)
			}
		}},
		{"the context is cancelled", func(_ *testing.T, _ *pgx.Conn, cancel context.CancelFunc) { cancel() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			ctx := context.Background()
			stop := e.run(t)
			if _, err := projectiontest.Seed(ctx, e.store, projectiontest.Config{Customers: 100, Seed: 9}); err != nil {
				t.Fatal(err)
			}
			e.catchUp(t)
			stop()
			src := &pausingSource{Source: e.store, at: 3, reached: make(chan struct{}), proceed: make(chan struct{})}
			p, err := projections.New(projections.Config{Pool: e.pool, Source: src, RebuildBatchSize: 20})
			if err != nil {
				t.Fatal(err)
			}
			lockConn, err := pgx.Connect(ctx, e.pool.Config().ConnString())
			if err != nil {
				t.Fatal(err)
			}
			defer lockConn.Close(ctx)

			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := p.Rebuild(rctx, projections.Customers)
				done <- err
			}()

			// Once the bulk load has read two batches, lock the new table
			// and wait until the load's next batch waits for the lock.
			select {
			case <-src.reached:
			case err := <-done:
				t.Fatalf("the rebuild ended (%v) before its third read", err)
			}
			tx, err := lockConn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `LOCK TABLE rm_customers_v2 IN ACCESS EXCLUSIVE MODE`); err != nil {
				t.Fatal(err)
			}
			close(src.proceed)
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				var waiting bool
				err := lockConn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity
					WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid())`).Scan(&waiting)
				if err != nil {
					t.Fatal(err)
				}
				if waiting {
					break
				}
				select {
				case err := <-done:
					t.Fatalf("the rebuild ended (%v) before it waited for the lock", err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatal("the rebuild never waited for the lock")
				}
			}
			tt.fail(t, lockConn, cancel)
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("the rebuild succeeded")
				}
				t.Logf("the rebuild failed: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatal("the rebuild did not return")
			}

			var tables []string
			rows, err := lockConn.Query(ctx, `SELECT relname FROM pg_class WHERE relname LIKE 'rm\_%\_v2%' ORDER BY relname`)
			if err != nil {
				t.Fatal(err)
			}
			tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			if len(tables) > 0 {
				t.Errorf("the failed rebuild left %v", tables)
			}
			var versions []int
			rows, err = lockConn.Query(ctx, `SELECT version FROM projection_versions WHERE name = $1 ORDER BY version`, projections.Customers)
			if err != nil {
				t.Fatal(err)
			}
			versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
			if err != nil {
				t.Fatal(err)
			}
			if len(versions) != 1 || versions[0] != 1 {
				t.Errorf("projection_versions of %s after the failed rebuild: %v, want [1]", projections.Customers, versions)
			}
			// The active version still serves, all of it.
			var n int
			if err := lockConn.QueryRow(ctx, `SELECT count(*) FROM customer_summary`).Scan(&n); err != nil || n != 100 {
				t.Errorf("reading after the failed rebuild: %d customers, %v; want 100", n, err)
			}
		})
	}
}
