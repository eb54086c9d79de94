package messaging

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
)

// benchEvent is a signup-sized event.
func benchEvent(i int) eventstore.NewEvent {
	return eventstore.NewEvent{
		ID:            uuid.Must(uuid.NewV7()),
		Type:          "customer.signed_up",
		SchemaVersion: 1,
		Data: json.RawMessage(fmt.Sprintf(`{"email":"user%d@example.com","company":"Acme %d","contact_name":"Ada Lovelace","country":"DE","plan":"growth"}`,
			i, i)),
		Metadata: eventstore.Metadata{Actor: "api-key:dev", CorrelationID: uuid.NewString(), RequestID: uuid.NewString()},
	}
}

// BenchmarkRelay measures, in one run, the relay's throughput from
// committed events to JetStream acks ("relay"), and the ceiling: async
// publishes of messages of the same size and headers, with Nats-Msg-Id,
// through the same window ("raw").
func BenchmarkRelay(b *testing.B) {
	env := newTestEnv(b)
	ctx := context.Background()
	if err := EnsureStreams(ctx, env.js, env.stream); err != nil {
		b.Fatal(err)
	}
	var sample *nats.Msg

	b.Run("relay", func(b *testing.B) {
		// Commit b.N events first (100 per append, as many streams), so the
		// relay's rate is measured alone.
		var last eventstore.Cursor
		for i := 0; i < b.N; i += 100 {
			n := min(100, b.N-i)
			events := make([]eventstore.NewEvent, n)
			for j := range events {
				events[j] = benchEvent(i + j)
			}
			res, err := env.store.Append(ctx, "customer-"+uuid.NewString(), eventstore.NoStream, events)
			if err != nil {
				b.Fatal(err)
			}
			last = res.Cursor()
		}
		env.mu.Lock()
		env.lastAppended = last
		env.mu.Unlock()
		b.ResetTimer()
		relay, stop := env.startRelay(RelayConfig{Name: "bench-" + uuid.NewString()[:8]})
		for {
			ok, err := env.relayedAll(relay)()
			if err != nil {
				b.Fatal(err)
			}
			if ok {
				break
			}
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		_ = stop()
		if sample == nil {
			s, err := env.js.Stream(ctx, env.streamName())
			if err != nil {
				b.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				b.Fatal(err)
			}
			m, err := s.GetMsg(ctx, info.State.LastSeq)
			if err != nil {
				b.Fatal(err)
			}
			sample = &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
		}
	})

	b.Run("raw", func(b *testing.B) {
		if sample == nil {
			b.Skip("relay sub-benchmark did not run")
		}
		js, err := jetstream.New(env.nc, jetstream.WithPublishAsyncMaxPending(4096))
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(sample.Data)))
		b.ResetTimer()
		const batch = 1000
		for i := 0; i < b.N; i += batch {
			n := min(batch, b.N-i)
			futures := make([]jetstream.PubAckFuture, 0, n)
			for range n {
				m := nats.NewMsg(sample.Subject)
				m.Data = sample.Data
				for k, v := range sample.Header {
					m.Header[k] = v
				}
				delete(m.Header, "Nats-Expected-Last-Sequence")
				m.Header.Set(HeaderMsgID, uuid.NewString())
				f, err := js.PublishMsgAsync(m)
				if err != nil {
					b.Fatal(err)
				}
				futures = append(futures, f)
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkCommitToConsumer offers 1,000 events/s (one append per
// millisecond) and reports the latency from the append's commit to the
// handler's call, p50 and p99, through the relay and a router.
func BenchmarkCommitToConsumer(b *testing.B) {
	env := newTestEnv(b)
	ctx := context.Background()
	var mu sync.Mutex
	committed := map[uuid.UUID]time.Time{}
	arrived := map[uuid.UUID]time.Time{}
	done := make(chan struct{}, 1)
	want := 0
	lag := &lagMetrics{}
	env.startRelay(RelayConfig{Metrics: lag})
	env.startRouter(RouterConfig{}, func(r *Router) {
		err := r.AddHandler(ctx, "latency", func(_ context.Context, _ pgx.Tx, e eventstore.Envelope) error {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if _, ok := arrived[e.ID]; !ok {
				arrived[e.ID] = now
				if len(arrived) == want {
					done <- struct{}{}
				}
			}
			return nil
		}, WithDeliverNew())
		if err != nil {
			b.Fatal(err)
		}
	})
	// A raw JetStream consumer measures the relay's part alone.
	published := map[uuid.UUID]time.Time{}
	scfg := env.stream
	scfg.setDefaults()
	oc, err := env.js.OrderedConsumer(ctx, env.streamName(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{scfg.AllEventsFilter()}, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := oc.Consume(func(m jetstream.Msg) {
		now := time.Now()
		id, err := uuid.Parse(m.Headers().Get(HeaderMsgID))
		if err != nil {
			return
		}
		mu.Lock()
		if _, ok := published[id]; !ok {
			published[id] = now
		}
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	mu.Lock()
	want = b.N
	mu.Unlock()
	b.ResetTimer()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := range b.N {
		<-tick.C
		e := benchEvent(i)
		if _, err := env.store.Append(ctx, "customer-"+e.ID.String(), eventstore.NoStream, []eventstore.NewEvent{e}); err != nil {
			b.Fatal(err)
		}
		// The handler may have run already; the latency is computed at
		// the end from both maps.
		now := time.Now()
		mu.Lock()
		committed[e.ID] = now
		mu.Unlock()
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatal("not every event arrived")
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	latencies := make([]time.Duration, 0, len(arrived))
	for id, t := range arrived {
		latencies = append(latencies, t.Sub(committed[id]))
	}
	slices.Sort(latencies)
	q := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	relayed := make([]time.Duration, 0, len(published))
	for id, t := range published {
		if c, ok := committed[id]; ok {
			relayed = append(relayed, t.Sub(c))
		}
	}
	slices.Sort(relayed)
	if len(relayed) > 0 {
		b.ReportMetric(float64(relayed[len(relayed)/2].Microseconds())/1000, "relay-p50-ms")
		b.ReportMetric(float64(relayed[(len(relayed)-1)*99/100].Microseconds())/1000, "relay-p99-ms")
	}
	if os.Getenv("MESSAGING_BENCH_DEBUG") != "" {
		type pt struct {
			at  time.Time
			lat time.Duration
		}
		var pts []pt
		for id, t := range arrived {
			pts = append(pts, pt{committed[id], t.Sub(committed[id])})
		}
		slices.SortFunc(pts, func(a, b pt) int { return a.at.Compare(b.at) })
		for i, p := range pts {
			if p.lat > 20*time.Millisecond {
				fmt.Println(i, p.at.Format("15:04:05.000"), p.lat)
			}
		}
	}
	b.ReportMetric(0, "ns/op")
	lag.mu.Lock()
	b.ReportMetric(float64(lag.events)/float64(max(lag.batches, 1)), "events/relay-batch")
	lag.mu.Unlock()
}

type lagMetrics struct {
	NopMetrics
	mu              sync.Mutex
	batches, events int
}

func (m *lagMetrics) EventsRelayed(n int, _ time.Duration) {
	m.mu.Lock()
	m.batches++
	m.events += n
	m.mu.Unlock()
}
