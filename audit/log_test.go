package audit

import (
	"context"
	"testing"
	"time"

	"github.com/onboard/onboard/eventstore"
)

// horizonReader serves a log whose safe horizon lags: its first reads after
// each page find nothing, as while another transaction is in flight.
type horizonReader struct {
	events []eventstore.Envelope
	hidden int // empty answers still to give before the next page
	lag    int
}

func (h *horizonReader) ReadAll(_ context.Context, after eventstore.Cursor, limit int) ([]eventstore.Envelope, error) {
	if h.hidden > 0 {
		h.hidden--
		return nil, nil
	}
	h.hidden = h.lag
	var out []eventstore.Envelope
	for _, e := range h.events {
		if e.Cursor().Compare(after) > 0 && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (h *horizonReader) Head(context.Context) (eventstore.Cursor, error) {
	return eventstore.Cursor{}, nil
}

func TestReadLogWaitsForTheHorizon(t *testing.T) {
	var events []eventstore.Envelope
	for i := range 10 {
		events = append(events, eventstore.Envelope{TransactionID: uint64(100 + i), Position: int64(i + 1)})
	}
	tests := []struct {
		name  string
		until eventstore.Cursor
		want  int
	}{
		{"up to the last event", events[9].Cursor(), 10},
		{"up to an event in the middle", events[4].Cursor(), 5},
		{"without a target, the first empty page ends it", eventstore.Cursor{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &horizonReader{events: events, hidden: 2, lag: 1}
			var got int
			var waits []time.Duration
			err := readLog(context.Background(), r, 3, tt.until, time.Millisecond,
				func(d time.Duration) { waits = append(waits, d) },
				func(page []eventstore.Envelope) error { got += len(page); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("read %d events, want %d", got, tt.want)
			}
			if tt.want > 0 && (len(waits) < 2 || waits[0] != time.Millisecond || waits[1] != 2*time.Millisecond) {
				t.Fatalf("waits %v: want the time waited so far after each wait", waits)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := &horizonReader{events: events, hidden: 1 << 30}
	if err := readLog(ctx, r, 3, events[9].Cursor(), time.Millisecond, nil, func([]eventstore.Envelope) error { return nil }); err == nil {
		t.Fatal("a cancelled wait must return the context's error")
	}
}
