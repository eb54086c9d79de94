package operator_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/operator"
	"github.com/onboard/onboard/process"
)

// processTimers reads the worker's timer table, as cmd/onboard wires it.
type processTimers struct{ t *process.Timers }

func (p processTimers) TimersOf(ctx context.Context, id uuid.UUID) ([]operator.PendingTimer, error) {
	ts, err := p.t.Of(ctx, id)
	out := make([]operator.PendingTimer, len(ts))
	for i, t := range ts {
		out[i] = operator.PendingTimer{Kind: string(t.Kind), Step: string(t.Step), Attempt: t.Attempt, Ref: t.Ref, DueAt: t.DueAt}
	}
	return out, err
}

// TestStuckListsADroppedMessageAndALostTimer: no worker runs, so the
// signup's verification request is a dropped message; a customer whose KYC
// check started has lost its deadline timer. Both are listed once past
// their deadline, with what they wait for; a customer whose timer is
// pending, and a paused one, are not.
func TestStuckListsADroppedMessageAndALostTimer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	timers := process.NewTimers(e.pool)
	exec := func(id uuid.UUID, decide func(*domain.Customer) error) {
		t.Helper()
		if _, err := e.cmds.Execute(ctx, id, nil, metaOf("system:verification"), decide); err != nil {
			t.Fatal(err)
		}
	}
	dropped := e.signUp(t, "dropped")
	lost := e.signUp(t, "lost")
	exec(lost, func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk-lost") })
	waiting := e.signUp(t, "waiting")
	exec(waiting, func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk-waiting") })
	if err := timers.Schedule(ctx, process.Timer{CustomerID: waiting, Kind: process.TimerDeadline, Step: domain.StepVerification,
		Ref: "chk-waiting", DueAt: time.Now().Add(3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	paused := e.signUp(t, "paused")
	e.pause(t, paused, declined)
	e.waitPaused(t, 1)
	eventually(t, "the read model to show the started checks", func() bool {
		c, err := e.proj.Customer(ctx, waiting)
		return err == nil && c.Version >= 3
	})

	// Deadlines and clock are far apart, so that a slow machine cannot
	// push the customers past the deadline before "at once" below.
	deadlines, err := operator.ParseDeadlines("verifying=1h", operator.DefaultDeadlines(operator.Policy{}))
	if err != nil {
		t.Fatal(err)
	}
	d := operator.Detector{Reads: e.proj, Timers: processTimers{timers}, Deadlines: deadlines,
		Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}
	stuck, err := d.Stuck(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uuid.UUID]operator.StuckCustomer{}
	for _, s := range stuck {
		got[s.ID] = s
	}
	for _, id := range []uuid.UUID{dropped, lost} {
		s, ok := got[id]
		if !ok || s.State != "verifying" || s.WaitsFor == "" {
			t.Errorf("customer %s: listed %v as %+v", id, ok, s)
		}
	}
	for _, id := range []uuid.UUID{waiting, paused} {
		if s, ok := got[id]; ok {
			t.Errorf("customer %s is listed: %+v", id, s)
		}
	}
	if len(stuck) != 2 {
		t.Errorf("stuck: %+v", stuck)
	}

	// Without the time passing, nobody is past a deadline.
	d.Now = time.Now
	if stuck, err := d.Stuck(ctx); err != nil || len(stuck) != 0 {
		t.Errorf("stuck at once: %+v, %v", stuck, err)
	}
}

func TestDeadlines(t *testing.T) {
	d := operator.DefaultDeadlines(operator.Policy{})
	// 15m deadline, polls after at most 1s+1s and 2s+1s, and the grace.
	if got, want := d.For("verifying", "verification"), 15*time.Minute+5*time.Second+2*time.Minute; got != want {
		t.Errorf("verifying: %v, want %v", got, want)
	}
	// Five attempts: the longest backoff is 16s.
	if got, want := d.For("provisioning", "billing"), 16*time.Second+2*time.Minute; got != want {
		t.Errorf("provisioning/billing: %v, want %v", got, want)
	}
	p, err := operator.ParseDeadlines("provisioning/tenant=10m, paused=1h", d)
	if err != nil || p.For("provisioning", "tenant") != 10*time.Minute || p.For("paused", "crm") != time.Hour ||
		p.For("provisioning", "crm") != d.For("provisioning", "crm") {
		t.Errorf("parsed: %v, %v", p, err)
	}
	for _, bad := range []string{"active=1m", "verifying", "verifying=soon", "provisioning/nothing=1m"} {
		if _, err := operator.ParseDeadlines(bad, d); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
