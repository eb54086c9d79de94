package postgres

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onboard/onboard/eventstore"
)

// TestDeleteExpiredIdempotencyEvery: the periodic job removes the records
// past their expiry, reports how many, keeps the live ones, and stops
// with its context.
func TestDeleteExpiredIdempotencyEvery(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	record := func(stream, key string, ttl time.Duration) {
		t.Helper()
		_, err := s.Append(ctx, stream, eventstore.NoStream, []eventstore.NewEvent{newTestEvent()},
			eventstore.WithIdempotency(eventstore.IdempotencyRecord{Scope: "prune", Key: key, Fingerprint: "fp", StatusCode: 202, Response: []byte("{}"), TTL: ttl}))
		if err != nil {
			t.Fatal(err)
		}
	}
	record("expired-1", "old-1", time.Millisecond)
	record("expired-2", "old-2", time.Millisecond)
	record("live", "new", time.Hour)
	time.Sleep(5 * time.Millisecond)

	var deleted atomic.Int64
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- s.DeleteExpiredIdempotencyEvery(runCtx, 10*time.Millisecond, func(n int64) { deleted.Add(n) }, nil)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for deleted.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var left []string
	rows, err := s.Pool().Query(ctx, `SELECT key FROM idempotency WHERE scope = 'prune' ORDER BY key`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		_ = rows.Scan(&k)
		left = append(left, k)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if deleted.Load() != 2 || len(left) != 1 || left[0] != "new" {
		t.Errorf("reported %d deleted, left %v; want 2 and [new]", deleted.Load(), left)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stopped with %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("did not stop with its context")
	}
}
