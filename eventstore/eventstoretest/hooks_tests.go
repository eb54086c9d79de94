package eventstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/onboard/onboard/eventstore"
)

func testIdempotentReappend(t *testing.T, h Harness) {
	ctx := context.Background()
	prefix := streamPrefix(t)
	stream := prefix + "s"
	events := newEvents(t, 2)
	first := mustAppend(t, h.Store, stream, eventstore.NoStream, events)

	for _, expected := range []eventstore.ExpectedVersion{eventstore.NoStream, eventstore.Any, 2} {
		t.Run("expected "+expected.String(), func(t *testing.T) {
			again := events
			if expected == 2 {
				// Metadata describes the attempt and may differ.
				again = slices.Clone(events)
				again[0].Metadata.RequestID = "req-retry"
			}
			res, err := h.Store.Append(ctx, stream, expected, again)
			if err != nil {
				t.Fatalf("re-append: %v", err)
			}
			if !res.Duplicate || !slices.Equal(res.Positions, first.Positions) ||
				res.FirstVersion != 1 || res.LastVersion != 2 || res.TransactionID != first.TransactionID {
				t.Errorf("re-append = %+v, want the original %+v as a duplicate", res, first)
			}
		})
	}

	changed := slices.Clone(events)
	changed[1].Data = json.RawMessage(`{"n": "other"}`)
	tests := []struct {
		name   string
		stream string
		events []eventstore.NewEvent
	}{
		{"same id other data", stream, changed},
		{"same id other stream", prefix + "other", events[:1]},
		{"part of a batch stored", stream, append(slices.Clone(events), newEvent(t, "conformance.new", `{}`))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.Store.Append(ctx, tt.stream, eventstore.Any, tt.events)
			var ie *eventstore.EventIDError
			if !errors.Is(err, eventstore.ErrEventIDConflict) || !errors.As(err, &ie) || ie.StreamID != stream {
				t.Errorf("err = %v, want an *EventIDError naming stream %s", err, stream)
			}
		})
	}
	got, err := h.Store.ReadStream(ctx, stream, 0)
	if err != nil || len(got) != 2 {
		t.Errorf("stream has %d events (%v), want the 2 original ones", len(got), err)
	}
	if _, err := h.Store.ReadStream(ctx, prefix+"other", 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("conflicting append wrote to the other stream: %v", err)
	}
}

func testReservations(t *testing.T, h Harness) {
	ctx := context.Background()
	prefix := streamPrefix(t)
	alice, bob := prefix+"alice", prefix+"bob"
	email := prefix + "shared@example.com"
	r := eventstore.Reservation{Kind: "email", Value: email}

	mustAppend(t, h.Store, alice, eventstore.NoStream, newEvents(t, 1), eventstore.WithReservation(r))
	if owner, found, err := h.Store.ReservationOwner(ctx, "email", email); err != nil || !found || owner != alice {
		t.Fatalf("ReservationOwner = %q, %v, %v; want %s", owner, found, err, alice)
	}

	// The loser's events must not commit: the reservation and the append
	// are one transaction.
	other := eventstore.Reservation{Kind: "email", Value: prefix + "bob@example.com"}
	_, err := h.Store.Append(ctx, bob, eventstore.NoStream, newEvents(t, 1), eventstore.WithReservation(other), eventstore.WithReservation(r))
	var re *eventstore.ReservationError
	if !errors.Is(err, eventstore.ErrReservationTaken) || !errors.As(err, &re) ||
		re.OwnerStreamID != alice || re.Kind != "email" || re.Value != email {
		t.Fatalf("err = %v, want a *ReservationError owned by %s", err, alice)
	}
	if _, err := h.Store.ReadStream(ctx, bob, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("the losing append wrote events: %v", err)
	}
	if _, found, _ := h.Store.ReservationOwner(ctx, "email", other.Value); found {
		t.Errorf("the losing append kept its other reservation")
	}

	// Claiming again what one holds is fine; releasing frees it.
	mustAppend(t, h.Store, alice, 1, newEvents(t, 1), eventstore.WithReservation(r))
	mustAppend(t, h.Store, bob, eventstore.NoStream, newEvents(t, 1), eventstore.WithRelease(r)) // not bob's: no-op
	if owner, _, _ := h.Store.ReservationOwner(ctx, "email", email); owner != alice {
		t.Errorf("a stranger's release freed the reservation: owner %q", owner)
	}
	mustAppend(t, h.Store, alice, 2, newEvents(t, 1), eventstore.WithRelease(r))
	if _, found, _ := h.Store.ReservationOwner(ctx, "email", email); found {
		t.Errorf("the reservation survived its release")
	}
	mustAppend(t, h.Store, bob, 1, newEvents(t, 1), eventstore.WithReservation(r))
	if owner, _, _ := h.Store.ReservationOwner(ctx, "email", email); owner != bob {
		t.Errorf("owner = %q after release and claim, want %s", owner, bob)
	}
	for _, stream := range []string{alice, bob} {
		if err := h.Store.Verify(ctx, stream); err != nil {
			t.Errorf("Verify %s: %v", stream, err)
		}
	}
}

