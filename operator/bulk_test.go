package operator_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/operator"
)

const (
	declined = "verification failed permanently: kyc StartCheck: permanent (status 402, code card_declined): request declined"
	silent   = "no verdict from the identity provider for check c-1 after 3 polls"
)

func newBulks(t *testing.T, e env, rate float64) *operator.Bulks {
	t.Helper()
	b, err := operator.NewBulks(operator.BulkConfig{Pool: e.pool, Commands: e.cmds, Records: e.store, Reads: e.proj,
		Rate: rate, Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runBulks runs an executor until the returned stop is called.
func runBulks(b *operator.Bulks) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	return func() { cancel(); <-done }
}

// TestBulkRetryRunsAtTheConfiguredRateAndShowsProgress is the bulk
// test: a bulk retry of 200 paused customers (selected by their cause among
// others paused for another) runs at the configured rate, its progress
// climbs through the values between 0 and 200, and every customer's retry
// event carries the operation's id.
func TestBulkRetryRunsAtTheConfiguredRateAndShowsProgress(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const n, rate = 200, 50.0
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = e.signUp(t, fmt.Sprintf("declined-%d", i))
		e.pause(t, ids[i], declined)
	}
	other := e.signUp(t, "silent")
	e.pause(t, other, silent)
	e.signUp(t, "busy") // verifying: no retry applies
	e.waitPaused(t, n+1)

	b := newBulks(t, e, rate)
	filter := operator.Filter{ErrorCode: "card_declined"}
	count, sample, err := b.DryRun(ctx, operator.ActionRetry, filter, 5)
	if err != nil || count != n || len(sample) != 5 {
		t.Fatalf("dry run: %d customers, sample of %d, %v", count, len(sample), err)
	}
	req := operator.BulkRequest{Action: operator.ActionRetry, Filter: filter, Reason: "card processor fixed",
		Operator: "operator:ada", IdempotencyKey: "bulk-1", Fingerprint: "fp-1"}
	op, replayed, err := b.Start(ctx, req)
	if err != nil || replayed || op.Total != n || op.Status != operator.BulkRunning || op.Rate != rate {
		t.Fatalf("start: %+v replayed %v, %v", op, replayed, err)
	}
	again, replayed, err := b.Start(ctx, req)
	if err != nil || !replayed || again.ID != op.ID {
		t.Fatalf("the same request again: %+v replayed %v, %v", again, replayed, err)
	}
	other2 := req
	other2.Fingerprint = "fp-2"
	if _, _, err := b.Start(ctx, other2); !errors.Is(err, operator.ErrKeyReused) {
		t.Fatalf("the key with another request: %v", err)
	}

	start := time.Now()
	stop := runBulks(b)
	defer stop()
	seen := map[int]bool{}
	var last operator.Bulk
	eventually(t, "the bulk retry to finish", func() bool {
		got, err := b.Get(ctx, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Done < last.Done {
			t.Fatalf("progress went back from %d to %d", last.Done, got.Done)
		}
		last = got
		seen[got.Done] = true
		return got.Status == operator.BulkDone
	})
	took := time.Since(start)
	if last.Done != n || last.Failed != 0 || last.Total != n || last.FinishedAt == nil {
		t.Fatalf("finished: %+v", last)
	}
	// The limiter lets one command through at once and then one per
	// 1/rate: 200 take at least 199/rate, however fast the machine.
	if least := time.Duration(float64(n-1) / rate * float64(time.Second)); took < least {
		t.Errorf("200 retries at %v/s took %v, less than %v", rate, took, least)
	}
	between := 0
	for d := range seen {
		if d > 0 && d < n {
			between++
		}
	}
	if between < 5 {
		t.Errorf("progress showed only %d values between 0 and %d: %v", between, n, seen)
	}
	t.Logf("200 retries at %v/s took %v; progress showed %d distinct values", rate, took, len(seen))

	for _, id := range ids {
		envs, err := e.store.ReadStream(ctx, commands.StreamID(id), 1)
		if err != nil {
			t.Fatal(err)
		}
		retries := 0
		for _, env := range envs {
			if env.Type == domain.TypeStepRetryRequested {
				retries++
				if env.Metadata.CorrelationID != op.ID.String() || env.Metadata.Actor != "operator:ada" {
					t.Errorf("customer %s: retry event metadata %+v", id, env.Metadata)
				}
			}
		}
		if retries != 1 {
			t.Errorf("customer %s: %d retry events", id, retries)
		}
	}
	if c, _ := e.cmds.Load(ctx, other); c.State() != domain.StatePaused {
		t.Errorf("the customer paused for another cause is %s", c.State())
	}
}

// TestBulkSurvivesAStopMidway: an executor stopped midway leaves the rest
// to the next one, and a target whose command committed just before the
// stop (its outcome not recorded) is counted done, not acted on again.
func TestBulkSurvivesAStopMidway(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const n = 30
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = e.signUp(t, fmt.Sprintf("cancel-%d", i))
		e.pause(t, ids[i], silent)
	}
	e.waitPaused(t, n)
	b := newBulks(t, e, 20)
	op, _, err := b.Start(ctx, operator.BulkRequest{Action: operator.ActionCancel, Filter: operator.Filter{State: "paused"},
		Reason: "launch called off", Operator: "operator:ada", IdempotencyKey: "bulk-2", Fingerprint: "fp"})
	if err != nil || op.Total != n {
		t.Fatalf("start: %+v, %v", op, err)
	}
	stop := runBulks(b)
	eventually(t, "some progress", func() bool {
		got, err := b.Get(ctx, op.ID)
		return err == nil && got.Done >= 5
	})
	stop()
	// The last target's command commits as an executor's would, with its
	// record, but its outcome is never written: the executor "crashed".
	last := ids[n-1] // targets are oldest first
	_, err = e.cmds.Execute(ctx, last, nil, commands.Meta{Actor: "operator:ada", CorrelationID: op.ID.String()},
		func(c *domain.Customer) error { return c.Cancel("operator:ada", "launch called off") },
		eventstore.WithIdempotency(eventstore.IdempotencyRecord{Scope: "bulk:" + op.ID.String(), Key: last.String(),
			Fingerprint: "cancel", StatusCode: 202, TTL: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	mid, _ := b.Get(ctx, op.ID)
	if mid.Status != operator.BulkRunning || mid.Done >= n {
		t.Fatalf("after the stop: %+v", mid)
	}
	stop = runBulks(b)
	defer stop()
	var got operator.Bulk
	eventually(t, "the operation to finish after the restart", func() bool {
		got, err = b.Get(ctx, op.ID)
		return err == nil && got.Status == operator.BulkDone
	})
	if got.Done != n || got.Failed != 0 {
		t.Fatalf("after the restart: %+v", got)
	}
	for _, id := range ids {
		envs, err := e.store.ReadStream(ctx, commands.StreamID(id), 1)
		if err != nil {
			t.Fatal(err)
		}
		cancels := 0
		for _, env := range envs {
			if env.Type == domain.TypeCancellationRequested {
				cancels++
			}
		}
		if cancels != 1 {
			t.Errorf("customer %s: %d cancellations", id, cancels)
		}
	}
}
