package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/eventstoretest"
	"github.com/onboard/onboard/internal/pgtest"
)

// newTestStore migrates a fresh database and returns a Store on it with a
// pool big enough for the suite's parallel subscriptions (each holds one
// connection to listen on), opened up front (see pgtest.NewPool).
//
// Commits need not be durable in tests: visibility, and so every ordering
// property tested, is the same without waiting for the WAL flush, which is
// slow on a loaded CI machine.
func newTestStore(t testing.TB) (*Store, string) {
	t.Helper()
	dbURL := pgtest.NewMigratedDatabase(t)
	pool := pgtest.NewPool(t, dbURL+"&synchronous_commit=off", 12)
	s, err := New(pool, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close) // before the pool closes: cleanups run last-in first-out
	return s, dbURL
}

func TestConformance(t *testing.T) {
	s, dbURL := newTestStore(t)
	h := eventstoretest.Harness{
		Store:      s,
		HoldAppend: s.holdAppend,
		Tamper: func(ctx context.Context, streamID string, version int64, data json.RawMessage) error {
			return tamper(ctx, dbURL, streamID, version, data)
		},
	}
	eventstoretest.Run(t, func(*testing.T) eventstoretest.Harness { return h })
}

// holdAppend runs Append's statement in a transaction it leaves open.
func (s *Store) holdAppend(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.NewEvent, opts ...eventstore.AppendOption) (*eventstoretest.HeldAppend, error) {
	query, args, _, err := prepareAppend(streamID, expected, events, eventstore.ApplyAppendOptions(streamID, opts...))
	if err != nil {
		return nil, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.appendStatement(ctx, tx, streamID, query, args)
	if err != nil {
		_ = tx.Rollback(ctx)
		return nil, err
	}
	return &eventstoretest.HeldAppend{
		Result: res,
		Commit: func(ctx context.Context) error {
			if err := tx.Commit(ctx); err != nil {
				return err
			}
			s.wakeSubscribers()
			return nil
		},
		Rollback: tx.Rollback,
	}, nil
}

// tamper rewrites an event as a superuser who disabled the triggers for
// the session.
func tamper(ctx context.Context, dbURL, streamID string, version int64, data json.RawMessage) error {
	conn, err := pgtest.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET session_replication_role = replica"); err != nil {
		return err
	}
	tag, err := conn.Exec(ctx, `UPDATE events SET data = $3::text::json WHERE stream_id = $1 AND version = $2`, streamID, version, string(data))
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("tamper: %d rows updated", tag.RowsAffected())
	}
	return nil
}

