package domain

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
)

// ErrNoHistory is returned by FromHistory for an empty or headless history:
// a customer's stream starts with SignedUp.
var ErrNoHistory = errors.New("customer history must start with signed_up")

// Customer is the aggregate of one customer's onboarding. Its fields are
// unexported: only command methods change it, by raising events that the
// appliers then apply.
type Customer struct {
	id      uuid.UUID
	version int // version of the last committed event
	changes []Event

	state            State
	profile          SignupDetails
	step             Step // the step being worked on, or next to start
	steps            [5]stepProgress
	checkID          string
	pausedStep       Step
	pauseReason      string
	lastError        string
	cancelReason     string
	supportDone      bool
	blockedOn        string // the provider the customer waits on, "" when none
	erased           bool
	providerErasures []string // providers that deleted the data after the erasure
}

type stepProgress struct {
	group       int    // attempt group: a new one per operator retry
	attempt     int    // last attempt number within the group
	key         string // idempotency key of the last request; "" when the next needs a fresh one
	inFlight    int    // attempt awaiting its result, 0 when none
	requested   bool
	succeeded   bool
	skipped     bool
	compensated bool
	failures    int
	result      map[string]string
}

// SignUp creates a customer. id comes from the caller (a UUIDv7 generator
// lives outside the domain). The details are normalized, then validated;
// an invalid field is a *ValidationError.
func SignUp(id uuid.UUID, details SignupDetails) (*Customer, error) {
	if id == uuid.Nil {
		return nil, &ValidationError{Fields: []FieldError{{Pointer: "/id", Detail: "must not be the nil UUID"}}}
	}
	d := details.Normalize()
	if err := d.Validate(); err != nil {
		return nil, err
	}
	c := &Customer{id: id}
	c.take(CmdSignUp, facts{}, SignedUp{
		CustomerID: id.String(), Email: d.Email, Company: d.Company,
		ContactName: d.ContactName, Country: d.Country, Plan: d.Plan,
	})
	return c, nil
}

// FromHistory rebuilds a customer from its stored events, oldest first. It
// only applies facts; it never checks them against the transition table,
// because history is what happened. Audit verification does that check.
func FromHistory(id uuid.UUID, history []Event) (*Customer, error) {
	if len(history) == 0 {
		return nil, ErrNoHistory
	}
	if _, ok := history[0].(SignedUp); !ok {
		return nil, fmt.Errorf("%w, got %s", ErrNoHistory, history[0].EventType())
	}
	c := &Customer{id: id}
	for _, e := range history {
		c.apply(e)
	}
	c.version = len(history)
	return c, nil
}

// Clone returns an independent copy of c: a command decided on the copy
// leaves c as it was. It is what rehydrating c's history again would
// give, without applying the history.
func (c *Customer) Clone() *Customer {
	cp := *c
	cp.changes = slices.Clone(c.changes)
	cp.providerErasures = slices.Clone(c.providerErasures)
	for i := range cp.steps {
		cp.steps[i].result = maps.Clone(c.steps[i].result)
	}
	return &cp
}

// ID returns the customer's id.
func (c *Customer) ID() uuid.UUID { return c.id }

// Version returns the version of the last committed event: the expected
// version to append Changes with.
func (c *Customer) Version() int { return c.version }

// State returns the current state, including uncommitted changes.
func (c *Customer) State() State { return c.state }

// CurrentStep returns the step being worked on, or the next to start.
func (c *Customer) CurrentStep() Step { return c.step }

// Details returns the normalized signup details.
func (c *Customer) Details() SignupDetails { return c.profile }

// Attempt returns the last attempt number of step in its current group.
func (c *Customer) Attempt(step Step) int { return c.progress(step).attempt }

// InFlight returns the attempt of step awaiting its result, or 0.
func (c *Customer) InFlight(step Step) int { return c.progress(step).inFlight }

// Result returns what the provider answered when step succeeded.
func (c *Customer) Result(step Step) map[string]string {
	return maps.Clone(c.progress(step).result)
}

// CheckID returns the KYC check awaiting its verdict, if any.
func (c *Customer) CheckID() string { return c.checkID }

// BlockedOn names the provider the customer waits on, or "".
func (c *Customer) BlockedOn() string { return c.blockedOn }

// PausedStep returns the step a paused customer stopped at.
func (c *Customer) PausedStep() Step { return c.pausedStep }

// Changes returns the events raised since the customer was loaded.
func (c *Customer) Changes() []Event { return slices.Clone(c.changes) }

