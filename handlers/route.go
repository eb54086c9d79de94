package handlers

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

// RoutedTo reports whether Route gives the stored event env to manager
// name. The event types a consumer filters on (ManagerEventTypes) include
// every step's events; this decides by the step inside, so that a
// consumer can decline the other steps' events before any work.
func RoutedTo(name string, env eventstore.Envelope) bool {
	return name != "" && RouteOf(env) == name
}

// RouteOf names the manager Route gives the stored event env, or "": the
// route the relay publishes it with, so that each manager's consumer is
// delivered its own events only.
func RouteOf(env eventstore.Envelope) string {
	if env.StreamType != "customer" {
		return ""
	}
	e, err := domain.DecodeEvent(env.Type, env.Data)
	if err != nil {
		return ""
	}
	return Route(e)
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
		e, err := domain.DecodeEvent(env.Type, env.Data)
		if err != nil || Route(e) != name {
			return nil // not this manager's, or undecodable (the audit verifier reports those)
		}
		return pm.Handle(ctx, env)
	}
}
