package operator

import (
	"fmt"
	"strings"
	"time"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/projections"
)

// facts are what a diagnosis is made of.
type facts struct {
	c      *domain.Customer
	envs   []eventstore.Envelope
	events []domain.Event
	calls  []ProviderCall
	timers []PendingTimer
	dead   []DeadLetterEntry
	policy Policy
	now    time.Time
}

// diagnose says in one line what the customer waits for and what happens
// next, from its state, its last provider call and its pending timers. A
// dead letter comes first: it is what an operator must act on.
func diagnose(f facts) string {
	d := journeyDiagnosis(f)
	for _, dl := range f.dead {
		if dl.Status == "dead" {
			return fmt.Sprintf("a message is dead-lettered (%s, %s): %s; %s", dl.Handler, shortType(dl.EventType), dl.Error, d)
		}
	}
	return d
}

func journeyDiagnosis(f facts) string {
	s := f.c.Snapshot()
	switch s.State {
	case domain.StateActive:
		return "active since " + f.clock(f.lastOf(domain.TypeOnboardingCompleted))
	case domain.StateRejected:
		d := fmt.Sprintf("rejected by the identity provider at %s: %s", f.clock(f.lastOf(domain.TypeVerificationRejected)), reasonOf(f, domain.TypeVerificationRejected))
		if !s.SupportNotified {
			return d + "; support is not notified yet"
		}
		return d + "; support was notified"
	case domain.StateCancelled:
		return fmt.Sprintf("cancelled at %s: %s", f.clock(f.lastOf(domain.TypeCancelled)), s.CancelReason)
	case domain.StatePaused:
		return fmt.Sprintf("paused at the %s step since %s (%s): %s; waits for an operator to retry, skip or cancel",
			s.PausedStep, f.clock(f.lastOf(domain.TypePaused)), CauseCode(s.PauseReason), s.PauseReason)
	case domain.StateCancelling:
		return f.cancelling()
	case domain.StateVerifying, domain.StateProvisioning:
		return f.step()
	}
	return fmt.Sprintf("%s since %s: waiting for the next step to be requested", s.State, f.clock(f.envs[len(f.envs)-1].RecordedAt))
}

func (f facts) cancelling() string {
	var pending []string
	for _, s := range f.c.PendingCompensations() {
		pending = append(pending, string(s))
	}
	d := fmt.Sprintf("cancelling since %s: compensating %s", f.clock(f.lastOf(domain.TypeCancellationRequested)), strings.Join(pending, " and "))
	if len(pending) == 0 {
		d = fmt.Sprintf("cancelling since %s: waiting for a step in flight to answer before compensating", f.clock(f.lastOf(domain.TypeCancellationRequested)))
	}
	if tm, ok := f.timer("compensate", ""); ok {
		d += fmt.Sprintf("; compensation failed %d times, retries at %s", tm.Attempt, f.clock(tm.DueAt))
	}
	return d
}

// step diagnoses a customer at work on a step.
func (f facts) step() string {
	step := f.c.CurrentStep()
	provider := projections.ProviderOf(step)
	max := f.policy.maxAttempts(step)
	if step == domain.StepVerification && f.c.CheckID() != "" {
		return f.waitingForVerdict()
	}
	var last *ProviderCall
	for i := len(f.calls) - 1; i >= 0; i-- {
		if f.calls[i].Step == string(step) {
			last = &f.calls[i]
			break
		}
	}
	switch {
	case last == nil:
		return fmt.Sprintf("waiting for the %s step to be requested since %s", step, f.clock(f.envs[len(f.envs)-1].RecordedAt))
	case last.Outcome == "in_flight":
		return fmt.Sprintf("calling %s for the %s step since %s (attempt %d of %d)", provider, step, f.clock(last.RequestedAt), last.Attempt, max)
	case last.Outcome == "failed":
		d := fmt.Sprintf("the %s step's attempt %d of %d failed at %s (%s, %s)", step, last.Attempt, max, f.clock(*last.AnsweredAt), last.ErrorClass, CauseCode(last.Message))
		tm, ok := f.timer("retry", string(step))
		if !ok {
			return d + " and no retry is pending: stuck (a lost timer, or the failure was never handled)"
		}
		d += fmt.Sprintf("; retries at %s", f.clock(tm.DueAt))
		if last.Attempt+1 >= max {
			return d + ", then pauses if that fails too"
		}
		return d + fmt.Sprintf(", then %d more times before pausing", max-last.Attempt-1)
	}
	return fmt.Sprintf("waiting for the %s step to be requested since %s", step, f.clock(f.envs[len(f.envs)-1].RecordedAt))
}

// waitingForVerdict diagnoses a KYC check whose verdict has not come.
func (f facts) waitingForVerdict() string {
	d := "waiting for the KYC webhook since " + f.clock(f.lastOf(domain.TypeVerificationCheckStarted))
	tm, ok := f.timer("deadline", string(domain.StepVerification))
	if !ok {
		return d + "; no deadline timer is pending, so nothing polls the provider: stuck unless the webhook comes"
	}
	d += "; polls the provider at " + f.clock(tm.DueAt)
	if more := f.policy.VerificationPolls - tm.Attempt - 1; more > 0 {
		return d + fmt.Sprintf(", then %d more times before pausing", more)
	}
	return d + ", then pauses if it is still silent"
}

// timer returns the pending timer of kind (and step, unless empty).
func (f facts) timer(kind, step string) (PendingTimer, bool) {
	for _, t := range f.timers {
		if t.Kind == kind && (step == "" || t.Step == step) {
			return t, true
		}
	}
	return PendingTimer{}, false
}

// lastOf is the recording time of the last event of type typ, or of the
// last event when there is none.
func (f facts) lastOf(typ string) time.Time {
	for i := len(f.envs) - 1; i >= 0; i-- {
		if f.envs[i].Type == typ {
			return f.envs[i].RecordedAt
		}
	}
	return f.envs[len(f.envs)-1].RecordedAt
}

func reasonOf(f facts, typ string) string {
	for i := len(f.envs) - 1; i >= 0; i-- {
		if f.envs[i].Type == typ {
			return ReasonOf(f.events[i])
		}
	}
	return ""
}

// clock shows t in UTC, with the date only when it is not today's.
func (f facts) clock(t time.Time) string {
	t, now := t.UTC(), f.now.UTC()
	if t.Year() == now.Year() && t.YearDay() == now.YearDay() {
		return t.Format("15:04:05") + " UTC"
	}
	return t.Format("2006-01-02 15:04:05") + " UTC"
}

func shortType(t string) string {
	t = strings.TrimPrefix(t, "customer.")
	if i := strings.LastIndex(t, ".v"); i > 0 {
		t = t[:i]
	}
	return t
}
