package eventstoretest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
)

// Run runs the conformance suite against the stores that factory returns.
func Run(t *testing.T, factory Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"AppendAndReadStream", testAppendAndReadStream},
		{"ExpectedVersion", testExpectedVersion},
		{"InvalidInput", testInvalidInput},
		{"ConcurrentAppenders", testConcurrentAppenders},
		{"IdempotentReappend", testIdempotentReappend},
		{"Reservations", testReservations},
		{"IdempotencyRecords", testIdempotencyRecords},
		{"IdempotentRequestsInFlight", testIdempotentRequestsInFlight},
		{"ReadAllGlobalOrder", testReadAllGlobalOrder},
		{"Subscribe", testSubscribe},
		{"SubscribeHandlerError", testSubscribeHandlerError},
		{"CommitOrderRace", testCommitOrderRace},
		{"LongOpenTransaction", testLongOpenTransaction},
		{"VerifyDetectsTampering", testVerifyDetectsTampering},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, factory(t))
		})
	}
}

func testAppendAndReadStream(t *testing.T, h Harness) {
	ctx := context.Background()
	stream := streamPrefix(t) + "s"
	events := newEvents(t, 3)
	events[0].Data = json.RawMessage("{ \"spaced\" : [1, 2] }")
	events[1].Metadata.Trace = map[string]string{"traceparent": "00-abc-def-01", "tracestate": "x=1"}
	events[2].SchemaVersion = 2
	res, err := h.Store.Append(ctx, stream, eventstore.NoStream, events, eventstore.WithStreamType("conformance"))
	if err != nil {
		t.Fatal(err)
	}
	if res.StreamID != stream || res.FirstVersion != 1 || res.LastVersion != 3 || len(res.Positions) != 3 || res.Duplicate {
		t.Fatalf("result = %+v, want versions 1..3 with 3 positions", res)
	}
	got, err := h.Store.ReadStream(ctx, stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("read %d events, want 3", len(got))
	}
	for i, e := range got {
		want := events[i]
		if e.ID != want.ID || e.Type != want.Type || e.SchemaVersion != want.SchemaVersion ||
			e.StreamID != stream || e.StreamType != "conformance" || e.Version != int64(i+1) ||
			e.Position != res.Positions[i] || e.TransactionID != res.TransactionID || e.RecordedAt.IsZero() {
			t.Errorf("event %d = %+v, want %+v at version %d", i, e, want, i+1)
		}
		if e.Metadata.Actor != want.Metadata.Actor || e.Metadata.CorrelationID != want.Metadata.CorrelationID ||
			e.Metadata.CausationID != want.Metadata.CausationID || e.Metadata.RequestID != want.Metadata.RequestID ||
			len(e.Metadata.Trace) != len(want.Metadata.Trace) || e.Metadata.Trace["tracestate"] != want.Metadata.Trace["tracestate"] {
			t.Errorf("event %d metadata = %+v, want %+v", i, e.Metadata, want.Metadata)
		}
		if i > 0 && (e.Position <= got[i-1].Position || !bytes.Equal(e.PrevHash, got[i-1].Hash)) {
			t.Errorf("event %d: position %d after %d, or not chained to its predecessor", i, e.Position, got[i-1].Position)
		}
		if !bytes.Equal(e.Hash, eventstore.Hash(e.PrevHash, e)) {
			t.Errorf("event %d: stored hash is not eventstore.Hash of its content", i)
		}
	}
	if string(got[0].Data) != `{"spaced":[1,2]}` {
		t.Errorf("data = %s, want it compacted", got[0].Data)
	}
	if err := h.Store.Verify(ctx, stream); err != nil {
		t.Errorf("Verify of an intact stream: %v", err)
	}

	tail, err := h.Store.ReadStream(ctx, stream, 2)
	if err != nil || len(tail) != 2 || tail[0].Version != 2 {
		t.Errorf("ReadStream from 2 = %d events, %v; want versions 2..3", len(tail), err)
	}
	past, err := h.Store.ReadStream(ctx, stream, 4)
	if err != nil || len(past) != 0 {
		t.Errorf("ReadStream past the end = %d events, %v; want none and no error", len(past), err)
	}
	missing := streamPrefix(t) + "missing"
	if _, err := h.Store.ReadStream(ctx, missing, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("ReadStream of a missing stream: err = %v, want ErrStreamNotFound", err)
	}
	if err := h.Store.Verify(ctx, missing); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("Verify of a missing stream: err = %v, want ErrStreamNotFound", err)
	}

	// The default stream type is the id's prefix.
	res2 := mustAppend(t, h.Store, "conftype-"+uuid.Must(uuid.NewV7()).String(), eventstore.NoStream, newEvents(t, 1))
	if got, err := h.Store.ReadStream(ctx, res2.StreamID, 1); err != nil || got[0].StreamType != "conftype" {
		t.Errorf("default stream type: %v, %v; want conftype", got, err)
	}
}

