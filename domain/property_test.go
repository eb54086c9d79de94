package domain_test

import (
	"errors"
	"reflect"
	"testing"

	"pgregory.net/rapid"

	"github.com/onboard/onboard/domain"
)

// TestRandomCommandSequences drives a customer with random commands and
// arguments (valid or not) and checks, after every command, that a rejected
// command changed nothing, that every state change took an edge of the
// table, that a clone taken before the command is left as it was, and at
// the end that FromHistory of the raised events equals the customer that
// raised them.
func TestRandomCommandSequences(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c, err := domain.SignUp(custID, domain.SignupDetails{Email: "a@example.com", Company: "Co", ContactName: "A", Country: "DE", Plan: domain.PlanStarter})
		if err != nil {
			t.Fatal(err)
		}
		steps := domain.Steps()
		genStep := rapid.SampledFrom(steps)
		genCheck := rapid.SampledFrom([]string{"chk-a", "chk-b"})
		genClass := rapid.SampledFrom([]domain.ErrorClass{domain.ErrorTransient, domain.ErrorPermanent, "bogus"})
		n := rapid.IntRange(1, 60).Draw(t, "n")
		for i := 0; i < n; i++ {
			cmd := rapid.SampledFrom(domain.Commands()[1:]).Draw(t, "cmd")
			// Half the time use the arguments the customer expects, so that
			// long runs reach the later states.
			smart := rapid.Bool().Draw(t, "smart")
			step, attempt, check := genStep.Draw(t, "step"), rapid.IntRange(0, 3).Draw(t, "attempt"), genCheck.Draw(t, "check")
			if smart {
				step = c.CurrentStep()
				for _, s := range steps {
					if c.InFlight(s) != 0 {
						step = s
					}
				}
				attempt = c.InFlight(step)
				if c.CheckID() != "" {
					check = c.CheckID()
				}
			}
			before, beforeChanges := c.Snapshot(), len(c.Changes())
			clone := c.Clone()
			var err error
			switch cmd {
			case domain.CmdRequestStep:
				_, err = c.RequestStep(step)
			case domain.CmdStartCheck:
				err = c.RecordCheckStarted(attempt, check)
			case domain.CmdRecordStepSucceeded:
				if step == domain.StepVerification {
					err = c.RecordVerdict(check, true, "")
				} else {
					err = c.RecordStepSucceeded(step, attempt, map[string]string{"id": check})
				}
			case domain.CmdRecordStepFailed:
				err = c.RecordStepFailed(step, attempt, genClass.Draw(t, "class"), "boom")
			case domain.CmdRejectVerification:
				err = c.RecordVerdict(check, false, "no")
			case domain.CmdNotifySupport:
				err = c.NotifySupport("email", "r")
			case domain.CmdPause:
				err = c.Pause(step, domain.ErrorPermanent, "r")
			case domain.CmdRetryStep:
				err = c.RetryStep("op", "")
			case domain.CmdSkipStep:
				err = c.SkipStep("op", "r")
			case domain.CmdCancel:
				err = c.Cancel("op", "r")
			case domain.CmdRecordCompensation:
				if rapid.Bool().Draw(t, "billing") {
					err = c.RecordBillingClosed("a", true)
				} else {
					err = c.RecordTenantDeprovisioned("t", false)
				}
			case domain.CmdIgnoreResult:
				err = c.IgnoreResult(step, "test", "late")
			case domain.CmdBlock:
				err = c.Block(step, attempt, "payments", "breaker open")
			case domain.CmdUnblock:
				err = c.Unblock()
			case domain.CmdErasePersonalData:
				err = c.ErasePersonalData("op", "r")
			case domain.CmdRecordProviderErase:
				err = c.RecordProviderDataDeleted("crm", true)
			}
			// A clone is the customer as it was, whatever the command did
			// to the original.
			if !reflect.DeepEqual(clone.Snapshot(), before) || len(clone.Changes()) != beforeChanges || clone.Version() != c.Version() {
				t.Fatalf("%s changed a clone taken before it", cmd)
			}
			if err != nil {
				var ce *domain.CommandError
				var ve *domain.ValidationError
				if !errors.As(err, &ce) && !errors.As(err, &ve) {
					t.Fatalf("%s: untyped error %v", cmd, err)
				}
				if len(c.Changes()) != beforeChanges || !reflect.DeepEqual(before, c.Snapshot()) {
					t.Fatalf("%s failed (%v) but changed the customer", cmd, err)
				}
				continue
			}
			if !c.State().Valid() {
				t.Fatalf("%s led to invalid state %q", cmd, c.State())
			}
			{
				found := false
				for _, tr := range domain.Transitions() {
					if tr.From == before.State && tr.Command == cmd && tr.To == c.State() {
						found = true
					}
				}
				if !found {
					t.Fatalf("%s took %s -> %s, not in the table", cmd, before.State, c.State())
				}
			}
		}
		replayed, err := domain.FromHistory(custID, c.Changes())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(replayed.Snapshot(), c.Snapshot()) {
			t.Fatalf("FromHistory differs:\n got %#v\nwant %#v", replayed.Snapshot(), c.Snapshot())
		}
		// And through the codec, as the store would.
		var decoded []domain.Event
		for _, e := range c.Changes() {
			typ, _, data, err := domain.EncodeEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			d, err := domain.DecodeEvent(typ, data)
			if err != nil {
				t.Fatal(err)
			}
			decoded = append(decoded, d)
		}
		fromStore, err := domain.FromHistory(custID, decoded)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fromStore.Snapshot(), c.Snapshot()) {
			t.Fatalf("decoded history differs")
		}
	})
}
