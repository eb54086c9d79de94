package eventstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
)

// appendConcurrently appends events from several goroutines to a few shared
// streams (with Any, so appenders race for versions) and returns the ids
// appended.
func appendConcurrently(t *testing.T, s eventstore.Appender, prefix string, writers, perWriter int) map[uuid.UUID]bool {
	t.Helper()
	var (
		mu  sync.Mutex
		ids = map[uuid.UUID]bool{}
		wg  sync.WaitGroup
	)
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				events := newEvents(t, 1+i%2)
				stream := fmt.Sprintf("%ss%d", prefix, (w+i)%3)
				if _, err := s.Append(context.Background(), stream, eventstore.Any, events); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, e := range events {
					ids[e.ID] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent append: %v", err)
	}
	return ids
}

// checkDelivery checks that got holds every id once and each stream in
// version order 1..n.
func checkDelivery(t *testing.T, got []eventstore.Envelope, ids map[uuid.UUID]bool) {
	t.Helper()
	seen := map[uuid.UUID]bool{}
	versions := map[string]int64{}
	for _, e := range got {
		if seen[e.ID] {
			t.Fatalf("event %s delivered twice", e.ID)
		}
		seen[e.ID] = true
		if !ids[e.ID] {
			t.Fatalf("event %s delivered but never appended", e.ID)
		}
		if e.Version != versions[e.StreamID]+1 {
			t.Fatalf("stream %s: version %d delivered after %d", e.StreamID, e.Version, versions[e.StreamID])
		}
		versions[e.StreamID] = e.Version
	}
	if len(seen) != len(ids) {
		t.Fatalf("delivered %d of %d events", len(seen), len(ids))
	}
}

func testReadAllGlobalOrder(t *testing.T, h Harness) {
	prefix := streamPrefix(t)
	start := head(t, h.Store)
	ids := appendConcurrently(t, h.Store, prefix, 4, 25)
	var got []eventstore.Envelope
	eventually(t, "ReadAll to return every appended event", func() bool {
		got = readAllMine(t, h.Store, start, prefix)
		return len(got) >= len(ids)
	})
	checkDelivery(t, got, ids)
	if h := head(t, h.Store); h.Compare(got[len(got)-1].Cursor()) < 0 {
		t.Errorf("Head %s is before the last event read %s", h, got[len(got)-1].Cursor())
	}
	if _, err := h.Store.ReadAll(context.Background(), start, 0); err == nil {
		t.Errorf("ReadAll with limit 0 succeeded")
	}
}

func testSubscribe(t *testing.T, h Harness) {
	prefix := streamPrefix(t)
	c := subscribe(t, h.Store, head(t, h.Store), prefix, nil)
	ids := appendConcurrently(t, h.Store, prefix, 3, 20)
	got := c.waitMine(t, len(ids))
	checkDelivery(t, got, ids)
	c.stop(t)

	// Resuming after a checkpoint delivers exactly the rest.
	mid := len(got) / 2
	rest := subscribe(t, h.Store, got[mid-1].Cursor(), prefix, nil)
	resumed := rest.waitMine(t, len(got)-mid)
	for i, e := range resumed {
		if e.ID != got[mid+i].ID {
			t.Fatalf("resumed delivery %d is %s, want %s", i, e.ID, got[mid+i].ID)
		}
	}
}

func testSubscribeHandlerError(t *testing.T, h Harness) {
	prefix := streamPrefix(t)
	boom := errors.New("boom")
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	after := head(t, h.Store)
	go func() {
		done <- h.Store.Subscribe(ctx, after, func(_ context.Context, e eventstore.Envelope) error {
			if e.StreamID == prefix+"s" {
				return boom
			}
			return nil
		})
	}()
	mustAppend(t, h.Store, prefix+"s", eventstore.NoStream, newEvents(t, 1))
	var err error
	eventually(t, "Subscribe to return the handler's error", func() bool {
		select {
		case err = <-done:
			return true
		default:
			return false
		}
	})
	if !errors.Is(err, boom) {
		t.Errorf("Subscribe returned %v, want the handler's error", err)
	}
}

