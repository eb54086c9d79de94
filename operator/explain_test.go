package operator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/operator"
)

// timerList is the timers of the test's customers, as the worker's table
// would hold them.
type timerList map[uuid.UUID][]operator.PendingTimer

func (l timerList) TimersOf(_ context.Context, id uuid.UUID) ([]operator.PendingTimer, error) {
	return l[id], nil
}

func TestExplainDiagnoses(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	exec := func(id uuid.UUID, decide func(*domain.Customer) error) {
		t.Helper()
		if _, err := e.cmds.Execute(ctx, id, nil, commands.Meta{Actor: "system:test",
			Trace: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}, decide); err != nil {
			t.Fatal(err)
		}
	}
	// Waiting for the KYC webhook, its deadline pending.
	kyc := e.signUp(t, "kyc")
	exec(kyc, func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk-1") })
	// Its billing attempt failed, the retry pending.
	billing := e.signUp(t, "billing")
	exec(billing, func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk-2") })
	exec(billing, func(c *domain.Customer) error { return c.RecordVerdict("chk-2", true, "") })
	exec(billing, func(c *domain.Customer) error { _, err := c.RequestStep(domain.StepBilling); return err })
	exec(billing, func(c *domain.Customer) error {
		return c.RecordStepFailed(domain.StepBilling, 1, domain.ErrorTransient, "payments CreateBillingAccount: transient (status 503): provider unavailable")
	})
	// The same, but its retry timer was lost.
	lost := e.signUp(t, "lost")
	exec(lost, func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk-3") })
	// Paused.
	paused := e.signUp(t, "paused")
	e.pause(t, paused, declined)

	due := now.Add(15 * time.Minute)
	x := operator.Explainer{Events: e.store, Now: func() time.Time { return now }, Timers: timerList{
		kyc:     {{Kind: "deadline", Step: "verification", Ref: "chk-1", DueAt: due}},
		billing: {{Kind: "retry", Step: "billing", Attempt: 1, DueAt: due}},
	}}
	clock := due.UTC().Format("15:04:05")
	for _, tc := range []struct {
		name string
		id   uuid.UUID
		want []string
	}{
		{"kyc", kyc, []string{"waiting for the KYC webhook since ", "polls the provider at " + clock, "then 2 more times before pausing"}},
		{"billing", billing, []string{"billing step's attempt 1 of 5 failed", "(transient, http_503)", "retries at " + clock, "then 3 more times before pausing"}},
		{"lost timer", lost, []string{"waiting for the KYC webhook", "no deadline timer is pending", "stuck"}},
		{"paused", paused, []string{"paused at the verification step", "(card_declined)", "waits for an operator"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := x.Explain(ctx, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(got.Diagnosis, w) {
					t.Errorf("diagnosis %q lacks %q", got.Diagnosis, w)
				}
			}
			t.Logf("%s: %s", tc.name, got.Diagnosis)
		})
	}

	got, err := x.Explain(ctx, billing)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Calls) != 2 {
		t.Fatalf("calls: %+v", got.Calls)
	}
	call := got.Calls[1]
	if call.Step != "billing" || call.Provider != "payments" || call.Attempt != 1 || call.Outcome != "failed" ||
		call.IdempotencyKey != domain.IdempotencyKey(billing, domain.StepBilling, 1) || call.LatencyMS == nil || *call.LatencyMS < 0 {
		t.Errorf("billing call: %+v", call)
	}
	if got.Calls[0].Outcome != "check_started" || len(got.Timers) != 1 || len(got.Events) < 5 {
		t.Errorf("explanation: %+v", got)
	}
	if len(got.TraceIDs) != 1 || got.TraceIDs[0] != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace ids: %v", got.TraceIDs)
	}
	if _, err := x.Explain(ctx, uuid.New()); err == nil {
		t.Error("explained a customer that does not exist")
	}
}