func TestEventsAreImmutable(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	res, err := s.Append(ctx, "imm-1", eventstore.NoStream, []eventstore.NewEvent{newTestEvent()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, sql string }{
		{"update", `UPDATE events SET data = '{"x":1}' WHERE stream_id = 'imm-1'`},
		{"update nothing", `UPDATE events SET data = '{"x":1}' WHERE false`},
		{"delete", `DELETE FROM events WHERE stream_id = 'imm-1'`},
		{"truncate", `TRUNCATE events`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.pool.Exec(ctx, tt.sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != codeImmutable {
				t.Errorf("err = %v, want SQLSTATE %s", err, codeImmutable)
			}
		})
	}
	got, err := s.ReadStream(ctx, "imm-1", 0)
	if err != nil || len(got) != 1 || got[0].Position != res.Positions[0] {
		t.Errorf("stream after the attempts: %v, %v", got, err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{PollInterval: -1, BatchSize: -1}).Validate(); err == nil {
		t.Error("Validate accepted negative settings")
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("Validate of the zero Config: %v", err)
	}
}

func TestCanonicalBodyIsTheMiddleOfCanonicalBytes(t *testing.T) {
	e := newTestEvent()
	e.Metadata.Trace = map[string]string{"traceparent": "x"}
	env := eventstore.Envelope{ID: e.ID, StreamID: "stream-1", StreamType: "stream", Version: 7, Type: e.Type,
		SchemaVersion: e.SchemaVersion, Data: e.Data, Metadata: e.Metadata, RecordedAt: time.UnixMicro(1234567)}
	full := eventstore.CanonicalBytes(env)
	body := canonicalBody(e)
	start := 16 + 4 + len("stream-1") + 4 + len("stream") + 8
	if !bytes.Equal(full[start:len(full)-8], body) {
		t.Errorf("canonicalBody = %x, want %x", body, full[start:len(full)-8])
	}
}

func TestDecodeTrace(t *testing.T) {
	tests := []map[string]string{
		{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"traceparent": "a", "tracestate": "x=1,y=2"},
		{`quote"d`: `back\slash`, "uni": "é\u2028<>&"},
		{"": ""},
	}
	for _, want := range tests {
		b := eventstore.CanonicalTrace(want)
		got, err := decodeTrace(b)
		if err != nil || len(got) != len(want) {
			t.Fatalf("decodeTrace(%s) = %v, %v", b, got, err)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("decodeTrace(%s)[%q] = %q, want %q", b, k, got[k], v)
			}
		}
	}
	for _, bad := range []string{`{"a"}`, `{"a":1}`, `{"a":"b",}`, `{`} {
		if _, err := decodeTrace([]byte(bad)); err == nil {
			t.Errorf("decodeTrace(%s) succeeded", bad)
		}
	}
}

// TestHeldBackReadsTheNewestEventOnly: the subscribers' question "do
// committed events wait behind the horizon?" touches a few index pages
// however many events there are (a table scan made it the costliest
// statement of the pipeline), and answers it right either way.
func TestHeldBackReadsTheNewestEventOnly(t *testing.T) {
	s, dbURL := newTestStore(t)
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `INSERT INTO events (event_id, stream_id, stream_type, version, type, schema_version, data, prev_hash, hash)
		SELECT gen_random_uuid(), 'bulk-' || g, 'bulk', 1, 'bulk.added', 1, '{}', '\x00', '\x00' FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	var plan []map[string]any
	if err := s.pool.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+heldBackSQL).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	top := plan[0]["Plan"].(map[string]any)
	blocks := top["Shared Hit Blocks"].(float64) + top["Shared Read Blocks"].(float64)
	if blocks > 20 {
		t.Errorf("heldBack read %v blocks of a 20,000-event log, want a few index pages: %v", blocks, plan)
	}
	if held, err := s.heldBack(ctx); err != nil || held {
		t.Errorf("heldBack with nothing in flight = %v, %v; want false", held, err)
	}
	// An open transaction with an id, then a committed append: held.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "held-1", eventstore.NoStream, []eventstore.NewEvent{newTestEvent()}); err != nil {
		t.Fatal(err)
	}
	if held, err := s.heldBack(ctx); err != nil || !held {
		t.Errorf("heldBack behind an open transaction = %v, %v; want true", held, err)
	}
}

// TestAppendStatementsShareOneChain: appends of every size and kind
// (built once or on demand) to one stream verify as one hash chain, and
// report conflicts and re-appends alike.
func TestAppendStatementsShareOneChain(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	const stream = "customer-chain"
	appendOK := func(expected eventstore.ExpectedVersion, events []eventstore.NewEvent, opts ...eventstore.AppendOption) eventstore.AppendResult {
		t.Helper()
		res, err := s.Append(ctx, stream, expected, events, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	one := newTestEvent()
	one.Metadata.Trace = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	res := appendOK(eventstore.NoStream, []eventstore.NewEvent{one})
	if res.FirstVersion != 1 || res.LastVersion != 1 || len(res.Positions) != 1 {
		t.Fatalf("single append result %+v", res)
	}
	pair := appendOK(1, []eventstore.NewEvent{newTestEvent(), newTestEvent()})
	if pair.FirstVersion != 2 || pair.LastVersion != 3 || len(pair.Positions) != 2 || pair.Positions[0] >= pair.Positions[1] {
		t.Fatalf("two-event append result %+v, want versions 2-3 at increasing positions", pair)
	}
	appendOK(3, []eventstore.NewEvent{newTestEvent()}, eventstore.WithIdempotency(eventstore.IdempotencyRecord{Scope: "test", Key: "k1", Fingerprint: "f"}))
	last := newTestEvent()
	appendOK(eventstore.Any, []eventstore.NewEvent{last})
	if err := s.Verify(ctx, stream); err != nil {
		t.Fatalf("the chain across appends of several kinds: %v", err)
	}
	// Sizes built once (up to 8) and on demand, on streams old and new:
	// one chain each, positions in version order.
	for _, n := range []int{2, 3, 8, 9, maxAppendEvents} {
		for _, expected := range []eventstore.ExpectedVersion{eventstore.NoStream, 1} {
			id := fmt.Sprintf("customer-many-%d-%d", n, expected)
			if expected == 1 {
				if _, err := s.Append(ctx, id, eventstore.NoStream, []eventstore.NewEvent{newTestEvent()}); err != nil {
					t.Fatal(err)
				}
			}
			events := make([]eventstore.NewEvent, n)
			for i := range events {
				events[i] = newTestEvent()
				events[i].Metadata.Trace = map[string]string{"traceparent": fmt.Sprintf("00-4bf92f3577b34da6a3ce929d0e0e47%02d-00f067aa0ba902b7-01", i)}
			}
			res, err := s.Append(ctx, id, expected, events)
			if err != nil {
				t.Fatalf("%d events after v%d: %v", n, expected, err)
			}
			if res.FirstVersion != int64(expected)+1 || res.LastVersion != int64(expected)+int64(n) || len(res.Positions) != n {
				t.Errorf("%d events after v%d: result %+v", n, expected, res)
			}
			stored, err := s.ReadStream(ctx, id, 1)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(stored); i++ {
				if stored[i].Cursor().Compare(stored[i-1].Cursor()) <= 0 {
					t.Errorf("%s: v%d at %s is not after v%d at %s", id, stored[i].Version, stored[i].Cursor(), stored[i-1].Version, stored[i-1].Cursor())
				}
			}
			for i, e := range stored[len(stored)-n:] {
				if e.ID != events[i].ID {
					t.Errorf("%s: v%d is event %s, want %s", id, e.Version, e.ID, events[i].ID)
				}
			}
			if err := s.Verify(ctx, id); err != nil {
				t.Errorf("%s: %v", id, err)
			}
			// The same events again: a duplicate, not a conflict.
			if dup, err := s.Append(ctx, id, expected, events); err != nil || !dup.Duplicate {
				t.Errorf("%s: re-append %+v, %v", id, dup, err)
			}
			// A stale expected version: a conflict naming the current one.
			var ce *eventstore.ConcurrencyError
			if _, err := s.Append(ctx, id, expected, []eventstore.NewEvent{newTestEvent(), newTestEvent()}); !errors.As(err, &ce) || ce.Actual != int64(expected)+int64(n) {
				t.Errorf("%s: stale append: %v", id, err)
			}
		}
	}

	// More events than one statement takes: invalid, and nothing stored.
	tooMany := make([]eventstore.NewEvent, maxAppendEvents+1)
	for i := range tooMany {
		tooMany[i] = newTestEvent()
	}
	if _, err := s.Append(ctx, "customer-too-many", eventstore.NoStream, tooMany); !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Errorf("append of %d events: %v, want ErrInvalidEvent", len(tooMany), err)
	}

	// A stale expected version is a conflict naming the current one.
	_, err := s.Append(ctx, stream, 2, []eventstore.NewEvent{newTestEvent()})
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) || ce.Actual != 5 || ce.Expected != 2 {
		t.Fatalf("stale single append: %v, want a conflict at version 5", err)
	}
	// Appending the stored event again is a duplicate, not a conflict.
	dup, err := s.Append(ctx, stream, 4, []eventstore.NewEvent{last})
	if err != nil || !dup.Duplicate || dup.FirstVersion != 5 {
		t.Fatalf("re-append: %+v, %v; want the stored result as a duplicate", dup, err)
	}
	// A new stream taken by a concurrent append: a conflict too.
	if _, err := s.Append(ctx, stream, eventstore.NoStream, []eventstore.NewEvent{newTestEvent()}); !errors.As(err, &ce) || ce.Actual != 5 {
		t.Fatalf("NoStream on an existing stream: %v", err)
	}
}

// TestPacedSubscriptionGathersEvents: a paced subscription delivers every
// event in order; after a read that found events it reads again no sooner
// than the pace, so what is appended meanwhile comes in one read.
func TestPacedSubscriptionGathersEvents(t *testing.T) {
	s, _ := newTestStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const pace = 300 * time.Millisecond
	type delivery struct {
		streamID string
		at       time.Time
	}
	got := make(chan delivery, 16)
	done := make(chan error, 1)
	go func() {
		done <- s.Paced(pace).Subscribe(ctx, eventstore.Start, func(_ context.Context, e eventstore.Envelope) error {
			got <- delivery{e.StreamID, time.Now()}
			return nil
		})
	}()
	next := func() delivery {
		t.Helper()
		select {
		case d := <-got:
			return d
		case err := <-done:
			t.Fatalf("subscription ended: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("no delivery within 30s")
		}
		return delivery{}
	}
	appendOne := func(streamID string) {
		t.Helper()
		if _, err := s.Append(ctx, streamID, eventstore.NoStream, []eventstore.NewEvent{newTestEvent()}); err != nil {
			t.Fatal(err)
		}
	}
	appendOne("paced-0")
	first := next()
	if first.streamID != "paced-0" {
		t.Fatalf("first delivery %s, want paced-0", first.streamID)
	}
	for i := 1; i < 4; i++ {
		appendOne(fmt.Sprintf("paced-%d", i))
	}
	for i := 1; i < 4; i++ {
		d := next()
		if want := fmt.Sprintf("paced-%d", i); d.streamID != want {
			t.Fatalf("delivery %d is %s, want %s", i, d.streamID, want)
		}
		if gap := d.at.Sub(first.at); gap < pace {
			t.Errorf("delivery %d came %v after the first, within the pace %v", i, gap, pace)
		}
	}
}

// TestRecordsAndReservationsAtEverySize: an append with an idempotency
// record and a reservation fails the same way whatever its size (with a
// statement built once, up to 8 events, or on demand), and a failure
// leaves nothing behind: no events, no record, no reservation.
func TestRecordsAndReservationsAtEverySize(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	events := func(n int) []eventstore.NewEvent {
		out := make([]eventstore.NewEvent, n)
		for i := range out {
			out[i] = newTestEvent()
		}
		return out
	}
	for _, n := range []int{1, 2, 9} {
		p := fmt.Sprintf("n%d-", n)
		rec := func(key string) eventstore.AppendOption {
			return eventstore.WithIdempotency(eventstore.IdempotencyRecord{Scope: p + "scope", Key: key, Fingerprint: "fp", StatusCode: 202, Response: []byte("{}")})
		}
		reserve := func(value string) eventstore.AppendOption {
			return eventstore.WithReservation(eventstore.Reservation{Kind: "email", Value: p + value})
		}
		first, err := s.Append(ctx, p+"a", eventstore.NoStream, events(n), rec("k1"), reserve("a@x"))
		if err != nil || first.FirstVersion != 1 || first.LastVersion != int64(n) || len(first.Positions) != n {
			t.Fatalf("n=%d: first append %+v, %v", n, first, err)
		}
		stored, found, err := s.LookupIdempotency(ctx, p+"scope", "k1")
		if err != nil || !found || !slices.Equal(stored.Result.Positions, first.Positions) || stored.Result.TransactionID != first.TransactionID ||
			stored.Result.FirstVersion != 1 || stored.Result.LastVersion != int64(n) {
			t.Fatalf("n=%d: record %+v (%v, %v), want the result %+v", n, stored, found, err, first)
		}
		if owner, _, _ := s.ReservationOwner(ctx, "email", p+"a@x"); owner != p+"a" {
			t.Fatalf("n=%d: reservation owner %q", n, owner)
		}

		nothingLeft := func(what, stream, key, value string) {
			t.Helper()
			if _, err := s.ReadStream(ctx, stream, 1); !errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Errorf("n=%d, %s: events left: %v", n, what, err)
			}
			if _, found, _ := s.LookupIdempotency(ctx, p+"scope", key); found && key != "k1" {
				t.Errorf("n=%d, %s: idempotency record %s left", n, what, key)
			}
			if owner, found, _ := s.ReservationOwner(ctx, "email", p+value); found && owner == p+stream {
				t.Errorf("n=%d, %s: reservation left", n, what)
			}
		}
		// The same key again, on a new stream with a new value: a repeat.
		_, err = s.Append(ctx, p+"b", eventstore.NoStream, events(n), rec("k1"), reserve("b@x"))
		if !errors.Is(err, eventstore.ErrIdempotencyKeyUsed) {
			t.Errorf("n=%d: repeat: %v, want ErrIdempotencyKeyUsed", n, err)
		}
		nothingLeft("repeat", p+"b", "k1", "b@x")
		// The key wins over a stale version.
		if _, err = s.Append(ctx, p+"a", 0, events(n), rec("k1")); !errors.Is(err, eventstore.ErrIdempotencyKeyUsed) {
			t.Errorf("n=%d: repeat at a stale version: %v, want ErrIdempotencyKeyUsed", n, err)
		}
		// A stale version with a new key: a conflict, and no record.
		var ce *eventstore.ConcurrencyError
		if _, err = s.Append(ctx, p+"a", 0, events(n), rec("k2")); !errors.As(err, &ce) || ce.Actual != int64(n) {
			t.Errorf("n=%d: stale version: %v, want a conflict at %d", n, err, n)
		}
		if _, found, _ := s.LookupIdempotency(ctx, p+"scope", "k2"); found {
			t.Errorf("n=%d: a conflicting append stored its record", n)
		}
		// Someone else's value: taken, named, and nothing kept.
		var re *eventstore.ReservationError
		_, err = s.Append(ctx, p+"c", eventstore.NoStream, events(n), rec("k3"), reserve("a@x"))
		if !errors.As(err, &re) || re.OwnerStreamID != p+"a" || re.Kind != "email" || re.Value != p+"a@x" {
			t.Errorf("n=%d: taken: %v, want a *ReservationError owned by %s", n, err, p+"a")
		}
		nothingLeft("taken", p+"c", "k3", "a@x")
		// Its own value again, with a new key: fine.
		if _, err := s.Append(ctx, p+"a", eventstore.ExpectedVersion(n), events(n), rec("k4"), reserve("a@x")); err != nil {
			t.Errorf("n=%d: own reservation again: %v", n, err)
		}
		if err := s.Verify(ctx, p+"a"); err != nil {
			t.Errorf("n=%d: %v", n, err)
		}
	}
}
