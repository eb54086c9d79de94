package process

import (
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// ManagerCompensation names the process manager that undoes effects after
// a cancel; the other managers are named after their steps.
const ManagerCompensation = "compensation"

// ManagerErasure names the process manager that asks the providers to
// delete an erased customer's personal data.
const ManagerErasure = "erasure"

// Managers lists the process managers: one per step, compensation and
// erasure.
// RouteOf gives each event to at most one of them.
func Managers() []string {
	out := make([]string, 0, len(domain.Steps())+1)
	for _, s := range domain.Steps() {
		out = append(out, string(s))
	}
	return append(out, ManagerCompensation, ManagerErasure)
}

// RouteOf is the routing rule: it names the one process manager that
// reacts to the stored event env, or returns "" when none does. next is
// the event that follows env in its stream when the caller has it at hand
// (nil when not). The relay publishes env with the result as its subject's
// last token and each manager's consumer filters on its own name, so
// every event reaches at most one manager; the runner without NATS asks
// the same question (Run).
//
// A step's manager starts its step after the previous one succeeded or
// was skipped, performs its attempts, and retries, pauses and alerts for
// it; the verification manager also notifies support of a rejection.
// Some events need no reaction when their successor is known, since the
// reaction would find nothing to do:
//   - a signup or a step's success appended together with the next step's
//     request: the reaction would find the request made;
//   - the last step's success or skip appended together with the
//     completion: the reaction would find the customer active;
//   - a verification check followed by its verdict: the reaction would
//     arm a deadline for a check that is settled.
func RouteOf(env eventstore.Envelope, next *eventstore.Envelope) string {
	if env.StreamType != "customer" {
		return ""
	}
	e, err := domain.DecodeEvent(env.Type, env.Data)
	if err != nil {
		return ""
	}
	switch e.(type) {
	case domain.SignedUp:
		if appendedWith(env, next, domain.TypeStepRequested) {
			return ""
		}
	case domain.StepSucceeded:
		if appendedWith(env, next, domain.TypeStepRequested) || appendedWith(env, next, domain.TypeOnboardingCompleted) {
			return ""
		}
	case domain.StepSkipped:
		if appendedWith(env, next, domain.TypeOnboardingCompleted) {
			return ""
		}
	case domain.VerificationCheckStarted:
		// The check's next event in its stream can only be its verdict, a
		// failure, a pause or a cancel; the two verdicts settle it.
		if follows(env, next) && (next.Type == domain.TypeStepSucceeded || next.Type == domain.TypeVerificationRejected) {
			return ""
		}
	}
	return manager(e)
}

// manager names the manager that reacts to e whatever follows it.
func manager(e domain.Event) string {
	next := func(s domain.Step) string {
		if n, ok := s.Next(); ok {
			return string(n)
		}
		return string(s) // after the last step: its own manager, which finds nothing to do
	}
	switch e := e.(type) {
	case domain.SignedUp, domain.VerificationCheckStarted, domain.VerificationRejected:
		return string(domain.StepVerification)
	case domain.StepRequested:
		return string(e.Step)
	case domain.StepSucceeded:
		return next(e.Step)
	case domain.StepFailed:
		return string(e.Step)
	case domain.Paused:
		return string(e.Step)
	case domain.StepRetryRequested:
		return string(e.Step)
	case domain.Blocked:
		return string(e.Step)
	case domain.StepSkipped:
		return next(e.Step)
	case domain.CancellationRequested, domain.BillingClosed, domain.TenantDeprovisioned:
		return ManagerCompensation
	case domain.PersonalDataErased:
		return ManagerErasure
	}
	return ""
}

// follows reports whether next is the event right after env in env's
// stream.
func follows(env eventstore.Envelope, next *eventstore.Envelope) bool {
	return next != nil && next.StreamID == env.StreamID && next.Version == env.Version+1
}

// appendedWith reports whether next is an event of type typ appended in
// the same transaction right after env, on env's stream.
func appendedWith(env eventstore.Envelope, next *eventstore.Envelope, typ string) bool {
	return follows(env, next) && next.Type == typ && next.TransactionID == env.TransactionID && env.TransactionID != 0
}
