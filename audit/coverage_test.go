package audit_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/projections"
	"github.com/onboard/onboard/projections/projectiontest"
)

// dbRecords reads the process managers' records from their tables, as
// cmd/onboard does.
type dbRecords struct{ pool *pgxpool.Pool }

func (r dbRecords) Inbox(ctx context.Context, handlers []string) (map[string][]uuid.UUID, error) {
	rows, err := r.pool.Query(ctx, `SELECT handler, event_id FROM messaging_inbox WHERE handler = ANY($1)`, handlers)
	if err != nil {
		return nil, err
	}
	out := map[string][]uuid.UUID{}
	var (
		h  string
		id uuid.UUID
	)
	_, err = pgx.ForEachRow(rows, []any{&h, &id}, func() error {
		out[h] = append(out[h], id)
		return nil
	})
	return out, err
}

func (r dbRecords) RunnerCheckpoints(ctx context.Context) (map[string]eventstore.Cursor, error) {
	rows, err := r.pool.Query(ctx, `SELECT name, transaction_id, position FROM onboard_pm_checkpoints`)
	if err != nil {
		return nil, err
	}
	out := map[string]eventstore.Cursor{}
	var (
		name string
		c    eventstore.Cursor
	)
	_, err = pgx.ForEachRow(rows, []any{&name, &c.TransactionID, &c.Position}, func() error {
		out[name] = c
		return nil
	})
	return out, err
}

func pmInboxes() []audit.InboxConsumer {
	var out []audit.InboxConsumer
	for _, m := range process.Managers() {
		out = append(out, audit.InboxConsumer{Handler: "pm-" + m, Route: m})
	}
	return out
}

