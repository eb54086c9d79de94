package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/internal/pgtest"
)

// BenchmarkAppendThroughPool measures what the size of a pool costs the
// server: 48 clients append two events to new streams through pools of
// 4 to 50 connections, and each size reports its appends/s and the
// Postgres server's CPU time per append (when it runs on this host). It is
// the measurement behind cmd/onboard's workingConns. Run it with
//
//	go test -run '^$' -bench AppendThroughPool -benchtime 6000x ./internal/bench
func BenchmarkAppendThroughPool(b *testing.B) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(b)
	const clients = 48
	for _, conns := range []int32{4, 8, 16, 50} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			s, err := OpenStore(ctx, dbURL, conns)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			start, err := SampleCPU(ctx, s.Pool())
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			t0 := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						events := []eventstore.NewEvent{benchEvent(0), benchEvent(1)}
						if _, err := s.Append(ctx, "pool-"+uuid.NewString(), eventstore.NoStream, events); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(t0)
			b.StopTimer()
			end, err := SampleCPU(ctx, s.Pool())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
			if _, pg, local := end.Since(start); local {
				b.ReportMetric(float64(pg.Microseconds())/float64(b.N), "server-µs/append")
			}
		})
	}
}
