package postgres

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/onboard/onboard/eventstore"
)

// TestDeleteExpiredIdempotency: it removes the records past their expiry,
// at most limit at a time, reports how many, and keeps the live ones.
func TestDeleteExpiredIdempotency(t *testing.T) {
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

	var deleted []int64
	for _, limit := range []int{1, 10, 10} {
		n, err := s.DeleteExpiredIdempotency(ctx, limit)
		if err != nil {
			t.Fatal(err)
		}
		deleted = append(deleted, n)
	}
	if !slices.Equal(deleted, []int64{1, 1, 0}) {
		t.Errorf("deleted %v with limits 1, 10, 10; want [1 1 0]", deleted)
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
	if len(left) != 1 || left[0] != "new" {
		t.Errorf("left %v; want [new]", left)
	}
}