func testIdempotencyRecords(t *testing.T, h Harness) {
	ctx := context.Background()
	prefix := streamPrefix(t)
	rec := eventstore.IdempotencyRecord{
		Scope: prefix + "key-1 POST /v1/customers", Key: "idem-1", Fingerprint: "fp-1",
		StatusCode: 202, Response: []byte(`{"id":"c-1"}`),
	}
	if _, found, err := h.Store.LookupIdempotency(ctx, rec.Scope, rec.Key); err != nil || found {
		t.Fatalf("LookupIdempotency before = %v, %v; want not found", found, err)
	}
	res := mustAppend(t, h.Store, prefix+"c-1", eventstore.NoStream, newEvents(t, 3), eventstore.WithIdempotency(rec))
	stored, found, err := h.Store.LookupIdempotency(ctx, rec.Scope, rec.Key)
	if err != nil || !found {
		t.Fatalf("LookupIdempotency = %v, %v; want found", found, err)
	}
	if stored.Fingerprint != "fp-1" || stored.StatusCode != 202 || string(stored.Response) != string(rec.Response) ||
		!slices.Equal(stored.Result.Positions, res.Positions) || stored.Result.StreamID != res.StreamID ||
		stored.Result.FirstVersion != 1 || stored.Result.LastVersion != 3 || stored.Result.TransactionID != res.TransactionID ||
		!stored.ExpiresAt.After(stored.CreatedAt) {
		t.Errorf("stored = %+v, want the record with result %+v", stored, res)
	}

	tests := []struct {
		name        string
		fingerprint string
		want        error
	}{
		{"same request again", "fp-1", eventstore.ErrIdempotencyKeyUsed},
		{"other request same key", "fp-2", eventstore.ErrIdempotencyKeyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			again := rec
			again.Fingerprint = tt.fingerprint
			stream := prefix + "c-2"
			_, err := h.Store.Append(ctx, stream, eventstore.NoStream, newEvents(t, 1), eventstore.WithIdempotency(again))
			var ie *eventstore.IdempotencyError
			if !errors.Is(err, tt.want) || !errors.As(err, &ie) {
				t.Fatalf("err = %v, want an *IdempotencyError wrapping %v", err, tt.want)
			}
			if ie.Stored.Fingerprint != "fp-1" || string(ie.Stored.Response) != string(rec.Response) ||
				!slices.Equal(ie.Stored.Result.Positions, res.Positions) {
				t.Errorf("stored record = %+v, want the first request's", ie.Stored)
			}
			if _, err := h.Store.ReadStream(ctx, stream, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Errorf("a rejected request appended events: %v", err)
			}
		})
	}

	// Scopes are separate key spaces.
	other := rec
	other.Scope = prefix + "key-2 POST /v1/customers"
	mustAppend(t, h.Store, prefix+"c-3", eventstore.NoStream, newEvents(t, 1), eventstore.WithIdempotency(other))
	if err := h.Store.Verify(ctx, prefix+"c-1"); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

// testIdempotentRequestsInFlight repeats one request (same key, same
// reservation, new stream each time, as a command API would) while the first
// is still in flight: exactly one succeeds, the others must be recognised as
// repeats (replay the response), not as a clash over the reservation.
func testIdempotentRequestsInFlight(t *testing.T, h Harness) {
	const (
		rounds  = 20
		repeats = 4
	)
	ctx := context.Background()
	prefix := streamPrefix(t)
	for round := range rounds {
		rec := eventstore.IdempotencyRecord{Scope: prefix + "scope", Key: fmt.Sprint("key-", round), Fingerprint: "fp", StatusCode: 202}
		email := eventstore.Reservation{Kind: "email", Value: fmt.Sprintf("%s%d@example.com", prefix, round)}
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, repeats)
		)
		for i := range repeats {
			wg.Go(func() {
				events := newEvents(t, 1)
				stream := fmt.Sprintf("%sc-%d-%d", prefix, round, i)
				<-start
				_, errs[i] = h.Store.Append(ctx, stream, eventstore.NoStream, events,
					eventstore.WithIdempotency(rec), eventstore.WithReservation(email))
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, eventstore.ErrIdempotencyKeyUsed):
				t.Fatalf("round %d: err = %v, want nil or ErrIdempotencyKeyUsed", round, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d repeats succeeded, want exactly 1", round, wins)
		}
	}
}