// testCommitOrderRace is the race a plain sequence loses: A takes a
// position, B takes a later one and commits first, then A commits. A
// reader must never pass B while A can still commit. The iterations take
// turns at the kinds of append a store may write differently (one event
// or several, to a new stream or an old one, with an idempotency record,
// reservations or a release), for A and for B.
//
// While A is open nothing after A's cursor may be readable: not B, nor
// anything else committed meanwhile. That is checked in every iteration;
// delivery itself (both, A first, each once, in cursor order) is checked
// once at the end, so that the test does not wait for the cluster-wide
// horizon a thousand times.
func testCommitOrderRace(t *testing.T, h Harness) {
	if h.HoldAppend == nil {
		t.Skip("the harness has no HoldAppend")
	}
	const iterations = 1000
	ctx := context.Background()
	prefix := streamPrefix(t)
	start := head(t, h.Store)
	var (
		mu        sync.Mutex
		firstOf   = map[uuid.UUID]uuid.UUID{} // B's id → A's id, written before B exists
		delivered = map[uuid.UUID]bool{}
		violation string
	)
	c := subscribe(t, h.Store, start, prefix, func(e eventstore.Envelope) {
		mu.Lock()
		defer mu.Unlock()
		if a, isB := firstOf[e.ID]; isB && !delivered[a] && violation == "" {
			violation = fmt.Sprintf("B %s delivered before A %s", e.ID, a)
		}
		delivered[e.ID] = true
	})

	total := 0
	for i := range iterations {
		shapeA, shapeB := raceShapes[i%len(raceShapes)], raceShapes[(i/len(raceShapes))%len(raceShapes)]
		evA, evB := newEvents(t, shapeA.events), newEvents(t, shapeB.events)
		total += len(evA) + len(evB)
		mu.Lock()
		for _, e := range evB {
			firstOf[e.ID] = evA[len(evA)-1].ID
		}
		mu.Unlock()
		// Old streams (Any) and new ones (NoStream) in turn.
		streamA, streamB, expected := prefix+"a", prefix+"b", eventstore.Any
		if (i/16)%2 == 1 {
			streamA, streamB, expected = fmt.Sprintf("%sa%d", prefix, i), fmt.Sprintf("%sb%d", prefix, i), eventstore.NoStream
		}
		tagA, tagB := fmt.Sprintf("%sa%d", prefix, i), fmt.Sprintf("%sb%d", prefix, i)
		held := hold(t, h, streamA, expected, evA, shapeA.opts(tagA)...)
		b, err := h.Store.Append(ctx, streamB, expected, evB, shapeB.opts(tagB)...)
		if err != nil {
			t.Fatalf("iteration %d: append B (%s): %v", i, shapeB.name, err)
		}
		if held.Result.Positions[0] >= b.Positions[0] {
			t.Fatalf("iteration %d: A took position %d, not before B's %d", i, held.Result.Positions[0], b.Positions[0])
		}
		// B has committed, A has not: nothing after A may be readable.
		aCursor := held.Result.Cursor()
		if aCursor.Compare(b.Cursor()) >= 0 {
			t.Fatalf("iteration %d: A's cursor %s does not sort before B's %s", i, aCursor, b.Cursor())
		}
		batch, err := h.Store.ReadAll(ctx, aCursor, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) > 0 {
			t.Fatalf("iteration %d: ReadAll after A (%s, uncommitted) returned %s of stream %s", i, aCursor, batch[0].Cursor(), batch[0].StreamID)
		}
		if err := held.Commit(ctx); err != nil {
			t.Fatalf("iteration %d: commit A: %v", i, err)
		}
	}

	c.waitMine(t, total)
	mu.Lock()
	if violation != "" {
		t.Error(violation)
	}
	mu.Unlock()
	var got []eventstore.Envelope
	eventually(t, "ReadAll to return every event of the race", func() bool {
		got = readAllMine(t, h.Store, start, prefix)
		return len(got) >= total
	})
	seen := map[uuid.UUID]bool{}
	for _, e := range got {
		mu.Lock()
		a, isB := firstOf[e.ID]
		mu.Unlock()
		if isB && !seen[a] {
			t.Fatalf("ReadAll returned B %s before A %s", e.ID, a)
		}
		if seen[e.ID] {
			t.Fatalf("ReadAll returned %s twice", e.ID)
		}
		seen[e.ID] = true
	}
	if len(got) != total {
		t.Fatalf("ReadAll returned %d events, want %d", len(got), total)
	}
}

