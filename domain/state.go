package domain

import "fmt"

// State is where a customer is in the onboarding journey. It is a closed
// enum: the zero value is not a state, and ParseState rejects anything that
// is not one of the constants below.
type State string

// The states of the journey (README.md, "The journey"; `onboard states`).
const (
	StatePending      State = "pending"
	StateVerifying    State = "verifying"
	StateVerified     State = "verified"
	StateProvisioning State = "provisioning"
	StateActive       State = "active"
	StateRejected     State = "rejected"
	StatePaused       State = "paused"
	StateCancelling   State = "cancelling"
	StateCancelled    State = "cancelled"
)

// States lists every state in journey order.
func States() []State {
	return []State{
		StatePending, StateVerifying, StateVerified, StateProvisioning, StateActive,
		StateRejected, StatePaused, StateCancelling, StateCancelled,
	}
}

// Terminal reports whether no command can move a customer out of s.
func (s State) Terminal() bool {
	return s == StateActive || s == StateRejected || s == StateCancelled
}

// Valid reports whether s is one of the declared states.
func (s State) Valid() bool {
	for _, known := range States() {
		if s == known {
			return true
		}
	}
	return false
}

// ParseState returns the State named by s, or an error naming the input.
func ParseState(s string) (State, error) {
	if st := State(s); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("unknown state %q", s)
}

// Step is one stage of onboarding that calls an external service.
type Step string

// The steps, in the order a customer goes through them.
const (
	StepVerification Step = "verification"
	StepBilling      Step = "billing"
	StepTenant       Step = "tenant"
	StepCRM          Step = "crm"
	StepWelcome      Step = "welcome"
)

// Steps lists every step in journey order.
func Steps() []Step {
	return []Step{StepVerification, StepBilling, StepTenant, StepCRM, StepWelcome}
}

// Valid reports whether s is one of the declared steps.
func (s Step) Valid() bool {
	return s.index() >= 0
}

// ParseStep returns the Step named by s, or an error naming the input.
func ParseStep(s string) (Step, error) {
	if st := Step(s); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("unknown step %q", s)
}

// Next returns the step after s, and false after the last one.
func (s Step) Next() (Step, bool) {
	steps := Steps()
	i := s.index()
	if i < 0 || i+1 >= len(steps) {
		return "", false
	}
	return steps[i+1], true
}

// Provider names the external service that serves the step (the names
// package providers uses), or "unknown".
func (s Step) Provider() string {
	switch s {
	case StepVerification:
		return "kyc"
	case StepBilling:
		return "payments"
	case StepTenant:
		return "provisioning"
	case StepCRM:
		return "crm"
	case StepWelcome:
		return "email"
	}
	return "unknown"
}

// Skippable reports whether an operator may skip the step: only steps whose
// absence leaves a working, billed account (the CRM record and the welcome
// email) can be skipped.
func (s Step) Skippable() bool {
	return s == StepCRM || s == StepWelcome
}

// Compensable reports whether the step's effect must be undone when the
// customer is cancelled: the billing account is closed and the tenant
// deprovisioned. A CRM record and a sent email stay as they are.
func (s Step) Compensable() bool {
	return s == StepBilling || s == StepTenant
}

func (s Step) index() int {
	for i, known := range Steps() {
		if s == known {
			return i
		}
	}
	return -1
}

// ErrorClass says whether a failed call may succeed when tried again.
type ErrorClass string

// The error classes of a failed step attempt.
const (
	ErrorTransient ErrorClass = "transient"
	ErrorPermanent ErrorClass = "permanent"
)

// Valid reports whether c is one of the declared classes.
func (c ErrorClass) Valid() bool {
	return c == ErrorTransient || c == ErrorPermanent
}

// Plan is the subscription a customer signs up for; a closed set.
type Plan string

// The plans on offer.
const (
	PlanStarter    Plan = "starter"
	PlanGrowth     Plan = "growth"
	PlanEnterprise Plan = "enterprise"
)

// Plans lists every plan.
func Plans() []Plan {
	return []Plan{PlanStarter, PlanGrowth, PlanEnterprise}
}

// Valid reports whether p is one of the declared plans.
func (p Plan) Valid() bool {
	for _, known := range Plans() {
		if p == known {
			return true
		}
	}
	return false
}