// MarkCommitted records that Changes were appended to the store.
func (c *Customer) MarkCommitted() {
	c.version += len(c.changes)
	c.changes = nil
}

// PendingCompensations lists the steps whose effects must still be undone
// and can be now: requested, not yet compensated, and no attempt in flight
// (an in-flight call must report first, or a late success would escape).
func (c *Customer) PendingCompensations() []Step {
	if c.state != StateCancelling {
		return nil
	}
	var out []Step
	for _, s := range Steps() {
		p := c.progress(s)
		if s.Compensable() && p.requested && !p.compensated && p.inFlight == 0 {
			out = append(out, s)
		}
	}
	return out
}

// IdempotencyKey is the key a provider sees for every attempt of one
// attempt group of a step: retries reuse it. An operator retry (a new group)
// gets a fresh one only when the provider's answer under the old key is
// known and final: a permanent failure (stored under the key, so the old key
// would replay it) or a verification (a new KYC check has no effect to
// double). After a run of transient failures the provider may have done the
// work and lost the answer, so the new group keeps the old key, and the
// provider answers with what it did instead of doing it twice.
func IdempotencyKey(customerID uuid.UUID, step Step, group int) string {
	return fmt.Sprintf("%s:%s:%d", customerID, step, group)
}

// RequestStep starts the next attempt of step, which must be the current
// one, and returns the request the process manager carries out.
func (c *Customer) RequestStep(step Step) (StepRequested, error) {
	if err := c.allow(CmdRequestStep); err != nil {
		return StepRequested{}, err
	}
	if step != c.step {
		return StepRequested{}, c.reject(CmdRequestStep, ErrInvalidTransition, "the current step is %s, not %s", c.step, step)
	}
	if c.blockedOn != "" {
		return StepRequested{}, c.reject(CmdRequestStep, ErrInvalidTransition, "the customer waits for %s", c.blockedOn)
	}
	p := c.progress(step)
	if p.inFlight != 0 {
		return StepRequested{}, c.reject(CmdRequestStep, ErrDuplicateCommand, "attempt %d of %s is in flight", p.inFlight, step)
	}
	group := max(p.group, 1)
	key := p.key
	if key == "" {
		key = IdempotencyKey(c.id, step, group)
	}
	e := StepRequested{Step: step, Attempt: p.attempt + 1, AttemptGroup: group, IdempotencyKey: key}
	c.take(CmdRequestStep, facts{step: step}, e)
	return e, nil
}

// RecordCheckStarted records the KYC provider's check id for the
// verification attempt in flight.
func (c *Customer) RecordCheckStarted(attempt int, checkID string) error {
	if err := c.allow(CmdStartCheck); err != nil {
		return err
	}
	if checkID == "" {
		return &ValidationError{Fields: []FieldError{{Pointer: "/check_id", Detail: "is required"}}}
	}
	if c.checkID == checkID {
		return c.reject(CmdStartCheck, ErrDuplicateCommand, "check %s already recorded", checkID)
	}
	if err := c.matchInFlight(CmdStartCheck, StepVerification, attempt); err != nil {
		return err
	}
	c.take(CmdStartCheck, facts{step: StepVerification}, VerificationCheckStarted{Attempt: attempt, CheckID: checkID})
	return nil
}

// RecordVerdict applies the KYC provider's verdict on checkID: approval
// succeeds the verification step, anything else rejects the customer.
func (c *Customer) RecordVerdict(checkID string, approved bool, reason string) error {
	cmd := CmdRejectVerification
	if approved {
		cmd = CmdRecordStepSucceeded
	}
	if err := c.allow(cmd); err != nil {
		return err
	}
	if c.state != StateVerifying {
		return c.reject(cmd, ErrInvalidTransition, "no verification awaits a verdict")
	}
	if c.checkID == "" || checkID != c.checkID {
		return c.reject(cmd, ErrStaleResult, "check %q is not the one awaited", checkID)
	}
	attempt := c.progress(StepVerification).inFlight
	if attempt == 0 {
		return c.reject(cmd, ErrStaleResult, "no verification attempt in flight")
	}
	if approved {
		return c.RecordStepSucceeded(StepVerification, attempt, map[string]string{"check_id": checkID})
	}
	if reason == "" {
		reason = "rejected by the identity provider"
	}
	c.take(CmdRejectVerification, facts{step: StepVerification}, VerificationRejected{CheckID: checkID, Reason: reason})
	return nil
}

