package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
)

// forgedMetrics counts the forged messages reported, by where.
type forgedMetrics struct {
	NopMetrics
	mu     sync.Mutex
	forged map[string]int
}

func (m *forgedMetrics) MessageForged(where string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forged[where]++
}

func (m *forgedMetrics) count(where string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.forged[where]
}

// TestForgedMessages publishes, with the relay's own NATS credentials (the
// worst case: no other role may publish events), messages the store does
// not hold: a new event id, a changed payload (attempt + 1), and a real
// event with a low position as the stream's last message. None reaches the
// handler (no provider call, no append): each is dead-lettered and
// counted; the relay ignores the low position and does not publish again.
func TestForgedMessages(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	env.stream.Route = func(e eventstore.Envelope, _ *eventstore.Envelope) string {
		if strings.HasPrefix(e.StreamID, "customer-") {
			return "billing"
		}
		return "" // the handler's effects
	}
	m := &forgedMetrics{forged: map[string]int{}}
	relay, _ := env.startRelay(RelayConfig{Conn: env.connectAs(RoleRelay), Metrics: m, CheckInterval: 100 * time.Millisecond})
	var calls atomic.Int64
	handler := func(ctx context.Context, _ pgx.Tx, e eventstore.Envelope) error {
		calls.Add(1) // the provider call
		_, err := env.store.Append(ctx, "effect-"+e.ID.String(), eventstore.NoStream, []eventstore.NewEvent{{
			ID: uuid.Must(uuid.NewV7()), Type: "test.effect_recorded", SchemaVersion: 1, Data: json.RawMessage(`{}`)}})
		return err
	}
	env.startRouter(RouterConfig{Conn: env.connectAs(RoleWorker), Metrics: m, MaxDeliver: 3, BackOff: []time.Duration{10 * time.Millisecond}},
		func(r *Router) {
			if err := r.AddHandler(ctx, "billing", handler, WithoutTx(), WithRoute("billing")); err != nil {
				t.Fatal(err)
			}
		})
	stream := "customer-" + uuid.NewString()
	for i := range 3 {
		_, err := env.store.Append(ctx, stream, eventstore.Any, []eventstore.NewEvent{{ID: uuid.Must(uuid.NewV7()),
			Type: "customer.step_requested.v1", SchemaVersion: 1, Data: json.RawMessage(`{"step":"billing","attempt":` + strconv.Itoa(i+1) + `}`)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	genuine, err := env.store.ReadStream(ctx, stream, 1)
	if err != nil {
		t.Fatal(err)
	}
	countEvents := env.count(`SELECT count(*) FROM events`)
	waitFor(t, "the genuine events handled, their effects relayed", func() (bool, error) {
		n, err := countEvents()
		return n == 6 && calls.Load() == 3 && relay.Stats().Published == 6, err
	})
	before, err := countEvents()
	if err != nil {
		t.Fatal(err)
	}
	published := relay.Stats().Published

	newID := genuine[0]
	newID.ID = uuid.Must(uuid.NewV7())
	changed := genuine[1]
	changed.Data = json.RawMessage(`{"step":"billing","attempt":3}`)
	low := genuine[2]
	low.Position, low.TransactionID = 1, 1
	forger := env.connectAs(RoleRelay)
	for _, e := range []eventstore.Envelope{newID, changed, low} {
		env.publishForged(forger, e)
	}

	waitFor(t, "the forged messages dead-lettered", func() (bool, error) {
		n, err := env.count(`SELECT count(*) FROM messaging_dead_letters WHERE handler = 'billing'`)()
		return n == 3, err
	})
	waitFor(t, "the relay's check to see the forged last message", func() (bool, error) {
		return m.count("relay") > 0 || relay.Stats().Rewinds > 0, nil
	})
	if n := calls.Load(); n != 3 {
		t.Errorf("the handler ran %d times, want 3 (the genuine events only)", n)
	}
	if after, err := countEvents(); err != nil || after != before {
		t.Errorf("events: %d before the forged messages, %d after (%v)", before, after, err)
	}
	if st := relay.Stats(); st.Rewinds != 0 || st.Published != published {
		t.Errorf("relay: %d rewinds, published %d then %d; want no rewind and nothing again", st.Rewinds, published, st.Published)
	}
	if n := m.count("billing"); n != 3 {
		t.Errorf("forged messages counted for billing: %d, want 3", n)
	}
}

// publishForged publishes e as the relay would, but with a new message id
// (JetStream would drop a re-used one as a duplicate).
func (env *testEnv) publishForged(nc *nats.Conn, e eventstore.Envelope) {
	env.t.Helper()
	cfg := env.stream
	cfg.setDefaults()
	m, err := eventMsg(cfg, e, nil)
	if err != nil {
		env.t.Fatal(err)
	}
	m.Header.Set(HeaderMsgID, uuid.NewString())
	js, err := jetstream.New(nc)
	if err != nil {
		env.t.Fatal(err)
	}
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		env.t.Fatal(err)
	}
}

// TestTrustedCursor: the relay takes a stream position only from a
// message whose headers agree with its envelope and whose envelope is the
// store's event, field for field.
func TestTrustedCursor(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	stream := "customer-" + uuid.NewString()
	for n := range 2 {
		_, err := env.store.Append(ctx, stream, eventstore.Any, []eventstore.NewEvent{{ID: uuid.Must(uuid.NewV7()),
			Type: "customer.test_happened", SchemaVersion: 1, Data: json.RawMessage(`{"writer":0,"n":` + strconv.Itoa(n) + `}`)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	events, err := env.store.ReadStream(ctx, stream, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRelay(RelayConfig{Store: env.store, Pool: env.pool, Conn: env.nc})
	if err != nil {
		t.Fatal(err)
	}
	e := events[1]
	lowPosition, otherData, newID, otherStream := e, e, e, e
	lowPosition.Position, lowPosition.TransactionID = 1, 1
	otherData.Data = json.RawMessage(`{"writer":0,"n":7}`)
	newID.ID = uuid.Must(uuid.NewV7())
	otherStream.StreamID = "customer-nobody"
	tests := []struct {
		name   string
		e      eventstore.Envelope
		header func(nats.Header)
		forged bool
	}{
		{"the stored event", e, nil, false},
		{"a low position in the envelope and the headers", lowPosition, nil, true},
		{"a changed payload", otherData, nil, true},
		{"a new id", newID, nil, true},
		{"a stream the store lacks", otherStream, nil, true},
		{"a low cursor header only", e, func(h nats.Header) { h.Set(HeaderCursor, "1/1") }, true},
		{"another message id", e, func(h nats.Header) { h.Set(HeaderMsgID, uuid.NewString()) }, true},
	}
	cfg := env.stream
	cfg.setDefaults()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := eventMsg(cfg, tt.e, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != nil {
				tt.header(m.Header)
			}
			c, err := r.trustedCursor(ctx, &jetstream.RawStreamMsg{Subject: m.Subject, Header: m.Header, Data: m.Data})
			switch {
			case tt.forged && !errors.Is(err, ErrForged):
				t.Fatalf("trusted at %v (err %v), want ErrForged", c, err)
			case !tt.forged && (err != nil || c != e.Cursor()):
				t.Fatalf("cursor %v, err %v; want %v", c, err, e.Cursor())
			}
		})
	}
}
