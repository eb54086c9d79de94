package eventstoretest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
)

// patience bounds every wait for an asynchronous outcome. It is a liveness
// bound, not a timing assertion: it only has to be long enough never to be
// reached by a correct store on a loaded CI machine.
const patience = 2 * time.Minute

// streamPrefix returns a prefix unique to one test, so that tests sharing a
// store recognise their own streams.
func streamPrefix(t *testing.T) string {
	t.Helper()
	return "conf-" + uuid.Must(uuid.NewV7()).String() + "-"
}

func newEvent(t testing.TB, typ string, data string) eventstore.NewEvent {
	t.Helper()
	return eventstore.NewEvent{
		ID:            uuid.Must(uuid.NewV7()),
		Type:          typ,
		SchemaVersion: 1,
		Data:          json.RawMessage(data),
		Metadata: eventstore.Metadata{
			Actor:         "conformance",
			CorrelationID: "corr-" + typ,
			CausationID:   "cause-" + typ,
			RequestID:     "req-1",
		},
	}
}

func newEvents(t testing.TB, n int) []eventstore.NewEvent {
	t.Helper()
	out := make([]eventstore.NewEvent, n)
	for i := range out {
		out[i] = newEvent(t, fmt.Sprintf("conformance.event_%d", i), fmt.Sprintf(`{"n": %d}`, i))
	}
	return out
}

func mustAppend(t testing.TB, s eventstore.Appender, stream string, expected eventstore.ExpectedVersion, events []eventstore.NewEvent, opts ...eventstore.AppendOption) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), stream, expected, events, opts...)
	if err != nil {
		t.Fatalf("append to %s at %s: %v", stream, expected, err)
	}
	return res
}

// eventually polls cond until it holds or patience runs out.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// collector runs a subscription and records what it delivers.
type collector struct {
	mu sync.Mutex
	// all is the cursor of every delivered event, ours or not, to check the
	// global order.
	all []eventstore.Cursor
	// mine are the delivered events of streams with the prefix.
	mine   []eventstore.Envelope
	prefix string
	// onEvent, if set, runs (under mu) for each of our events.
	onEvent func(e eventstore.Envelope)
	done    chan error
	cancel  context.CancelFunc
}

func subscribe(t *testing.T, s eventstore.Store, after eventstore.Cursor, prefix string, onEvent func(eventstore.Envelope)) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{prefix: prefix, onEvent: onEvent, done: make(chan error, 1), cancel: cancel}
	go func() {
		c.done <- s.Subscribe(ctx, after, func(_ context.Context, e eventstore.Envelope) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.all = append(c.all, e.Cursor())
			if strings.HasPrefix(e.StreamID, c.prefix) {
				c.mine = append(c.mine, e)
				if c.onEvent != nil {
					c.onEvent(e)
				}
			}
			return nil
		})
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop ends the subscription; it must end with the context's error.
func (c *collector) stop(t *testing.T) {
	t.Helper()
	if c.cancel == nil {
		return
	}
	c.cancel()
	c.cancel = nil
	select {
	case err := <-c.done:
		if err != context.Canceled {
			t.Errorf("Subscribe returned %v after cancel, want context.Canceled", err)
		}
	case <-time.After(patience):
		t.Errorf("Subscribe did not return after cancel")
	}
}

func (c *collector) waitMine(t *testing.T, n int) []eventstore.Envelope {
	t.Helper()
	eventually(t, fmt.Sprintf("%d delivered events", n), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.mine) >= n
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checkOrder(t)
	return append([]eventstore.Envelope(nil), c.mine...)
}

// checkOrder checks that delivery followed the global order, each event
// once. Callers hold mu.
func (c *collector) checkOrder(t *testing.T) {
	t.Helper()
	for i := 1; i < len(c.all); i++ {
		if c.all[i-1].Compare(c.all[i]) >= 0 {
			t.Fatalf("delivery %d at %s after %s: not in strictly increasing cursor order", i, c.all[i], c.all[i-1])
		}
	}
}

// readAllMine reads the global log after the cursor and returns the events
// of streams with the prefix, checking the order of everything read.
func readAllMine(t testing.TB, s eventstore.AllReader, after eventstore.Cursor, prefix string) []eventstore.Envelope {
	t.Helper()
	var mine []eventstore.Envelope
	cursor := after
	for {
		batch, err := s.ReadAll(context.Background(), cursor, 500)
		if err != nil {
			t.Fatalf("ReadAll after %s: %v", cursor, err)
		}
		for _, e := range batch {
			if e.Cursor().Compare(cursor) <= 0 {
				t.Fatalf("ReadAll after %s returned %s", cursor, e.Cursor())
			}
			cursor = e.Cursor()
			if strings.HasPrefix(e.StreamID, prefix) {
				mine = append(mine, e)
			}
		}
		if len(batch) < 500 {
			return mine
		}
	}
}

func head(t testing.TB, s eventstore.AllReader) eventstore.Cursor {
	t.Helper()
	c, err := s.Head(context.Background())
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return c
}
