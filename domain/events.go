package domain

import "time"

// Event is an immutable fact about one customer, named in the past tense.
// Its type name is stable and versioned (customer.signed_up.v1) and does not
// depend on the Go type's name, so Go code can be renamed without breaking
// stored history.
type Event interface {
	// EventType returns the stable, versioned type name.
	EventType() string
	isEvent()
}

// The stable type names of the events, as stored and published.
const (
	TypeSignedUp                 = "customer.signed_up.v1"
	TypeStepRequested            = "customer.step_requested.v1"
	TypeVerificationCheckStarted = "customer.verification_check_started.v1"
	TypeStepSucceeded            = "customer.step_succeeded.v1"
	TypeStepFailed               = "customer.step_failed.v1"
	TypeVerificationRejected     = "customer.verification_rejected.v1"
	TypeSupportNotified          = "customer.support_notified.v1"
	TypePaused                   = "customer.paused.v1"
	TypeStepRetryRequested       = "customer.step_retry_requested.v1"
	TypeStepSkipped              = "customer.step_skipped.v1"
	TypeCancellationRequested    = "customer.cancellation_requested.v1"
	TypeBillingClosed            = "customer.billing_closed.v1"
	TypeTenantDeprovisioned      = "customer.tenant_deprovisioned.v1"
	TypeCancelled                = "customer.cancelled.v1"
	TypeOnboardingCompleted      = "customer.onboarding_completed.v1"
	TypeResultIgnored            = "customer.result_ignored.v1"
	TypeBlocked                  = "customer.blocked.v1"
	TypeUnblocked                = "customer.unblocked.v1"
	TypePersonalDataErased       = "customer.personal_data_erased.v1"
	TypeProviderDataDeleted      = "customer.provider_data_deleted.v1"
)

// SignedUp starts a customer's stream. Fields tagged personal hold personal
// data: they are stored encrypted under the customer's data key (personal.go).
type SignedUp struct {
	CustomerID  string `json:"customer_id"`
	Email       string `json:"email" personal:"true"`
	Company     string `json:"company" personal:"true"`
	ContactName string `json:"contact_name" personal:"true"`
	Country     string `json:"country" personal:"true"`
	Plan        Plan   `json:"plan"`
}

// StepRequested records that an external call for a step is about to be
// made. IdempotencyKey is what the provider sees on every attempt of the
// group, so a retry never causes a second effect.
type StepRequested struct {
	Step           Step   `json:"step"`
	Attempt        int    `json:"attempt"`
	AttemptGroup   int    `json:"attempt_group"`
	IdempotencyKey string `json:"idempotency_key"`
}

// VerificationCheckStarted records the KYC provider's check id; the verdict
// arrives later by webhook.
type VerificationCheckStarted struct {
	Attempt int    `json:"attempt"`
	CheckID string `json:"check_id"`
}

// StepSucceeded records a step's effect at its provider, with the
// provider's references (account id, tenant id, ...) needed later, for
// instance to compensate.
type StepSucceeded struct {
	Step    Step              `json:"step"`
	Attempt int               `json:"attempt"`
	Result  map[string]string `json:"result,omitempty"`
}

// StepFailed records one failed attempt and whether it may be retried.
type StepFailed struct {
	Step    Step       `json:"step"`
	Attempt int        `json:"attempt"`
	Class   ErrorClass `json:"error_class"`
	Message string     `json:"message"`
	// RetryNotBefore is the earliest time the provider accepts another
	// call (its Retry-After), zero when it named none. The retry's
	// backoff does not bring a retry before it.
	RetryNotBefore time.Time `json:"retry_not_before,omitzero"`
}

// VerificationRejected records the KYC provider's negative verdict; its
// reason is a KYC outcome, personal data.
type VerificationRejected struct {
	CheckID string `json:"check_id"`
	Reason  string `json:"reason" personal:"true"`
}

// SupportNotified records that support was told about a rejected customer;
// its reason is the verdict's, personal data.
type SupportNotified struct {
	Channel string `json:"channel"`
	Reason  string `json:"reason" personal:"true"`
}

// Paused records that a step stopped on a permanent error or after its
// retries ran out; an operator is alerted and decides what happens next.
type Paused struct {
	Step     Step       `json:"step"`
	Reason   string     `json:"reason"`
	Attempts int        `json:"attempts"`
	Class    ErrorClass `json:"error_class,omitempty"`
}

// StepRetryRequested records an operator's decision to try a paused step
// again with a fresh group of attempts.
type StepRetryRequested struct {
	Step         Step   `json:"step"`
	Operator     string `json:"operator"`
	Reason       string `json:"reason,omitempty"`
	AttemptGroup int    `json:"attempt_group"`
}

// StepSkipped records an operator's decision to go on without a step.
type StepSkipped struct {
	Step     Step   `json:"step"`
	Operator string `json:"operator"`
	Reason   string `json:"reason"`
}