// raceShapes are the kinds of append testCommitOrderRace takes turns at;
// opts takes a tag unique to the append.
var raceShapes = []struct {
	name   string
	events int
	opts   func(tag string) []eventstore.AppendOption
}{
	{"one event", 1, func(string) []eventstore.AppendOption { return nil }},
	{"three events", 3, func(string) []eventstore.AppendOption { return nil }},
	{"idempotency record and reservation", 2, func(tag string) []eventstore.AppendOption {
		return []eventstore.AppendOption{
			eventstore.WithIdempotency(eventstore.IdempotencyRecord{Scope: "race", Key: tag, Fingerprint: "f", StatusCode: 202}),
			eventstore.WithReservation(eventstore.Reservation{Kind: "race", Value: tag}),
		}
	}},
	{"reservations and a release", 1, func(tag string) []eventstore.AppendOption {
		return []eventstore.AppendOption{
			eventstore.WithReservation(eventstore.Reservation{Kind: "race", Value: tag + "-1"}),
			eventstore.WithReservation(eventstore.Reservation{Kind: "race", Value: tag + "-2"}),
			eventstore.WithRelease(eventstore.Reservation{Kind: "race", Value: tag}),
		}
	}},
}

// testLongOpenTransaction holds one append open while many others commit:
// the subscriber waits for it, then delivers everything, the held append
// first.
func testLongOpenTransaction(t *testing.T, h Harness) {
	if h.HoldAppend == nil {
		t.Skip("the harness has no HoldAppend")
	}
	const later = 50
	ctx := context.Background()
	prefix := streamPrefix(t)
	start := head(t, h.Store)
	var committing atomic.Bool
	var early atomic.Int32
	held := hold(t, h, prefix+"held", eventstore.NoStream, newEvents(t, 1))
	c := subscribe(t, h.Store, start, prefix, func(e eventstore.Envelope) {
		if e.StreamID != prefix+"held" && !committing.Load() {
			early.Add(1)
		}
	})
	for i := range later {
		if _, err := h.Store.Append(ctx, fmt.Sprintf("%slater-%d", prefix, i), eventstore.NoStream, newEvents(t, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if got := readAllMine(t, h.Store, start, prefix); len(got) != 0 {
		t.Fatalf("ReadAll returned %d events committed after a still open append", len(got))
	}
	committing.Store(true)
	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := c.waitMine(t, later+1)
	if got[0].StreamID != prefix+"held" {
		t.Errorf("first delivered %s, want the held append first", got[0].StreamID)
	}
	if n := early.Load(); n > 0 {
		t.Errorf("%d events delivered while an earlier append was still open", n)
	}
}

func testVerifyDetectsTampering(t *testing.T, h Harness) {
	if h.Tamper == nil {
		t.Skip("the harness has no Tamper")
	}
	for _, version := range []int64{1, 3, 5} {
		t.Run(fmt.Sprint("version ", version), func(t *testing.T) {
			ctx := context.Background()
			stream := streamPrefix(t) + "s"
			mustAppend(t, h.Store, stream, eventstore.NoStream, newEvents(t, 3))
			mustAppend(t, h.Store, stream, 3, newEvents(t, 2))
			if err := h.Store.Verify(ctx, stream); err != nil {
				t.Fatalf("Verify before tampering: %v", err)
			}
			if err := h.Tamper(ctx, stream, version, json.RawMessage(`{"n":"forged"}`)); err != nil {
				t.Fatal(err)
			}
			err := h.Store.Verify(ctx, stream)
			var ie *eventstore.IntegrityError
			if !errors.Is(err, eventstore.ErrIntegrity) || !errors.As(err, &ie) || ie.Version != version || ie.StreamID != stream {
				t.Fatalf("Verify = %v, want an *IntegrityError at version %d", err, version)
			}
		})
	}
}

// hold starts a held append that is rolled back at the end of the test
// unless committed, so that a failing test does not leave it open.
func hold(t *testing.T, h Harness, stream string, expected eventstore.ExpectedVersion, events []eventstore.NewEvent, opts ...eventstore.AppendOption) *HeldAppend {
	t.Helper()
	held, err := h.HoldAppend(context.Background(), stream, expected, events, opts...)
	if err != nil {
		t.Fatalf("hold an append to %s: %v", stream, err)
	}
	t.Cleanup(func() { _ = held.Rollback(context.Background()) })
	return held
}