// TestCoverage: consumers that processed everything are OK; a deleted
// inbox row, a lagging or missing read-model row and a short counter are
// each reported at the position of the event they lack, and only those; a
// runner's checkpoint or the inbox's retention accounts for a missing row.
func TestCoverage(t *testing.T) {
	ctx := context.Background()
	db := newTestDB(t)
	if _, err := projectiontest.Seed(ctx, db.store, projectiontest.Config{Customers: 30, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	pool := db.store.Pool()
	p, err := projections.New(projections.Config{Pool: pool, Source: db.store})
	if err != nil {
		t.Fatal(err)
	}
	db.waitSafe(t)
	if err := audit.Rebuild(ctx, p, nil, nil); err != nil {
		t.Fatal(err)
	}
	events, err := db.store.ReadAll(ctx, eventstore.Start, 100000)
	if err != nil {
		t.Fatal(err)
	}
	// The inbox rows of consumers fed by a relay that never saw the next
	// event (the most it routes), each event processed.
	var handlers []string
	var ids []uuid.UUID
	for _, e := range events {
		if m := process.RouteOf(e, nil); m != "" {
			handlers, ids = append(handlers, "pm-"+m), append(ids, e.ID)
		}
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO messaging_inbox (handler, event_id) SELECT * FROM unnest($1::text[], $2::uuid[])`, handlers, ids)

	opts := audit.CoverageOptions{Route: process.RouteOf, Inboxes: pmInboxes(), Until: db.lastCommitted(t), PageSize: 97}
	coverage := func(opts audit.CoverageOptions) audit.CoverageReport {
		t.Helper()
		rep, err := audit.Coverage(ctx, db.store, p, dbRecords{pool}, opts)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Events != int64(len(events)) {
			t.Fatalf("read %d events, want %d", rep.Events, len(events))
		}
		return rep
	}
	rep := coverage(opts)
	if err := rep.Err(); err != nil {
		t.Fatalf("intact: %v: %+v", err, rep.Consumers)
	}
	if len(rep.Consumers) != len(projections.Names())+len(process.Managers()) {
		t.Fatalf("%d consumers: %+v", len(rep.Consumers), rep.Consumers)
	}
	last := events[len(events)-1].Cursor()
	for _, c := range rep.Consumers {
		if c.Covered == 0 || c.Pending != 0 || (c.Kind == audit.ConsumerProjection && c.Position != last) {
			t.Errorf("intact %s: %+v", c.Name, c)
		}
	}

	// The tampering: the first billing request loses its inbox row; a
	// customer's row lags by one event, another's is gone; the billing
	// request counter misses one.
	var firstBilling, lastBilling eventstore.Envelope
	versions := map[string]int64{}
	for _, e := range events {
		versions[e.StreamID] = e.Version
		if ev, err := domain.DecodeEvent(e.Type, e.Data); err == nil {
			if r, ok := ev.(domain.StepRequested); ok && r.Step == domain.StepBilling {
				if firstBilling.ID == uuid.Nil {
					firstBilling = e
				}
				lastBilling = e
			}
		}
	}
	if firstBilling.ID == lastBilling.ID {
		t.Fatal("the seed has fewer than two billing requests")
	}
	// Two customers: one whose row will lag (it has two events at least),
	// and another whose row will be gone.
	var lagging, missing eventstore.Envelope
	for _, e := range events {
		switch {
		case lagging.ID == uuid.Nil && e.Version == 2:
			lagging = e
		case missing.ID == uuid.Nil && e.Version == 1 && lagging.ID != uuid.Nil && e.StreamID != lagging.StreamID:
			missing = e
		}
	}
	exec(`DELETE FROM messaging_inbox WHERE handler = 'pm-billing' AND event_id = $1`, firstBilling.ID)
	lagID, _ := projections.CustomerIDFromStream(lagging.StreamID)
	missingID, _ := projections.CustomerIDFromStream(missing.StreamID)
	exec(`UPDATE customer_summary SET version = version - 1 WHERE id = $1`, lagID)
	exec(`DELETE FROM customer_summary WHERE id = $1`, missingID)
	exec(`UPDATE provider_stats SET requested = requested - 1 WHERE step = 'billing'`)
	lagVersion := versions[lagging.StreamID]
	var lagGap eventstore.Envelope
	for _, e := range events {
		if e.StreamID == lagging.StreamID && e.Version == lagVersion {
			lagGap = e
		}
	}
	if missing.ID == uuid.Nil || lagGap.ID == uuid.Nil {
		t.Fatal("the seed has too few customers")
	}

	rep = coverage(opts)
	var cerr *audit.CoverageGapError
	if err := rep.Err(); !errors.Is(err, audit.ErrCoverageGap) || !errors.As(err, &cerr) || cerr.Gaps != 4 || cerr.Consumers != 3 {
		t.Fatalf("tampered: %v", err)
	}
	want := map[string][]eventstore.Envelope{
		projections.Customers:     sortedByPosition(missing, lagGap),
		projections.ProviderStats: {lastBilling},
		"pm-billing":              {firstBilling},
	}
	for _, c := range rep.Consumers {
		var got []uuid.UUID
		for _, g := range c.Gaps {
			got = append(got, g.EventID)
			if g.Detail == "" || g.Position == 0 || g.StreamID == "" {
				t.Errorf("%s: gap without its place: %+v", c.Name, g)
			}
		}
		var wantIDs []uuid.UUID
		for _, e := range want[c.Name] {
			wantIDs = append(wantIDs, e.ID)
		}
		if !slices.Equal(got, wantIDs) || c.GapCount != len(wantIDs) {
			t.Errorf("%s: gaps %+v, want events %v", c.Name, c.Gaps, wantIDs)
		}
		if len(c.Gaps) > 0 && c.Gaps[0].Position != want[c.Name][0].Position {
			t.Errorf("%s: gap at %d, want %d", c.Name, c.Gaps[0].Position, want[c.Name][0].Position)
		}
	}

	// Rows older than the inbox's retention may have been pruned.
	pruned := opts
	pruned.InboxKeptSince = time.Now().Add(time.Hour)
	if c := consumer(t, coverage(pruned), "pm-billing"); c.GapCount != 0 || c.Pruned == 0 {
		t.Errorf("pruned inbox: %+v", c)
	}
	// A runner without NATS handled everything up to its checkpoint.
	exec(`INSERT INTO onboard_pm_checkpoints (name, transaction_id, position) VALUES ('process-managers', $1, $2)`,
		firstBilling.TransactionID, firstBilling.Position)
	rep = coverage(opts)
	if c := consumer(t, rep, "pm-billing"); c.GapCount != 0 {
		t.Errorf("covered by the runner: %+v", c)
	}
	if c := consumer(t, rep, "process-managers"); c.Kind != audit.ConsumerCheckpoint || c.Position != firstBilling.Cursor() || c.GapCount != 0 {
		t.Errorf("runner: %+v", c)
	}
}

func consumer(t *testing.T, rep audit.CoverageReport, name string) audit.ConsumerCoverage {
	t.Helper()
	for _, c := range rep.Consumers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no consumer %s in %+v", name, rep.Consumers)
	return audit.ConsumerCoverage{}
}

func sortedByPosition(es ...eventstore.Envelope) []eventstore.Envelope {
	slices.SortFunc(es, func(a, b eventstore.Envelope) int { return a.Cursor().Compare(b.Cursor()) })
	return es
}

// BenchmarkCoverage measures Coverage over BENCH_COVERAGE_EVENTS generated
// events (default 200,000), with rebuilt read models and every routed
// event in its consumer's inbox:
//
//	go test ./audit -run '^$' -bench Coverage -benchtime 3x
func BenchmarkCoverage(b *testing.B) {
	target := 200_000
	if s := os.Getenv("BENCH_COVERAGE_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("BENCH_COVERAGE_EVENTS: %v", err)
		}
		target = n
	}
	ctx := context.Background()
	db := newTestDB(b)
	if _, err := projectiontest.Seed(ctx, db.store, projectiontest.Config{
		Customers: target / 14, Seed: 1, Workers: 2 * runtime.GOMAXPROCS(0), WholeHistory: true,
	}); err != nil {
		b.Fatal(err)
	}
	pool := db.store.Pool()
	p, err := projections.New(projections.Config{Pool: pool, Source: db.store})
	if err != nil {
		b.Fatal(err)
	}
	db.waitSafe(b)
	if err := audit.Rebuild(ctx, p, nil, nil); err != nil {
		b.Fatal(err)
	}
	until := db.lastCommitted(b)
	var handlers []string
	var ids []uuid.UUID
	for after := eventstore.Start; after.Compare(until) < 0; {
		page, err := db.store.ReadAll(ctx, after, 10000)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range page {
			if m := process.RouteOf(e, nil); m != "" {
				handlers, ids = append(handlers, "pm-"+m), append(ids, e.ID)
			}
		}
		after = page[len(page)-1].Cursor()
	}
	if _, err := pool.Exec(ctx, `INSERT INTO messaging_inbox (handler, event_id) SELECT * FROM unnest($1::text[], $2::uuid[])`, handlers, ids); err != nil {
		b.Fatal(err)
	}
	opts := audit.CoverageOptions{Route: process.RouteOf, Inboxes: pmInboxes(), Until: until}
	var rep audit.CoverageReport
	for b.Loop() {
		if rep, err = audit.Coverage(ctx, db.store, p, dbRecords{pool}, opts); err != nil {
			b.Fatal(err)
		}
	}
	if err := rep.Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(rep.Events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
