package audit_test

import (
	"context"
	"io"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/projections"
	"github.com/onboard/onboard/projections/projectiontest"
)

// BenchmarkAudit seeds a store with BENCH_AUDIT_EVENTS events (default
// 1,000,000; generated journeys, each customer's history in one append) and
// measures the audit operations over it:
//
//	go test ./audit -run '^$' -bench Audit -benchtime 3x
//
// The seeding runs once, outside the measurements.
func BenchmarkAudit(b *testing.B) {
	target := int64(1_000_000)
	if s := os.Getenv("BENCH_AUDIT_EVENTS"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("BENCH_AUDIT_EVENTS: %v", err)
		}
		target = n
	}
	ctx := context.Background()
	db := newTestDB(b)
	start := time.Now()
	var events int64
	for events < target {
		// Generated journeys average about 14 events.
		n := int(max((target-events)/14, 100))
		if _, err := projectiontest.Seed(ctx, db.store, projectiontest.Config{
			Customers: n, Seed: uint64(events), Workers: 2 * runtime.GOMAXPROCS(0), WholeHistory: true,
		}); err != nil {
			b.Fatal(err)
		}
		if err := db.store.Pool().QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&events); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.store.Pool().Exec(ctx, `VACUUM ANALYZE events`); err != nil {
		b.Fatal(err)
	}
	until := db.lastCommitted(b)
	b.Logf("seeded %d events in %s", events, time.Since(start).Round(time.Second))

	// The floor under verify: reading the log with nothing done per event.
	b.Run("read-all", func(b *testing.B) {
		var n int
		cpu := cpuTime(b)
		for b.Loop() {
			n = 0
			after := eventstore.Cursor{}
			for after.Compare(until) < 0 {
				page, err := db.store.ReadAll(ctx, after, 10000)
				if err != nil {
					b.Fatal(err)
				}
				if len(page) == 0 {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				n += len(page)
				after = page[len(page)-1].Cursor()
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64((cpuTime(b)-cpu).Nanoseconds())/float64(n*b.N), "cpu-ns/event")
	})

	b.Run("verify", func(b *testing.B) {
		var rep audit.Report
		cpu := cpuTime(b)
		for b.Loop() {
			var err error
			rep, err = audit.VerifyAll(ctx, db.store, audit.VerifyOptions{Until: until})
			if err != nil || rep.Err() != nil {
				b.Fatal(err, rep.Err())
			}
		}
		b.ReportMetric(float64(rep.Events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(rep.Events), "events")
		b.ReportMetric(float64((cpuTime(b)-cpu).Nanoseconds())/float64(rep.Events*int64(b.N)), "cpu-ns/event")
	})

	b.Run("export-jsonl", func(b *testing.B) {
		var n int64
		for b.Loop() {
			var err error
			n, err = audit.Export(ctx, db.store, io.Discard, audit.ExportOptions{Format: audit.FormatJSONL, Until: until})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})

	b.Run("replay-customer-at", func(b *testing.B) {
		// The customer with the longest history, replayed to its middle.
		var stream string
		if err := db.store.Pool().QueryRow(ctx, `SELECT stream_id FROM events ORDER BY version DESC LIMIT 1`).Scan(&stream); err != nil {
			b.Fatal(err)
		}
		envs, err := db.store.ReadStream(ctx, stream, 1)
		if err != nil {
			b.Fatal(err)
		}
		id, err := projections.CustomerIDFromStream(stream)
		if err != nil {
			b.Fatal(err)
		}
		at := envs[len(envs)/2].RecordedAt
		for b.Loop() {
			if _, err := audit.ReplayCustomer(ctx, db.store, id, audit.Point{At: at}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(envs)), "stream-events")
	})

	b.Run("rebuild-customers", func(b *testing.B) {
		benchRebuild(b, db, projections.Customers, events)
	})
	b.Run("rebuild-provider-stats", func(b *testing.B) {
		benchRebuild(b, db, projections.ProviderStats, events)
	})
	// After the rebuilds, the live read models are complete.
	b.Run("diff-customers", func(b *testing.B) {
		p, err := projections.New(projections.Config{Pool: db.store.Pool(), Source: db.store})
		if err != nil {
			b.Fatal(err)
		}
		var rep audit.DiffReport
		for b.Loop() {
			if rep, err = audit.Diff(ctx, db.store, p, projections.Customers); err != nil {
				b.Fatal(err)
			}
			if len(rep.Differences) != 0 {
				b.Fatalf("%d differences, first %+v", len(rep.Differences), rep.Differences[0])
			}
		}
		b.ReportMetric(float64(rep.Rows)*float64(b.N)/b.Elapsed().Seconds(), "customers/s")
	})
}

// cpuTime is the process's user and system CPU time so far: on a shared
// machine, the client's CPU per event says more than the wall clock.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchRebuild(b *testing.B, db testDB, name string, events int64) {
	ctx := context.Background()
	p, err := projections.New(projections.Config{Pool: db.store.Pool(), Source: db.store})
	if err != nil {
		b.Fatal(err)
	}
	var res projections.RebuildResult
	for b.Loop() {
		if res, err = p.Rebuild(ctx, name); err != nil {
			b.Fatal(err)
		}
	}
	if res.Events != events {
		b.Logf("rebuild read %d of %d events (the safe horizon was held back)", res.Events, events)
	}
	b.ReportMetric(float64(res.Events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkChecker measures the verification of events already in memory:
// hashing, decoding and the state machine, without the database.
func BenchmarkChecker(b *testing.B) {
	ctx := context.Background()
	db := newTestDB(b)
	if _, err := projectiontest.Seed(ctx, db.store, projectiontest.Config{Customers: 2000, Seed: 1, WholeHistory: true}); err != nil {
		b.Fatal(err)
	}
	var events []eventstore.Envelope
	after := eventstore.Cursor{}
	until := db.lastCommitted(b)
	for after.Compare(until) < 0 {
		page, err := db.store.ReadAll(ctx, after, 10000)
		if err != nil {
			b.Fatal(err)
		}
		if len(page) == 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		events = append(events, page...)
		after = page[len(page)-1].Cursor()
	}
	b.ResetTimer()
	for b.Loop() {
		c := audit.NewChecker(0)
		for _, e := range events {
			c.Add(e)
		}
		if rep := c.Finish(); rep.Err() != nil {
			b.Fatal(rep.Problems)
		}
	}
	b.ReportMetric(float64(len(events))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
