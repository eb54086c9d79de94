package eventstore_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
)

func TestCursorOrderAndText(t *testing.T) {
	tests := []struct {
		a, b eventstore.Cursor
		want int
	}{
		{eventstore.Start, eventstore.Cursor{TransactionID: 1, Position: 1}, -1},
		{eventstore.Cursor{TransactionID: 5, Position: 9}, eventstore.Cursor{TransactionID: 6, Position: 2}, -1},
		{eventstore.Cursor{TransactionID: 6, Position: 2}, eventstore.Cursor{TransactionID: 6, Position: 2}, 0},
		{eventstore.Cursor{TransactionID: 6, Position: 3}, eventstore.Cursor{TransactionID: 6, Position: 2}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.a.String()+"_"+tt.b.String(), func(t *testing.T) {
			if got := tt.a.Compare(tt.b); got != tt.want {
				t.Errorf("Compare = %d, want %d", got, tt.want)
			}
			back, err := eventstore.ParseCursor(tt.a.String())
			if err != nil || back != tt.a {
				t.Errorf("ParseCursor(%q) = %v, %v", tt.a.String(), back, err)
			}
		})
	}
	for _, bad := range []string{"", "1", "x/1", "1/x", "-1/2"} {
		if _, err := eventstore.ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) succeeded", bad)
		}
	}
}

func TestDefaultStreamType(t *testing.T) {
	for in, want := range map[string]string{"customer-123": "customer", "plain": "plain", "a-b-c": "a"} {
		if got := eventstore.DefaultStreamType(in); got != want {
			t.Errorf("DefaultStreamType(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrepareAppend(t *testing.T) {
	id := uuid.Must(uuid.NewV7())
	good := eventstore.NewEvent{ID: id, Type: "t", SchemaVersion: 1, Data: json.RawMessage(`{ "a" : 1 }`)}
	tests := []struct {
		name    string
		stream  string
		events  []eventstore.NewEvent
		wantErr bool
	}{
		{"ok", "s-1", []eventstore.NewEvent{good}, false},
		{"no stream", "", []eventstore.NewEvent{good}, true},
		{"no events", "s-1", nil, true},
		{"nil id", "s-1", []eventstore.NewEvent{{Type: "t", SchemaVersion: 1, Data: json.RawMessage(`{}`)}}, true},
		{"no type", "s-1", []eventstore.NewEvent{{ID: id, SchemaVersion: 1, Data: json.RawMessage(`{}`)}}, true},
		{"schema 0", "s-1", []eventstore.NewEvent{{ID: id, Type: "t", Data: json.RawMessage(`{}`)}}, true},
		{"bad json", "s-1", []eventstore.NewEvent{{ID: id, Type: "t", SchemaVersion: 1, Data: json.RawMessage(`{`)}}, true},
		{"dup id", "s-1", []eventstore.NewEvent{good, good}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := eventstore.PrepareAppend(tt.stream, eventstore.Any, tt.events, eventstore.AppendOptions{})
			if tt.wantErr {
				if !errors.Is(err, eventstore.ErrInvalidEvent) {
					t.Fatalf("err = %v, want ErrInvalidEvent", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got[0].Data) != `{"a":1}` {
				t.Errorf("data = %s, want compacted", got[0].Data)
			}
		})
	}
}

func TestVerifyChain(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	var events []eventstore.Envelope
	var prev []byte
	for v := int64(1); v <= 3; v++ {
		e := eventstore.Envelope{
			ID: uuid.Must(uuid.NewV7()), StreamID: "s-1", StreamType: "s", Version: v, Type: "t", SchemaVersion: 1,
			Data: json.RawMessage(`{}`), Metadata: eventstore.Metadata{Actor: "me", Trace: map[string]string{"traceparent": "x"}},
			RecordedAt: at, PrevHash: prev,
		}
		e.Hash = eventstore.Hash(prev, e)
		prev = e.Hash
		events = append(events, e)
	}
	if err := eventstore.VerifyChain("s-1", events); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	events[1].Data = json.RawMessage(`{"x":1}`)
	err := eventstore.VerifyChain("s-1", events)
	var ie *eventstore.IntegrityError
	if !errors.As(err, &ie) || ie.Version != 2 || !errors.Is(err, eventstore.ErrIntegrity) {
		t.Fatalf("tampered chain: err = %v, want IntegrityError at version 2", err)
	}
}

func TestErrorsUnwrap(t *testing.T) {
	tests := []struct {
		err  error
		want error
	}{
		{&eventstore.ConcurrencyError{StreamID: "s", Expected: 1, Actual: 2}, eventstore.ErrConcurrencyConflict},
		{&eventstore.ReservationError{Kind: "email", Value: "a@b", OwnerStreamID: "s"}, eventstore.ErrReservationTaken},
		{&eventstore.EventIDError{}, eventstore.ErrEventIDConflict},
		{&eventstore.IdempotencyError{Err: eventstore.ErrIdempotencyKeyMismatch}, eventstore.ErrIdempotencyKeyMismatch},
		{&eventstore.IntegrityError{}, eventstore.ErrIntegrity},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) || tt.err.Error() == "" {
			t.Errorf("%T does not wrap %v", tt.err, tt.want)
		}
	}
}