// RecordStepSucceeded records the success of the attempt in flight. A
// success of the last step completes onboarding; in cancelling, a success
// is recorded so that its effect is compensated, and cancels the customer
// when nothing is left to undo.
func (c *Customer) RecordStepSucceeded(step Step, attempt int, result map[string]string) error {
	if err := c.allow(CmdRecordStepSucceeded); err != nil {
		return err
	}
	if err := c.matchInFlight(CmdRecordStepSucceeded, step, attempt); err != nil {
		return err
	}
	if step == StepVerification && c.checkID == "" && c.state == StateVerifying {
		return c.reject(CmdRecordStepSucceeded, ErrInvalidTransition, "verification succeeds only by a verdict on a started check")
	}
	f := facts{step: step, undo: c.undoLeftAfter(step, false)}
	c.take(CmdRecordStepSucceeded, f, StepSucceeded{Step: step, Attempt: attempt, Result: maps.Clone(result)})
	return nil
}

// RecordStepFailed records a failed attempt. Whether to retry or pause is
// the process manager's decision, made with the attempt count.
func (c *Customer) RecordStepFailed(step Step, attempt int, class ErrorClass, message string) error {
	return c.RecordStepFailedRetryNotBefore(step, attempt, class, message, time.Time{})
}

// RecordStepFailedRetryNotBefore is RecordStepFailed for a provider that
// said when it accepts another call (Retry-After): the failure carries that
// time, so that whichever process schedules the retry honours it.
func (c *Customer) RecordStepFailedRetryNotBefore(step Step, attempt int, class ErrorClass, message string, notBefore time.Time) error {
	if err := c.allow(CmdRecordStepFailed); err != nil {
		return err
	}
	if !class.Valid() {
		return &ValidationError{Fields: []FieldError{{Pointer: "/error_class", Detail: "must be transient or permanent"}}}
	}
	if err := c.matchInFlight(CmdRecordStepFailed, step, attempt); err != nil {
		return err
	}
	f := facts{step: step, undo: c.undoLeftAfter(step, false)}
	c.take(CmdRecordStepFailed, f, StepFailed{Step: step, Attempt: attempt, Class: class, Message: message, RetryNotBefore: notBefore})
	return nil
}

// NotifySupport records that support was told about a rejected customer.
func (c *Customer) NotifySupport(channel, reason string) error {
	if err := c.allow(CmdNotifySupport); err != nil {
		return err
	}
	if c.supportDone {
		return c.reject(CmdNotifySupport, ErrDuplicateCommand, "support was already notified")
	}
	c.take(CmdNotifySupport, facts{}, SupportNotified{Channel: channel, Reason: reason})
	return nil
}

// Pause stops the journey at the current step, for an operator to decide.
func (c *Customer) Pause(step Step, class ErrorClass, reason string) error {
	if err := c.allow(CmdPause); err != nil {
		return err
	}
	if step != c.step {
		return c.reject(CmdPause, ErrInvalidTransition, "the current step is %s, not %s", c.step, step)
	}
	if reason == "" {
		return &ValidationError{Fields: []FieldError{{Pointer: "/reason", Detail: "is required"}}}
	}
	c.take(CmdPause, facts{step: step}, Paused{Step: step, Reason: reason, Attempts: c.progress(step).attempt, Class: class})
	return nil
}

// Block makes the customer wait for provider, which is down: the attempt
// of step in flight was not carried out (the provider's breaker refused
// it, or it failed while the provider was known to be down), so it is
// given back. The customer neither retries nor pauses until Unblock.
func (c *Customer) Block(step Step, attempt int, provider, reason string) error {
	if err := c.allow(CmdBlock); err != nil {
		return err
	}
	if provider == "" {
		return &ValidationError{Fields: []FieldError{{Pointer: "/provider", Detail: "is required"}}}
	}
	if c.blockedOn != "" {
		return c.reject(CmdBlock, ErrDuplicateCommand, "the customer already waits for %s", c.blockedOn)
	}
	if step != c.step {
		return c.reject(CmdBlock, ErrInvalidTransition, "the current step is %s, not %s", c.step, step)
	}
	if err := c.matchInFlight(CmdBlock, step, attempt); err != nil {
		return err
	}
	c.take(CmdBlock, facts{step: step}, Blocked{Step: step, Provider: provider, Attempt: attempt, Reason: reason})
	return nil
}

// Unblock ends the customer's wait for its provider; the step is then
// requested again (commands.RequestNext does it in the same append).
func (c *Customer) Unblock() error {
	if err := c.allow(CmdUnblock); err != nil {
		return err
	}
	if c.blockedOn == "" {
		return c.reject(CmdUnblock, ErrDuplicateCommand, "the customer waits for no provider")
	}
	c.take(CmdUnblock, facts{step: c.step}, Unblocked{Step: c.step, Provider: c.blockedOn})
	return nil
}

