package messaging

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// wipe stops the NATS server, deletes its store and starts it empty, as
// a lost disk or volume would.
func (env *testEnv) wipe() {
	env.t.Helper()
	env.server.Shutdown()
	dir := env.server.cfg.DataDir
	entries, err := os.ReadDir(dir)
	if err != nil {
		env.t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			env.t.Fatal(err)
		}
	}
	if err := env.server.Start(); err != nil {
		env.t.Fatal(err)
	}
}

// TestRepublishFromConsumersFloor wipes NATS's store while one durable
// consumer is caught up and another has acknowledged only the first 300
// events: the relay publishes again from the lowest floor, the slow
// consumer's, not from the start of the log; the caught-up consumer is
// re-created within seconds and applies every event once.
func TestRepublishFromConsumersFloor(t *testing.T) {
	env := newTestEnv(t)
	relay, _ := env.startRelay(RelayConfig{FloorInterval: 100 * time.Millisecond})
	env.startRouter(RouterConfig{AckWait: 5 * time.Second}, func(r *Router) {
		if err := r.AddHandler(context.Background(), "fast", env.effectsHandler("fast")); err != nil {
			t.Fatal(err)
		}
	})
	ctx := context.Background()
	first := env.appendEvents(1, 1000, 20)
	waitFor(t, "relay to reach the head", env.relayedAll(relay))
	order := env.streamEventIDs()

	// The slow consumer acknowledges the first 300 events and no more.
	sc := env.stream
	sc.setDefaults()
	slow, err := env.js.CreateOrUpdateConsumer(ctx, env.streamName(), jetstream.ConsumerConfig{
		Durable: "slow", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: sc.AllEventsFilter(),
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := slow.Fetch(300, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	if acked != 300 {
		t.Fatalf("slow consumer acknowledged %d, want 300", acked)
	}
	waitFor(t, "consumer fast to apply every event", func() (bool, error) {
		got, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'fast'`)()
		return got >= len(first), err
	})
	waitFor(t, "the slow consumer's floor before its 301st event", func() (bool, error) {
		n, err := env.count(`SELECT count(*) FROM messaging_consumer_floors WHERE consumer = 'slow' AND event_id = $1`,
			uuid.MustParse(order[300]))()
		return n == 1, err
	})

	env.wipe()
	returned := time.Now()
	second := env.appendEvents(1, 200, 20)
	all := append(append([]uuid.UUID(nil), first...), second...)
	waitFor(t, "consumer fast to apply every event", func() (bool, error) {
		got, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'fast'`)()
		return got >= len(all), err
	})
	recovered := time.Since(returned)
	env.checkEffectsOnce("fast", all)

	// The new stream holds the events from the slow consumer's floor on,
	// each once: the 700 it had not acknowledged and the 200 appended since.
	var want []uuid.UUID
	for _, id := range order[300:] {
		want = append(want, uuid.MustParse(id))
	}
	want = append(want, second...)
	assertStreamHoldsOnce(t, env, want)
	t.Logf("after the wipe: the stream holds %d events of %d; consumer fast applied the new ones %v after NATS returned",
		len(env.streamEventIDs()), len(all), recovered.Round(time.Millisecond))
	// A pull to a consumer that is gone gets no answer: without heartbeats
	// asked for, the subscriber noticed only after 30s.
	if recovered > 20*time.Second {
		t.Errorf("the consumer was re-created %v after NATS returned, want a few seconds", recovered)
	}
}

// TestFloorWithoutConsumers wipes NATS's store when no consumer floor was
// ever recorded: the relay publishes the whole log again.
func TestFloorWithoutConsumers(t *testing.T) {
	env := newTestEnv(t)
	relay, _ := env.startRelay(RelayConfig{FloorInterval: 100 * time.Millisecond})
	first := env.appendEvents(1, 100, 5)
	waitFor(t, "relay to reach the head", env.relayedAll(relay))
	env.wipe()
	second := env.appendEvents(1, 50, 5)
	waitFor(t, "the stream to hold every event", func() (bool, error) {
		if _, err := env.js.Stream(context.Background(), env.streamName()); err != nil {
			return false, nil // not created again yet
		}
		return len(env.streamEventIDs()) >= len(first)+len(second), nil
	})
	assertStreamHoldsOnce(t, env, append(first, second...))
}

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, subject string
		want             bool
	}{
		{">", "a.b", true},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{"a.*.c", "a.b.c", true},
		{"a.*", "a.b.c", false},
		{"a.b", "a.b", true},
		{"a.b.c", "a.b", false},
		{"onboarding.redrive.>", "onboarding.events.t.t.t.t", false},
	} {
		if got := subjectMatches(c.pattern, c.subject); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", c.pattern, c.subject, got, c.want)
		}
	}
}
