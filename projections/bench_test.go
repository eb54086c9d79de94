package projections_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/projections"
	"github.com/onboard/onboard/projections/projectiontest"
)

// benchCustomers is how many customers the benchmarks sign up;
// ONBOARD_BENCH_CUSTOMERS overrides it. 82,000 journeys make about
// 1,000,000 events.
func benchCustomers(b *testing.B, def int) int {
	if v, err := strconv.Atoi(os.Getenv("ONBOARD_BENCH_CUSTOMERS")); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkRebuildCustomers rebuilds the customer summary from the whole
// log (goal: at least 50,000 events/s over 1,000,000 events). Run it with
// -benchtime=1x: one rebuild is long enough to measure.
func BenchmarkRebuildCustomers(b *testing.B) {
	e := newEnv(b, nil)
	ctx := context.Background()
	start := time.Now()
	if _, err := projectiontest.Seed(ctx, e.store, projectiontest.Config{
		Customers: benchCustomers(b, 82000), Seed: 42, Workers: 8, WholeHistory: true,
	}); err != nil {
		b.Fatal(err)
	}
	var events int64
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&events); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d events in %v", events, time.Since(start).Round(time.Millisecond))
	// The ceiling: reading the log alone, in the rebuild's batch size.
	readStart := time.Now()
	var read int64
	after := eventstore.Start
	for {
		batch, err := e.store.ReadAll(ctx, after, 5000)
		if err != nil {
			b.Fatal(err)
		}
		read += int64(len(batch))
		if len(batch) < 5000 {
			break
		}
		after = batch[len(batch)-1].Cursor()
	}
	readRate := float64(read) / time.Since(readStart).Seconds()
	var total int64
	b.ResetTimer()
	for b.Loop() {
		res, err := e.proj.Rebuild(ctx, projections.Customers)
		if err != nil {
			b.Fatal(err)
		}
		total += res.Events
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(events), "events")
	b.ReportMetric(readRate, "read-only-events/s")
}