// RetryStep resumes a paused customer at its paused step, with a fresh
// attempt group (and a fresh idempotency key where IdempotencyKey says so).
func (c *Customer) RetryStep(operator, reason string) error {
	if err := c.allow(CmdRetryStep); err != nil {
		return err
	}
	if err := requireOperator(operator); err != nil {
		return err
	}
	group := c.progress(c.pausedStep).group + 1
	c.take(CmdRetryStep, facts{step: c.pausedStep}, StepRetryRequested{Step: c.pausedStep, Operator: operator, Reason: reason, AttemptGroup: group})
	return nil
}

// SkipStep goes on without the paused step, where the step allows it.
func (c *Customer) SkipStep(operator, reason string) error {
	if err := c.allow(CmdSkipStep); err != nil {
		return err
	}
	if !c.pausedStep.Skippable() {
		return c.reject(CmdSkipStep, ErrInvalidTransition, "step %s cannot be skipped", c.pausedStep)
	}
	if err := requireOperatorAndReason(operator, reason); err != nil {
		return err
	}
	c.take(CmdSkipStep, facts{step: c.pausedStep}, StepSkipped{Step: c.pausedStep, Operator: operator, Reason: reason})
	return nil
}

// Cancel ends the journey. When effects must be undone the customer waits in
// cancelling until each is compensated; otherwise it is cancelled at once.
func (c *Customer) Cancel(operator, reason string) error {
	if err := c.allow(CmdCancel); err != nil {
		return err
	}
	if err := requireOperatorAndReason(operator, reason); err != nil {
		return err
	}
	var compensate []Step
	for _, s := range Steps() {
		if p := c.progress(s); s.Compensable() && p.requested && !p.compensated {
			compensate = append(compensate, s)
		}
	}
	c.take(CmdCancel, facts{undo: len(compensate) > 0}, CancellationRequested{Operator: operator, Reason: reason, Compensate: compensate})
	return nil
}

// RecordBillingClosed records the compensation of the billing step.
func (c *Customer) RecordBillingClosed(accountID string, existed bool) error {
	return c.recordCompensation(StepBilling, BillingClosed{AccountID: accountID, Existed: existed})
}

// RecordTenantDeprovisioned records the compensation of the tenant step.
func (c *Customer) RecordTenantDeprovisioned(tenantID string, existed bool) error {
	return c.recordCompensation(StepTenant, TenantDeprovisioned{TenantID: tenantID, Existed: existed})
}

func (c *Customer) recordCompensation(step Step, e Event) error {
	if err := c.allow(CmdRecordCompensation); err != nil {
		return err
	}
	p := c.progress(step)
	switch {
	case p.compensated:
		return c.reject(CmdRecordCompensation, ErrDuplicateCommand, "%s was already compensated", step)
	case !p.requested:
		return c.reject(CmdRecordCompensation, ErrInvalidTransition, "%s was never requested", step)
	case p.inFlight != 0:
		return c.reject(CmdRecordCompensation, ErrInvalidTransition, "attempt %d of %s is still in flight", p.inFlight, step)
	}
	c.take(CmdRecordCompensation, facts{step: step, undo: c.undoLeftAfter(step, true)}, e)
	return nil
}

// IgnoreResult writes down a result that arrived when it no longer mattered,
// so the audit trail shows every webhook and late answer.
func (c *Customer) IgnoreResult(step Step, source, reason string) error {
	if err := c.allow(CmdIgnoreResult); err != nil {
		return err
	}
	c.take(CmdIgnoreResult, facts{step: step}, ResultIgnored{Step: step, Source: source, Reason: reason})
	return nil
}

// ErasePersonalData records a data subject's erasure. It is allowed once
// the journey has ended or is being undone: a customer still onboarding is
// cancelled first (commands.Erase raises both in one append).
func (c *Customer) ErasePersonalData(operator, reason string) error {
	if err := c.allow(CmdErasePersonalData); err != nil {
		return err
	}
	if c.erased {
		return c.reject(CmdErasePersonalData, ErrDuplicateCommand, "personal data already erased")
	}
	if err := requireOperatorAndReason(operator, reason); err != nil {
		return err
	}
	c.take(CmdErasePersonalData, facts{}, PersonalDataErased{Operator: operator, Reason: reason})
	return nil
}

