package messaging

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestInboxWriterGroupCommits: concurrent writers all get their rows
// committed, repeated rows are written once, and a failed flush reaches
// every writer of its batch.
func TestInboxWriterGroupCommits(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
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

// TestPruneInboxInChunks: PruneInbox deletes, a chunk at a time, the rows
// older than the retention and keeps the younger ones.
func TestPruneInboxInChunks(t *testing.T) {
	env := newTestEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := env.pool.Exec(ctx, `INSERT INTO messaging_inbox (handler, event_id, processed_at)
		SELECT 'old', gen_random_uuid(), now() - interval '8 days' FROM generate_series(1, 25000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := env.pool.Exec(ctx, `INSERT INTO messaging_inbox (handler, event_id)
		SELECT 'young', gen_random_uuid() FROM generate_series(1, 10)`); err != nil {
		t.Fatal(err)
	}
	var chunks []int64
	for {
		n, err := PruneInbox(ctx, env.pool, 7*24*time.Hour, 10000)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, n)
		if n < 10000 {
			break
		}
	}
	if !slices.Equal(chunks, []int64{10000, 10000, 5000}) {
		t.Errorf("chunks deleted %v, want [10000 10000 5000]", chunks)
	}
	if n, err := env.count(`SELECT count(*) FROM messaging_inbox WHERE handler = 'old'`)(); err != nil || n != 0 {
		t.Errorf("old rows left: %d (%v), want 0", n, err)
	}
	if n, err := env.count(`SELECT count(*) FROM messaging_inbox WHERE handler = 'young'`)(); err != nil || n != 10 {
		t.Errorf("young rows left: %d (%v), want 10", n, err)
	}
}

// TestAddHandlerWaitsForNATS: a router that starts while the NATS server
// is down (a restart) waits for it instead of failing.
func TestAddHandlerWaitsForNATS(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	r, err := NewRouter(ctx, RouterConfig{Pool: env.pool, Events: env.store, Conn: env.nc, Stream: env.stream, Logger: env.log})
	if err != nil {
		t.Fatal(err)
	}
	env.server.Shutdown()
	back := make(chan error, 1)
	go func() {
		// Longer than JetStream's 5 s request timeout.
		time.Sleep(7 * time.Second)
		back <- env.server.Start()
	}()
	err = r.AddHandler(ctx, "patient", env.effectsHandler("patient"))
	if serr := <-back; serr != nil {
		t.Fatal(serr)
	}
	if err != nil {
		t.Fatalf("AddHandler while NATS restarted: %v", err)
	}
	// A refusal is not waited out.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.AddHandler(cctx, "bad name!", env.effectsHandler("patient")); err == nil {
		t.Error("AddHandler with an invalid name succeeded")
	}
}
