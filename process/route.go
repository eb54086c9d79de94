package process

import (
	"context"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// ManagerCompensation names the process manager that undoes effects after
// a cancel; the other managers are named after their steps.
const ManagerCompensation = "compensation"

// Managers lists the process managers: one per step, and compensation.
// Each can run as its own durable consumer (see ForManager).
func Managers() []string {
	out := make([]string, 0, len(domain.Steps())+1)
	for _, s := range domain.Steps() {
		out = append(out, string(s))
	}
	return append(out, ManagerCompensation)
}

// Route names the one process manager that reacts to e, or "" when none
// does. A step's manager starts its step after the previous one succeeded
// or was skipped, performs its attempts, and retries, pauses and alerts for
// it; the verification manager also notifies support of a rejection.
func Route(e domain.Event) string {
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
	case domain.StepSkipped:
		return next(e.Step)
	case domain.CancellationRequested, domain.BillingClosed, domain.TenantDeprovisioned:
		return ManagerCompensation
	}
	return ""
}

// ManagerEventTypes lists the event types a manager may react to, so that
// its consumer is not even delivered the others (Route still decides, from
// the event's step, which of them concern it).
func ManagerEventTypes(name string) []string {
	if name == ManagerCompensation {
		return []string{domain.TypeCancellationRequested, domain.TypeBillingClosed, domain.TypeTenantDeprovisioned}
	}
	types := []string{domain.TypeStepRequested, domain.TypeStepSucceeded, domain.TypeStepFailed, domain.TypePaused,
		domain.TypeStepRetryRequested, domain.TypeStepSkipped}
	if domain.Step(name) == domain.StepVerification {
		types = append(types, domain.TypeSignedUp, domain.TypeVerificationCheckStarted, domain.TypeVerificationRejected)
	}
	return types
}

// RouteNone is the route of an event that needs no reaction: no manager's
// consumer filters on it.
const RouteNone = "none"

// RoutedTo reports whether RouteOf gives the stored event env, followed in
// the log by next (nil when not known), to manager name. The event types a
// consumer filters on (ManagerEventTypes) include every step's events;
// with next nil this decides by the step inside, so that a consumer can
// decline the other steps' events before any work.
func RoutedTo(name string, env eventstore.Envelope, next *eventstore.Envelope) bool {
	return name != "" && RouteOf(env, next) == name
}

// RouteOf names the manager Route gives the stored event env, RouteNone,
// or "": the route the relay publishes it with, so that each manager's
// consumer is delivered its own events only. next is the event that
// follows env in its stream, when the caller has it at hand (nil when
// not). Some events need no reaction when their successor is known, since
// the reaction would find nothing to do:
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
			return RouteNone
		}
	case domain.StepSucceeded:
		if appendedWith(env, next, domain.TypeStepRequested) || appendedWith(env, next, domain.TypeOnboardingCompleted) {
			return RouteNone
		}
	case domain.StepSkipped:
		if appendedWith(env, next, domain.TypeOnboardingCompleted) {
			return RouteNone
		}
	case domain.VerificationCheckStarted:
		// The check's next event in its stream can only be its verdict, a
		// failure, a pause or a cancel; the two verdicts settle it.
		if follows(env, next) && (next.Type == domain.TypeStepSucceeded || next.Type == domain.TypeVerificationRejected) {
			return RouteNone
		}
	}
	return Route(e)
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

// ForManager returns the handler of one process manager: it reacts only to
// the events Route gives it, so that every manager can be a durable
// consumer of the whole event stream and each event still causes one
// reaction.
func (pm *ProcessManager) ForManager(name string) func(ctx context.Context, env eventstore.Envelope) error {
	return func(ctx context.Context, env eventstore.Envelope) error {
		if env.StreamType != "customer" {
			return nil
		}
		id, err := ParseStreamID(env.StreamID)
		if err != nil {
			return nil // not a customer stream: nothing to do
		}
		e, err := domain.DecodeEvent(env.Type, env.Data)
		if err != nil || Route(e) != name {
			return nil // not this manager's, or undecodable (the audit verifier reports those)
		}
		return pm.react(ctx, id, env, e)
	}
}