// RecordProviderDataDeleted records that provider deleted what it held of
// an erased customer.
func (c *Customer) RecordProviderDataDeleted(provider string, existed bool) error {
	if err := c.allow(CmdRecordProviderErase); err != nil {
		return err
	}
	switch {
	case !c.erased:
		return c.reject(CmdRecordProviderErase, ErrInvalidTransition, "personal data was not erased")
	case slices.Contains(c.providerErasures, provider):
		return c.reject(CmdRecordProviderErase, ErrDuplicateCommand, "%s already deleted its data", provider)
	case provider == "":
		return &ValidationError{Fields: []FieldError{{Pointer: "/provider", Detail: "is required"}}}
	}
	c.take(CmdRecordProviderErase, facts{}, ProviderDataDeleted{Provider: provider, Existed: existed})
	return nil
}

// Erased reports whether the customer's personal data was erased.
func (c *Customer) Erased() bool { return c.erased }

// ProviderDataDeleted reports whether provider deleted its data after the
// erasure.
func (c *Customer) ProviderDataDeleted(provider string) bool {
	return slices.Contains(c.providerErasures, provider)
}

// undoLeftAfter reports whether, once the result of step is recorded (its
// compensation, when compensates is set), an effect is left to undo or an
// attempt that may still cause one is in flight: the condition that keeps
// a cancelling customer in cancelling.
func (c *Customer) undoLeftAfter(step Step, compensates bool) bool {
	for _, s := range Steps() {
		p := c.progress(s)
		if !s.Compensable() {
			continue
		}
		compensatedNow := s == step && compensates
		inFlightNow := p.inFlight != 0 && s != step
		if inFlightNow || (p.requested && !p.compensated && !compensatedNow) {
			return true
		}
	}
	return false
}

func (c *Customer) matchInFlight(cmd Command, step Step, attempt int) error {
	if !step.Valid() {
		return &ValidationError{Fields: []FieldError{{Pointer: "/step", Detail: fmt.Sprintf("unknown step %q", step)}}}
	}
	if p := c.progress(step); p.inFlight == 0 || p.inFlight != attempt {
		return c.reject(cmd, ErrStaleResult, "attempt %d of %s is not in flight", attempt, step)
	}
	return nil
}

func (c *Customer) skipped() []Step {
	var out []Step
	for _, s := range Steps() {
		if c.progress(s).skipped {
			out = append(out, s)
		}
	}
	return out
}

func requireOperator(operator string) error {
	if operator == "" {
		return &ValidationError{Fields: []FieldError{{Pointer: "/operator", Detail: "is required"}}}
	}
	return nil
}

func requireOperatorAndReason(operator, reason string) error {
	var errs fieldErrors
	if operator == "" {
		errs.add("/operator", "is required")
	}
	if reason == "" {
		errs.add("/reason", "is required")
	}
	return errs.err()
}

// allow checks that the table has an edge for cmd out of the current state.
func (c *Customer) allow(cmd Command) error {
	if !Allowed(c.state, cmd) {
		return c.reject(cmd, ErrInvalidTransition, "")
	}
	return nil
}

func (c *Customer) reject(cmd Command, kind error, format string, args ...any) error {
	return &CommandError{Command: cmd, State: c.state, Detail: fmt.Sprintf(format, args...), Kind: kind}
}

// take moves the customer along the edge of cmd out of its state whose
// condition f meets, and the table names its target: it applies events and
// records them as changes and, when the edge ends the journey, the event
// that concludes it. A missing edge, or appliers that land elsewhere than
// the table says, are programming errors caught by the exhaustive tests, so
// they panic.
func (c *Customer) take(cmd Command, f facts, events ...Event) {
	from := c.state
	to, ok := target(from, cmd, f)
	if !ok {
		panic(fmt.Sprintf("domain: %s from %s under %+v is not in the transition table", cmd, from, f))
	}
	for _, e := range events {
		c.record(e)
	}
	if c.state != to && endsJourney(to) {
		c.record(c.conclusion(to))
	}
	if c.state != to {
		panic(fmt.Sprintf("domain: %s from %s landed in %s, the table says %s", cmd, from, c.state, to))
	}
}

// conclusion is the event that ends the journey in to (see endsJourney).
func (c *Customer) conclusion(to State) Event {
	if to == StateActive {
		return OnboardingCompleted{SkippedSteps: c.skipped()}
	}
	return Cancelled{Reason: c.cancelReason}
}

func (c *Customer) record(e Event) {
	c.apply(e)
	c.changes = append(c.changes, e)
}

func (c *Customer) progress(step Step) *stepProgress {
	i := step.index()
	if i < 0 {
		return &stepProgress{}
	}
	return &c.steps[i]
}
