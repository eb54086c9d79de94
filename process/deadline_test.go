package process_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers"
)

// TestDeadlineOnlyWhileTheVerdictIsAwaited: the reaction to a started
// check schedules its deadline, unless this process already saw the
// verdict recorded (the webhook beat the check's own event).
func TestDeadlineOnlyWhileTheVerdictIsAwaited(t *testing.T) {
	ctx := context.Background()
	pm, cmds, timers, store := newManager(t, func(p string) providers.Config { return providers.Config{BaseURL: "http://127.0.0.1:1/" + p} })
	started := func(n int, approved bool) (uuid.UUID, eventstore.Envelope) {
		t.Helper()
		d := details
		d.Email = fmt.Sprintf("check%d@example.com", n)
		res, err := cmds.SignUp(ctx, d, commands.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		id, check := res.CustomerID, fmt.Sprintf("chk_%d", n)
		for _, decide := range []func(c *domain.Customer) error{
			func(c *domain.Customer) error { return c.RecordCheckStarted(1, check) },
		} {
			if _, err := cmds.Execute(ctx, id, nil, commands.Meta{}, decide); err != nil {
				t.Fatal(err)
			}
		}
		envs, err := store.ReadStream(ctx, commands.StreamID(id), 3)
		if err != nil || len(envs) != 1 || envs[0].Type != domain.TypeVerificationCheckStarted {
			t.Fatalf("the check's event: %+v, %v", envs, err)
		}
		if approved {
			if _, err := cmds.Execute(ctx, id, nil, commands.Meta{}, func(c *domain.Customer) error { return c.RecordVerdict(check, true, "") }); err != nil {
				t.Fatal(err)
			}
		}
		return id, envs[0]
	}
	awaited, awaitedEvent := started(1, false)
	decided, decidedEvent := started(2, true)
	for _, env := range []eventstore.Envelope{awaitedEvent, decidedEvent} {
		if err := pm.Handle(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	pending, err := timers.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadlines := map[uuid.UUID]bool{}
	for _, tm := range pending {
		if tm.Kind == process.TimerDeadline {
			deadlines[tm.CustomerID] = true
		}
	}
	if !deadlines[awaited] {
		t.Errorf("no deadline for the check whose verdict is awaited")
	}
	if deadlines[decided] {
		t.Errorf("a deadline for a check whose verdict was already recorded")
	}
}
