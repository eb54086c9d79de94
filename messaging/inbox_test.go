package messaging

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestInboxWriterGroupCommits: concurrent writers all get their rows
// committed, repeated rows are written once, and a failed flush reaches
// every writer of its batch.
func TestInboxWriterGroupCommits(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	if err := EnsureSchema(ctx, env.pool); err != nil {
		t.Fatal(err)
	}
	w := &inboxWriter{pool: env.pool}
	ids := make([]uuid.UUID, 200)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
	}
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			if err := w.write(ctx, "group", id); err != nil {
				t.Error(err)
			}
			if i%10 == 0 { // a redelivery's row again
				if err := w.write(ctx, "group", id); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n, err := env.count(`SELECT count(*) FROM messaging_inbox WHERE handler = 'group' AND event_id = ANY($1)`, ids)(); err != nil || n != len(ids) {
		t.Errorf("%d rows (%v), want %d", n, err, len(ids))
	}

	closed, err := pgxpool.New(ctx, env.url)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	bad := &inboxWriter{pool: closed}
	errs := make(chan error, 5)
	for range 5 {
		go func() { errs <- bad.write(ctx, "group", uuid.Must(uuid.NewV7())) }()
	}
	for range 5 {
		if err := <-errs; err == nil {
			t.Error("a write through a closed pool succeeded")
		}
	}
}
