package domain

import "testing"

// allFacts lists every combination the conditions are decided by.
func allFacts() []facts {
	var out []facts
	for _, s := range Steps() {
		out = append(out, facts{step: s}, facts{step: s, undo: true})
	}
	return out
}

// TestConditionsPickOneEdge checks that wherever a command leaves a state,
// exactly one of its edges holds, whatever the facts: a command method
// never finds two targets, nor none.
func TestConditionsPickOneEdge(t *testing.T) {
	for k, ts := range edges {
		for _, f := range allFacts() {
			n := 0
			for _, tr := range ts {
				if tr.When.holds(f) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%q --%s--> under %+v: %d edges hold, want 1", k.from, k.cmd, f, n)
			}
		}
	}
}

// leaderOf is an event that cmd raises first, about the facts f.
func leaderOf(t *testing.T, cmd Command, f facts) Event {
	t.Helper()
	switch cmd {
	case CmdSignUp:
		return SignedUp{CustomerID: "c"}
	case CmdRequestStep:
		return StepRequested{Step: f.step, Attempt: 1, AttemptGroup: 1}
	case CmdStartCheck:
		return VerificationCheckStarted{Attempt: 1, CheckID: "chk"}
	case CmdRecordStepSucceeded:
		return StepSucceeded{Step: f.step, Attempt: 1}
	case CmdRecordStepFailed:
		return StepFailed{Step: f.step, Attempt: 1, Class: ErrorTransient}
	case CmdRejectVerification:
		return VerificationRejected{CheckID: "chk"}
	case CmdNotifySupport:
		return SupportNotified{Channel: "email"}
	case CmdPause:
		return Paused{Step: f.step, Reason: "r"}
	case CmdRetryStep:
		return StepRetryRequested{Step: f.step, Operator: "op", AttemptGroup: 2}
	case CmdSkipStep:
		return StepSkipped{Step: f.step, Operator: "op", Reason: "r"}
	case CmdCancel:
		e := CancellationRequested{Operator: "op", Reason: "r"}
		if f.undo {
			e.Compensate = []Step{StepBilling}
		}
		return e
	case CmdRecordCompensation:
		return BillingClosed{Existed: true}
	case CmdIgnoreResult:
		return ResultIgnored{Step: f.step, Source: "test"}
	case CmdBlock:
		return Blocked{Step: f.step, Provider: "payments", Attempt: 1}
	case CmdUnblock:
		return Unblocked{Step: f.step, Provider: "payments"}
	case CmdErasePersonalData:
		return PersonalDataErased{Operator: "op", Reason: "r"}
	case CmdRecordProviderErase:
		return ProviderDataDeleted{Provider: "crm"}
	}
	t.Fatalf("no leader event for command %s", cmd)
	return nil
}

// TestAppliersLandOnTheTablesTargets checks, for every edge and every facts
// under which it holds, that the events its command raises (its own event,
// then the concluding one where the edge ends the journey), applied from
// the edge's state, land on the edge's target: the appliers and the table
// agree. TestEdges checks the same through the command methods.
func TestAppliersLandOnTheTablesTargets(t *testing.T) {
	for _, tr := range transitions {
		for _, f := range allFacts() {
			if !tr.When.holds(f) {
				continue
			}
			events := []Event{leaderOf(t, tr.Command, f)}
			if CommandOf(events[0]) != tr.Command {
				t.Fatalf("the leader %s names %s, not %s", events[0].EventType(), CommandOf(events[0]), tr.Command)
			}
			if tr.From != tr.To && endsJourney(tr.To) {
				c := &Customer{state: tr.To}
				events = append(events, c.conclusion(tr.To))
			}
			s := tr.From
			for _, e := range events {
				s = NextState(s, e)
			}
			if s != tr.To {
				t.Errorf("%q --%s [%s]--> %s under %+v: the appliers land in %s", tr.From, tr.Command, tr.When, tr.To, f, s)
			}
		}
	}
}
