package messaging

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/onboard/onboard/internal/pgtest"
)

// TestDeadLettersNilConn: tools that only read open the dead letters
// without NATS; they list and get, and a redrive fails without touching
// the row instead of panicking.
func TestDeadLettersNilConn(t *testing.T) {
	ctx := context.Background()
	// A migrated database; a read-only store on one that is not creates
	// no table (see TestDeadLettersReadOnlyWritesNothing).
	pool := pgtest.NewPool(t, pgtest.NewMigratedDatabase(t), 2)
	dl, err := NewDeadLetters(ctx, pool, nil, StreamConfig{})
	if err != nil {
		t.Fatalf("NewDeadLetters(nil conn) = %v", err)
	}
	var id int64
	err = pool.QueryRow(ctx, `INSERT INTO messaging_dead_letters (handler, event_id, event_type, stream_id,
		subject, error, deliveries, payload, headers) VALUES ('billing', $1, 'customer.test_happened',
		'customer-1', 'onboarding.events.customer', 'provider said no', 1, '{}', '{}') RETURNING id`,
		uuid.New()).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dl.List(ctx, DeadLetterFilter{})
	if err != nil || len(got) != 1 || got[0].ID != id {
		t.Fatalf("List = %+v, %v; want dead letter %d", got, err, id)
	}

	tests := []struct {
		name string
		id   int64
	}{
		{"existing", id},
		{"unknown", id + 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := dl.Redrive(ctx, tt.id)
			if !errors.Is(err, errNoConn) {
				t.Fatalf("Redrive(%d) = %v, want errNoConn", tt.id, err)
			}
		})
	}
	d, err := dl.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != DeadLetterDead || d.RedriveCount != 0 {
		t.Errorf("after a failed redrive: status %s, redrive count %d; want dead, 0", d.Status, d.RedriveCount)
	}
}