// CancellationRequested records an operator's cancel; compensation of the
// effects that happened follows.
type CancellationRequested struct {
	Operator string `json:"operator"`
	Reason   string `json:"reason"`
	// Compensate lists the steps whose effects must be undone.
	Compensate []Step `json:"compensate,omitempty"`
}

// BillingClosed records the compensation of the billing step. Existed is
// false when the provider held no account: nothing had to be undone.
type BillingClosed struct {
	AccountID string `json:"account_id,omitempty"`
	Existed   bool   `json:"existed"`
}

// TenantDeprovisioned records the compensation of the tenant step.
type TenantDeprovisioned struct {
	TenantID string `json:"tenant_id,omitempty"`
	Existed  bool   `json:"existed"`
}

// Cancelled ends a cancelled customer's journey once compensation is done.
type Cancelled struct {
	Reason string `json:"reason"`
}

// OnboardingCompleted ends a successful journey: the customer is active.
type OnboardingCompleted struct {
	SkippedSteps []Step `json:"skipped_steps,omitempty"`
}

// ResultIgnored records a result that arrived when it no longer mattered (a
// duplicate or late webhook, a step result after a cancel): nothing changes,
// but the audit trail shows it arrived.
type ResultIgnored struct {
	Step   Step   `json:"step"`
	Source string `json:"source"`
	Reason string `json:"reason"`
}

// Blocked records that a step's provider is down (its circuit breaker is
// open), so the customer waits for it instead of trying: the attempt in
// flight was not carried out and is given back, and no retry is scheduled.
// Provider names whom the customer waits on.
type Blocked struct {
	Step     Step   `json:"step"`
	Provider string `json:"provider"`
	Attempt  int    `json:"attempt"`
	Reason   string `json:"reason"`
}

// Unblocked records that the customer stops waiting for its provider: the
// outage is over and its turn to resume came, or a probe of the provider.
type Unblocked struct {
	Step     Step   `json:"step"`
	Provider string `json:"provider"`
}

// PersonalDataErased records a data subject's erasure (GDPR Art. 17): the
// customer's data key is destroyed, so every encrypted field of its stream
// reads as Erased from then on. The state does not change.
type PersonalDataErased struct {
	Operator string `json:"operator"`
	Reason   string `json:"reason"`
}

// ProviderDataDeleted records that a provider holding the customer's
// personal data deleted it (CRM record) or suppressed it (email), after
// an erasure. Existed is false when the provider held nothing.
type ProviderDataDeleted struct {
	Provider string `json:"provider"`
	Existed  bool   `json:"existed"`
}

func (SignedUp) EventType() string                 { return TypeSignedUp }
func (StepRequested) EventType() string            { return TypeStepRequested }
func (VerificationCheckStarted) EventType() string { return TypeVerificationCheckStarted }
func (StepSucceeded) EventType() string            { return TypeStepSucceeded }
func (StepFailed) EventType() string               { return TypeStepFailed }
func (VerificationRejected) EventType() string     { return TypeVerificationRejected }
func (SupportNotified) EventType() string          { return TypeSupportNotified }
func (Paused) EventType() string                   { return TypePaused }
func (StepRetryRequested) EventType() string       { return TypeStepRetryRequested }
func (StepSkipped) EventType() string              { return TypeStepSkipped }
func (CancellationRequested) EventType() string    { return TypeCancellationRequested }
func (BillingClosed) EventType() string            { return TypeBillingClosed }
func (TenantDeprovisioned) EventType() string      { return TypeTenantDeprovisioned }
func (Cancelled) EventType() string                { return TypeCancelled }
func (OnboardingCompleted) EventType() string      { return TypeOnboardingCompleted }
func (ResultIgnored) EventType() string            { return TypeResultIgnored }
func (Blocked) EventType() string                  { return TypeBlocked }
func (Unblocked) EventType() string                { return TypeUnblocked }
func (PersonalDataErased) EventType() string       { return TypePersonalDataErased }
func (ProviderDataDeleted) EventType() string      { return TypeProviderDataDeleted }

func (SignedUp) isEvent()                 {}
func (StepRequested) isEvent()            {}
func (VerificationCheckStarted) isEvent() {}
func (StepSucceeded) isEvent()            {}
func (StepFailed) isEvent()               {}
func (VerificationRejected) isEvent()     {}
func (SupportNotified) isEvent()          {}
func (Paused) isEvent()                   {}
func (StepRetryRequested) isEvent()       {}
func (StepSkipped) isEvent()              {}
func (CancellationRequested) isEvent()    {}
func (BillingClosed) isEvent()            {}
func (TenantDeprovisioned) isEvent()      {}
func (Cancelled) isEvent()                {}
func (OnboardingCompleted) isEvent()      {}
func (ResultIgnored) isEvent()            {}
func (Blocked) isEvent()                  {}
func (Unblocked) isEvent()                {}
func (PersonalDataErased) isEvent()       {}
func (ProviderDataDeleted) isEvent()      {}