func testExpectedVersion(t *testing.T, h Harness) {
	ctx := context.Background()
	stream := streamPrefix(t) + "s"
	mustAppend(t, h.Store, stream, eventstore.NoStream, newEvents(t, 2))
	tests := []struct {
		name      string
		expected  eventstore.ExpectedVersion
		wantErr   bool
		wantFirst int64
	}{
		{"no stream on existing stream", eventstore.NoStream, true, 0},
		{"stale version", 1, true, 0},
		{"future version", 5, true, 0},
		{"exact version", 2, false, 3},
		{"any", eventstore.Any, false, 4},
		{"exact after any", 4, false, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := h.Store.ReadStream(ctx, stream, 0)
			res, err := h.Store.Append(ctx, stream, tt.expected, newEvents(t, 1))
			if !tt.wantErr {
				if err != nil || res.FirstVersion != tt.wantFirst {
					t.Fatalf("Append = %+v, %v; want version %d", res, err, tt.wantFirst)
				}
				return
			}
			var ce *eventstore.ConcurrencyError
			if !errors.Is(err, eventstore.ErrConcurrencyConflict) || !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConcurrencyError", err)
			}
			if ce.StreamID != stream || ce.Expected != tt.expected || ce.Actual != int64(len(before)) {
				t.Errorf("ConcurrencyError = %+v, want stream %s expected %s actual %d", ce, stream, tt.expected, len(before))
			}
		})
	}
	if err := h.Store.Verify(ctx, stream); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func testInvalidInput(t *testing.T, h Harness) {
	ctx := context.Background()
	stream := streamPrefix(t) + "s"
	good := newEvent(t, "conformance.ok", `{}`)
	tests := []struct {
		name   string
		stream string
		events []eventstore.NewEvent
	}{
		{"no events", stream, nil},
		{"empty stream id", "", []eventstore.NewEvent{good}},
		{"nil event id", stream, []eventstore.NewEvent{{Type: "x", SchemaVersion: 1, Data: json.RawMessage(`{}`)}}},
		{"not JSON", stream, []eventstore.NewEvent{{ID: uuid.Must(uuid.NewV7()), Type: "x", SchemaVersion: 1, Data: json.RawMessage(`{nope`)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := h.Store.Append(ctx, tt.stream, eventstore.Any, tt.events); !errors.Is(err, eventstore.ErrInvalidEvent) {
				t.Errorf("err = %v, want ErrInvalidEvent", err)
			}
		})
	}
	if _, err := h.Store.ReadStream(ctx, stream, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("a rejected append wrote events: %v", err)
	}
}

// testConcurrentAppenders races appenders for each version of one stream:
// exactly one wins each round, the others get the typed conflict.
func testConcurrentAppenders(t *testing.T, h Harness) {
	const (
		appenders = 8
		rounds    = 25
	)
	ctx := context.Background()
	stream := streamPrefix(t) + "s"
	for round := range rounds {
		expected := eventstore.ExpectedVersion(round)
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			results = make([]error, appenders)
		)
		for i := range appenders {
			wg.Go(func() {
				events := newEvents(t, 1)
				<-start
				_, results[i] = h.Store.Append(ctx, stream, expected, events)
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range results {
			var ce *eventstore.ConcurrencyError
			switch {
			case err == nil:
				wins++
			case errors.As(err, &ce) && ce.Expected == expected && ce.Actual > int64(expected):
			default:
				t.Fatalf("round %d: err = %v, want nil or a *ConcurrencyError past version %d", round, err, expected)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d appenders won, want exactly 1", round, wins)
		}
	}
	events, err := h.Store.ReadStream(ctx, stream, 0)
	if err != nil || len(events) != rounds {
		t.Fatalf("stream has %d events (%v), want %d", len(events), err, rounds)
	}
	if err := h.Store.Verify(ctx, stream); err != nil {
		t.Errorf("Verify: %v", err)
	}
}
