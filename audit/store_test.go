package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/handlers"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/projections"
	"github.com/onboard/onboard/projections/projectiontest"
)

type testDB struct {
	url   string
	store *postgres.Store
}

func newTestDB(t testing.TB) testDB {
	t.Helper()
	url := pgtest.NewMigratedDatabase(t)
	store, err := postgres.Open(context.Background(), url, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return testDB{url: url, store: store}
}

// superuser runs sql with the events table's immutability triggers off, as
// an attacker with superuser rights (or a careless DBA) would.
func (db testDB) superuser(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE events DISABLE TRIGGER USER`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%d rows affected, want 1", tag.RowsAffected())
		}
		_, err = tx.Exec(ctx, `ALTER TABLE events ENABLE TRIGGER USER`)
		return err
	})
	if err != nil {
		t.Fatalf("superuser %q: %v", sql, err)
	}
}

// appendHistory appends a recorded history to the store as its commands
// did: each leader event with the followers that conclude it in one append.
func appendHistory(t testing.TB, store eventstore.Appender, h History) {
	t.Helper()
	ctx := context.Background()
	stream := audit.CustomerStreamID(h.CustomerID)
	var batch []eventstore.NewEvent
	version := 0
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if _, err := store.Append(ctx, stream, eventstore.ExpectedVersion(version), batch); err != nil {
			t.Fatalf("%s: append: %v", h.Name, err)
		}
		version += len(batch)
		batch = nil
	}
	for i, se := range h.Events {
		if se.Type != domain.TypeOnboardingCompleted && se.Type != domain.TypeCancelled {
			flush()
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, se.Data); err != nil {
			t.Fatal(err)
		}
		actor := "system:process"
		if i == 0 {
			actor = "client:shop"
		}
		batch = append(batch, eventstore.NewEvent{
			ID: uuid.Must(uuid.NewV7()), Type: se.Type, SchemaVersion: domain.SchemaVersion(se.Type),
			Data: compact.Bytes(), Metadata: eventstore.Metadata{Actor: actor, CorrelationID: "corr-" + h.Name},
		})
	}
	flush()
}

// lastCommitted is the cursor of the last committed event, safe or not:
// what a reader that wants everything committed so far reads up to.
func (db testDB) lastCommitted(t testing.TB) eventstore.Cursor {
	t.Helper()
	var c eventstore.Cursor
	err := db.store.Pool().QueryRow(context.Background(),
		`SELECT transaction_id, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&c.TransactionID, &c.Position)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitSafe waits until every committed event is below the safe horizon, for
// code under test that reads the log only as far as it is safe (projection
// rebuilds): transactions of other tests in the cluster hold it back.
func (db testDB) waitSafe(t testing.TB) {
	t.Helper()
	target := db.lastCommitted(t)
	for {
		head, err := db.store.Head(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if head.Compare(target) >= 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func seedGolden(t testing.TB, db testDB) map[string]History {
	t.Helper()
	out := map[string]History{}
	for _, h := range loadHistories(t) {
		appendHistory(t, db.store, h)
		out[h.Name] = h
	}
	return out
}

func TestStreamIDMatchesHandlers(t *testing.T) {
	id := uuid.Must(uuid.NewV7())
	if audit.CustomerStreamID(id) != handlers.StreamID(id) {
		t.Fatalf("audit %q, handlers %q", audit.CustomerStreamID(id), handlers.StreamID(id))
	}
}

// TestVerifyIntactStore verifies a store written as production writes it:
// no problem, every event and stream counted, however small the pages.
func TestVerifyIntactStore(t *testing.T) {
	ctx := context.Background()
	db := newTestDB(t)
	golden := seedGolden(t, db)
	ids, err := projectiontest.Seed(ctx, db.store, projectiontest.Config{Customers: 60, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	var events int64
	if err := db.store.Pool().QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	for _, page := range []int{1, 7, 10000} {
		rep, err := audit.VerifyAll(ctx, db.store, audit.VerifyOptions{PageSize: page, Until: db.lastCommitted(t)})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Err() != nil || len(rep.Problems) != 0 {
			t.Fatalf("page %d: %v: %+v", page, rep.Err(), rep.Problems)
		}
		if rep.Events != events || rep.Streams != len(ids)+len(golden) {
			t.Fatalf("page %d: %d events in %d streams, want %d in %d", page, rep.Events, rep.Streams, events, len(ids)+len(golden))
		}
	}
	for _, id := range ids[:5] {
		rep, err := audit.VerifyStream(ctx, db.store, audit.CustomerStreamID(id))
		if err != nil || rep.Err() != nil {
			t.Fatalf("%s: %v %v", id, err, rep.Problems)
		}
	}
	if _, err := audit.VerifyStream(ctx, db.store, audit.CustomerStreamID(uuid.Must(uuid.NewV7()))); !errors.Is(err, audit.ErrCustomerNotFound) {
		t.Fatalf("unknown customer: %v, want ErrCustomerNotFound", err)
	}
}

// TestVerifyNamesExactlyWhatIsWrong tampers with several streams in
// several ways and expects verify to name each one, at its version, and
// nothing else.
func TestVerifyNamesExactlyWhatIsWrong(t *testing.T) {
	ctx := context.Background()
	db := newTestDB(t)
	golden := seedGolden(t, db)
	stream := func(name string) string { return audit.CustomerStreamID(golden[name].CustomerID) }

	// Altered data, as a fraudster hiding a failed billing attempt would.
	db.superuser(t, `UPDATE events SET data = '{"step":"billing","attempt":1,"error_class":"transient","message":"ok"}'
		WHERE stream_id = $1 AND version = 6`, stream("transient_retries"))
	// Altered metadata: another actor.
	db.superuser(t, `UPDATE events SET actor = 'ops@example.com' WHERE stream_id = $1 AND version = 4`, stream("happy"))
	// A deleted event in the middle of a stream.
	db.superuser(t, `DELETE FROM events WHERE stream_id = $1 AND version = 3`, stream("paused_retry"))
	// The first event deleted.
	db.superuser(t, `DELETE FROM events WHERE stream_id = $1 AND version = 1`, stream("rejected"))
	// A rewritten event whose own hash was recomputed to match: the next
	// event's link gives it away.
	db.superuser(t, `UPDATE events SET hash = sha256(hash) WHERE stream_id = $1 AND version = 5`, stream("skip_crm_and_welcome"))
	// A correctly chained event that today's state machine forbids: a step
	// requested after the journey completed.
	late := golden["late_result_ignored"]
	if _, err := db.store.Append(ctx, stream("late_result_ignored"), eventstore.ExpectedVersion(len(late.Events)), []eventstore.NewEvent{{
		ID: uuid.Must(uuid.NewV7()), Type: domain.TypeStepRequested, SchemaVersion: 1,
		Data: json.RawMessage(`{"step":"welcome","attempt":2,"attempt_group":1,"idempotency_key":"k"}`),
	}}); err != nil {
		t.Fatal(err)
	}
	// An event type no code can read.
	cancelled := golden["cancel_before_effects"]
	if _, err := db.store.Append(ctx, stream("cancel_before_effects"), eventstore.ExpectedVersion(len(cancelled.Events)), []eventstore.NewEvent{{
		ID: uuid.Must(uuid.NewV7()), Type: "customer.teleported.v1", SchemaVersion: 1, Data: json.RawMessage(`{}`),
	}}); err != nil {
		t.Fatal(err)
	}

	want := []audit.Problem{
		{StreamID: stream("transient_retries"), Version: 6, Kind: audit.ProblemContent},
		{StreamID: stream("happy"), Version: 4, Kind: audit.ProblemContent},
		{StreamID: stream("paused_retry"), Version: 3, Kind: audit.ProblemVersionGap},
		{StreamID: stream("rejected"), Version: 1, Kind: audit.ProblemVersionGap},
		{StreamID: stream("skip_crm_and_welcome"), Version: 5, Kind: audit.ProblemContent},
		{StreamID: stream("late_result_ignored"), Version: int64(len(late.Events) + 1), Kind: audit.ProblemTransition},
		{StreamID: stream("cancel_before_effects"), Version: int64(len(cancelled.Events) + 1), Kind: audit.ProblemDecode},
	}
	key := func(p audit.Problem) string { return fmt.Sprintf("%s@%d:%s", p.StreamID, p.Version, p.Kind) }
	wantKeys := make([]string, len(want))
	for i, p := range want {
		wantKeys[i] = key(p)
	}
	slices.Sort(wantKeys)

	rep, err := audit.VerifyAll(ctx, db.store, audit.VerifyOptions{PageSize: 5, Until: db.lastCommitted(t)})
	if err != nil {
		t.Fatal(err)
	}
	gotKeys := make([]string, len(rep.Problems))
	for i, p := range rep.Problems {
		gotKeys[i] = key(p)
	}
	slices.Sort(gotKeys)
	if !slices.Equal(gotKeys, wantKeys) {
		t.Fatalf("problems:\n got %v\nwant %v\n(%+v)", gotKeys, wantKeys, rep.Problems)
	}
	if rep.Failed != len(want) || !errors.Is(rep.Err(), audit.ErrVerifyFailed) {
		t.Fatalf("failed %d, err %v", rep.Failed, rep.Err())
	}

	// One stream at a time finds the same, and agrees with the store's own
	// chain verifier on the chain problems.
	for _, p := range want {
		one, err := audit.VerifyStream(ctx, db.store, p.StreamID)
		if err != nil {
			t.Fatal(err)
		}
		if len(one.Problems) != 1 || key(one.Problems[0]) != key(p) {
			t.Errorf("VerifyStream(%s) = %+v, want %s", p.StreamID, one.Problems, key(p))
		}
		var ie *eventstore.IntegrityError
		chainErr := db.store.Verify(ctx, p.StreamID)
		switch p.Kind {
		case audit.ProblemContent, audit.ProblemVersionGap, audit.ProblemHashChain:
			if !errors.As(chainErr, &ie) || ie.Version != p.Version {
				t.Errorf("store.Verify(%s) = %v, want version %d", p.StreamID, chainErr, p.Version)
			}
		default:
			if chainErr != nil {
				t.Errorf("store.Verify(%s) = %v, want an intact chain", p.StreamID, chainErr)
			}
		}
	}
}

// TestVerifyReportsBrokenLink recomputes a tampered event's hash in Go so
// that the event matches itself: only the link from the next one breaks.
func TestVerifyReportsBrokenLink(t *testing.T) {
	ctx := context.Background()
	db := newTestDB(t)
	golden := seedGolden(t, db)
	stream := audit.CustomerStreamID(golden["happy"].CustomerID)
	envs, err := db.store.ReadStream(ctx, stream, 1)
	if err != nil {
		t.Fatal(err)
	}
	e := envs[2]
	e.Metadata.Actor = "mallory"
	db.superuser(t, `UPDATE events SET actor = $3, hash = $4 WHERE stream_id = $1 AND version = $2`,
		stream, e.Version, e.Metadata.Actor, eventstore.Hash(e.PrevHash, e))
	rep, err := audit.VerifyAll(ctx, db.store, audit.VerifyOptions{Until: db.lastCommitted(t)})
	if err != nil {
		t.Fatal(err)
	}
	want := audit.Problem{StreamID: stream, Version: e.Version + 1, Kind: audit.ProblemHashChain,
		Detail: "previous hash does not match the previous event"}
	if len(rep.Problems) != 1 || rep.Problems[0] != want {
		t.Fatalf("got %+v, want %+v", rep.Problems, want)
	}
}

func TestReplayCustomer(t *testing.T) {
	ctx := context.Background()
	db := newTestDB(t)
	golden := seedGolden(t, db)
	h := golden["paused_retry"]
	envs, err := db.store.ReadStream(ctx, audit.CustomerStreamID(h.CustomerID), 1)
	if err != nil {
		t.Fatal(err)
	}
	events := decode(t, h)
	snapshotAt := func(n int) domain.Snapshot {
		c, err := domain.FromHistory(h.CustomerID, events[:n])
		if err != nil {
			t.Fatal(err)
		}
		return c.Snapshot()
	}
	for _, n := range []int{1, 8, 11, len(events)} {
		for _, p := range []audit.Point{{Version: int64(n)}, {At: envs[n-1].RecordedAt}} {
			rep, err := audit.ReplayCustomer(ctx, db.store, h.CustomerID, p)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Timeline) != n || rep.LatestVersion != int64(len(events)) {
				t.Fatalf("%+v: %d entries (latest %d), want %d", p, len(rep.Timeline), rep.LatestVersion, n)
			}
			got, _ := json.Marshal(rep.Customer)
			want, _ := json.Marshal(snapshotAt(n))
			if !bytes.Equal(got, want) {
				t.Fatalf("%+v:\n got %s\nwant %s", p, got, want)
			}
		}
	}
	rep, err := audit.ReplayCustomer(ctx, db.store, h.CustomerID, audit.Point{})
	if err != nil {
		t.Fatal(err)
	}
	pause := rep.Timeline[8]
	if pause.Type != domain.TypePaused || pause.Reason != "quota exceeded" || pause.Actor != "system:process" ||
		pause.CorrelationID != "corr-paused_retry" || !strings.Contains(pause.Summary, "paused at tenant") {
		t.Fatalf("timeline entry 9: %+v", pause)
	}

	tests := []struct {
		name  string
		id    uuid.UUID
		point audit.Point
		want  error
	}{
		{"unknown customer", uuid.Must(uuid.NewV7()), audit.Point{}, audit.ErrCustomerNotFound},
		{"before signup", h.CustomerID, audit.Point{At: envs[0].RecordedAt.Add(-time.Second)}, audit.ErrNoSuchPoint},
		{"beyond the last version", h.CustomerID, audit.Point{Version: int64(len(events) + 1)}, audit.ErrNoSuchPoint},
		{"both", h.CustomerID, audit.Point{Version: 1, At: time.Now()}, audit.ErrNoSuchPoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := audit.ReplayCustomer(ctx, db.store, tt.id, tt.point); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestExport(t *testing.T) {
	ctx := context.Background()
	db := newTestDB(t)
	golden := seedGolden(t, db)
	h := golden["cancel_with_compensation"]

	// A customer's JSON lines carry everything its hash covers: the
	// export verifies offline.
	var buf bytes.Buffer
	n, err := audit.Export(ctx, db.store, &buf, audit.ExportOptions{Customer: h.CustomerID, Format: audit.FormatJSONL})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(h.Events)) {
		t.Fatalf("exported %d, want %d", n, len(h.Events))
	}
	var envs []eventstore.Envelope
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		prev, _ := hex.DecodeString(r.PrevHash)
		hash, _ := hex.DecodeString(r.Hash)
		envs = append(envs, eventstore.Envelope{
			ID: r.EventID, StreamID: r.StreamID, StreamType: r.StreamType, Version: r.Version, Type: r.Type,
			SchemaVersion: r.SchemaVersion, Data: r.Data, RecordedAt: r.RecordedAt, PrevHash: prev, Hash: hash,
			Metadata: eventstore.Metadata{Actor: r.Actor, CorrelationID: r.CorrelationID, CausationID: r.CausationID,
				RequestID: r.RequestID, IdempotencyKey: r.IdempotencyKey, Trace: r.Trace},
		})
	}
	if err := eventstore.VerifyChain(audit.CustomerStreamID(h.CustomerID), envs); err != nil {
		t.Fatalf("exported stream does not verify: %v", err)
	}

	// The whole store as CSV, then a time window.
	var total int
	for _, g := range golden {
		total += len(g.Events)
	}
	buf.Reset()
	if n, err = audit.Export(ctx, db.store, &buf, audit.ExportOptions{Format: audit.FormatCSV, PageSize: 7, Until: db.lastCommitted(t)}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(total) || len(rows) != total+1 || rows[0][0] != "position" {
		t.Fatalf("csv: %d events, %d rows, header %v; want %d", n, len(rows), rows[0], total)
	}
	from, to := envs[2].RecordedAt, envs[5].RecordedAt
	buf.Reset()
	if n, err = audit.Export(ctx, db.store, &buf, audit.ExportOptions{Customer: h.CustomerID, From: from, To: to, Format: audit.FormatJSONL}); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("window [%s, %s): %d events, want 3", from, to, n)
	}

	bad := []struct {
		name string
		opts audit.ExportOptions
		want error
	}{
		{"format", audit.ExportOptions{Format: "xml"}, audit.ErrBadFormat},
		{"unknown customer", audit.ExportOptions{Customer: uuid.Must(uuid.NewV7()), Format: audit.FormatCSV}, audit.ErrCustomerNotFound},
	}
	for _, tt := range bad {
		if _, err := audit.Export(ctx, db.store, &buf, tt.opts); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := audit.Export(ctx, db.store, &buf, audit.ExportOptions{Format: audit.FormatCSV, From: to, To: from}); err == nil {
		t.Error("from after to: want an error")
	}
}

// TestDiff rebuilds the read models, finds no difference, then alters the
// live models behind the projector's back and expects each alteration to
// be listed.
func TestDiff(t *testing.T) {
	ctx := context.Background()
	db := newTestDB(t)
	golden := seedGolden(t, db)
	if _, err := projectiontest.Seed(ctx, db.store, projectiontest.Config{Customers: 30, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	pool := db.store.Pool()
	p, err := projections.New(projections.Config{Pool: pool, Source: db.store, RebuildBatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	db.waitSafe(t)
	var rebuilt []string
	if err := audit.Rebuild(ctx, p, nil, func(r projections.RebuildResult) { rebuilt = append(rebuilt, r.Projection) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rebuilt, projections.Names()) {
		t.Fatalf("rebuilt %v", rebuilt)
	}
	for _, name := range projections.Names() {
		rep, err := audit.Diff(ctx, db.store, p, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Differences) != 0 || rep.Rows == 0 {
			t.Fatalf("%s after rebuild: %d rows, differences %+v", name, rep.Rows, rep.Differences)
		}
	}

	happy, rejected := golden["happy"].CustomerID, golden["rejected"].CustomerID
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE customer_summary SET state = 'paused', attempts = 9 WHERE id = $1`, happy)
	exec(`DELETE FROM customer_summary WHERE id = $1`, rejected)
	exec(`UPDATE provider_stats SET failed = failed + 2 WHERE step = 'billing'`)

	rep, err := audit.Diff(ctx, db.store, p, projections.Customers)
	if err != nil {
		t.Fatal(err)
	}
	want := []audit.Difference{
		{Key: happy.String(), Field: "state", Live: "paused", Replay: "active"},
		{Key: happy.String(), Field: "attempts", Live: "9", Replay: "1"},
		{Key: rejected.String(), Field: "row", Live: "missing", Replay: "present"},
	}
	if !slices.Equal(rep.Differences, want) {
		t.Fatalf("customers:\n got %+v\nwant %+v", rep.Differences, want)
	}
	rep, err = audit.Diff(ctx, db.store, p, projections.ProviderStats)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differences) != 1 || rep.Differences[0].Key != "billing" || rep.Differences[0].Field != "failed" {
		t.Fatalf("provider_stats: %+v", rep.Differences)
	}
	if _, err := audit.Diff(ctx, db.store, p, "nope"); !errors.Is(err, projections.ErrUnknownProjection) {
		t.Fatalf("unknown projection: %v", err)
	}
	if err := audit.Rebuild(ctx, p, []string{"nope"}, nil); !errors.Is(err, projections.ErrUnknownProjection) {
		t.Fatalf("unknown projection: %v", err)
	}
}
