package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/providers"
)

// Manager runs the process managers. They react to customer events:
// they request each step, call the step's provider, records the outcome, retries transient failures
// durably with backoff, pauses and alerts on permanent failures or
// exhausted retries, and compensates after a cancel.
//
// Every reaction is idempotent: it reloads the customer and acts only when
// the event still describes the customer's present (a redelivered or late
// event finds the step already moved on and does nothing), provider calls
// carry idempotency keys, and the aggregate rejects duplicate results. So
// at-least-once delivery is enough.
type Manager struct {
	cfg Config
}

// New returns the process managers, or an error naming every missing
// setting.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Manager{cfg: cfg}, nil
}

// TimerStore keeps the durable timers of the process managers. Schedule
// replaces the customer's timer of the same kind and step; Claim leases up
// to limit due timers, so that another process fires them only once the
// lease ran out; Done deletes a fired timer unless it was scheduled again
// since it was claimed. Timers is the Postgres implementation.
type TimerStore interface {
	Schedule(ctx context.Context, tm Timer) error
	Claim(ctx context.Context, limit int) ([]Timer, error)
	Done(ctx context.Context, tm Timer) error
}

var _ TimerStore = (*Timers)(nil)

// Handle reacts to one stored event. An error means the reaction could not
// be completed (the store was unreachable) and the event must be delivered
// again; provider failures are not errors, they are recorded as events.
func (pm *Manager) Handle(ctx context.Context, env eventstore.Envelope) error {
	if env.StreamType != "customer" {
		return nil
	}
	id, err := commands.ParseStreamID(env.StreamID)
	if err != nil {
		return nil // not a customer stream: nothing to do
	}
	e, err := domain.DecodeEvent(env.Type, env.Data)
	if err != nil {
		// Redelivery cannot fix an event this code cannot read; the audit
		// verifier reports it. Blocking the whole pipeline on it would not.
		pm.cfg.Logger.ErrorContext(ctx, "process manager cannot decode an event; skipped", "event_id", env.ID, "type", env.Type, "err", err)
		return nil
	}
	return pm.react(ctx, id, env, e)
}

// react reacts to the stored event env of customer id, decoded as e.
func (pm *Manager) react(ctx context.Context, id uuid.UUID, env eventstore.Envelope, e domain.Event) error {
	ctx = WithLogAttrs(ctx, slog.String("customer_id", id.String()), slog.String("correlation_id", env.Metadata.CorrelationID),
		slog.String("causation_id", env.ID.String()), slog.String("event_type", env.Type))
	ctx, span := pm.cfg.Tracer.Start(commands.ContextWithTrace(ctx, env.Metadata.Trace), "react to "+env.Type, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("onboard.customer_id", id.String()), attribute.String("onboard.event_id", env.ID.String())))
	defer span.End()
	meta := func(step domain.Step) commands.Meta {
		return commands.Meta{Actor: "system:" + string(step), CorrelationID: env.Metadata.CorrelationID, CausationID: env.ID.String(), Trace: commands.TraceOf(ctx)}
	}
	switch e := e.(type) {
	case domain.SignedUp:
		return pm.request(ctx, id, domain.StepVerification, meta(domain.StepVerification))
	case domain.StepRequested:
		return pm.perform(ctx, id, int(env.Version), e, meta(e.Step))
	case domain.VerificationCheckStarted:
		// A verdict this process already saw recorded needs no deadline
		// (the webhook often beats the check's own event here when the
		// command API runs in this process).
		if c, err := pm.cfg.Commands.LoadSince(ctx, id, int(env.Version)); err == nil &&
			(c.State() != domain.StateVerifying || c.CheckID() != e.CheckID) {
			return nil
		}
		return pm.cfg.Timers.Schedule(ctx, Timer{CustomerID: id, Kind: TimerDeadline, Step: domain.StepVerification, Attempt: 0, Ref: e.CheckID, DueAt: pm.cfg.Now().Add(pm.cfg.VerificationDeadline)})
	case domain.StepSucceeded:
		return pm.advance(ctx, id, int(env.Version), meta(e.Step))
	case domain.StepFailed:
		return pm.failed(ctx, id, int(env.Version), e, meta(e.Step))
	case domain.VerificationRejected:
		return pm.notifySupport(ctx, id, e.Reason, 0, meta(domain.StepVerification))
	case domain.Paused:
		pm.cfg.Logger.ErrorContext(ctx, "customer paused: operator action needed",
			"step", e.Step, "reason", e.Reason, "attempts", e.Attempts, "error_class", e.Class)
		pm.cfg.OnPause(e.Step, e.Class)
		return nil
	case domain.StepRetryRequested:
		return pm.request(ctx, id, e.Step, meta(e.Step))
	case domain.StepSkipped:
		return pm.advance(ctx, id, int(env.Version), meta(e.Step))
	case domain.Blocked:
		return pm.blocked(ctx, id, env, e)
	case domain.CancellationRequested, domain.BillingClosed, domain.TenantDeprovisioned:
		return pm.compensate(ctx, id, 0, meta("compensation"))
	case domain.PersonalDataErased:
		return pm.eraseAtProviders(ctx, id, meta(ManagerErasure))
	}
	return nil
}

// benign reports whether a command's rejection only means that the event
// it reacted to is no longer news (redelivery, a race already settled).
func benign(err error) bool {
	return errors.Is(err, domain.ErrInvalidTransition) || errors.Is(err, domain.ErrStaleResult) || errors.Is(err, domain.ErrDuplicateCommand)
}

func (pm *Manager) exec(ctx context.Context, id uuid.UUID, meta commands.Meta, decide func(*domain.Customer) error) error {
	_, err := pm.cfg.Commands.Execute(ctx, id, nil, meta, decide)
	if err != nil && benign(err) {
		pm.cfg.Logger.DebugContext(ctx, "command not needed", "reason", err)
		return nil
	}
	return err
}

// request starts the next attempt of step.
func (pm *Manager) request(ctx context.Context, id uuid.UUID, step domain.Step, meta commands.Meta) error {
	return pm.exec(ctx, id, meta, func(c *domain.Customer) error {
		_, err := c.RequestStep(step)
		return err
	})
}

// advance requests the customer's current step when nothing is in flight:
// after a success, a skip or a late result. version is the event's.
func (pm *Manager) advance(ctx context.Context, id uuid.UUID, version int, meta commands.Meta) error {
	c, err := pm.cfg.Commands.LoadSince(ctx, id, version)
	if err != nil {
		return err
	}
	if c.State() == domain.StateCancelling {
		return pm.compensate(ctx, id, 0, meta)
	}
	if step, ok := commands.NextRequest(c); ok {
		meta.Actor = "system:" + string(step)
		return pm.request(ctx, id, step, meta)
	}
	return nil
}

// perform carries out a requested attempt: it calls the step's provider and
// records the outcome. version is the request's.
func (pm *Manager) perform(ctx context.Context, id uuid.UUID, version int, req domain.StepRequested, meta commands.Meta) error {
	c, err := pm.cfg.Commands.LoadSince(ctx, id, version)
	if err != nil {
		return err
	}
	if c.InFlight(req.Step) != req.Attempt {
		return nil // already answered: a redelivery
	}
	if req.Step == domain.StepVerification && c.CheckID() != "" {
		return nil // the check is running; its verdict comes by webhook
	}
	if cancelledBefore(c, req.Step) {
		pm.cfg.Logger.InfoContext(ctx, "step not carried out: the customer was cancelled before it started", "step", req.Step, "attempt", req.Attempt)
		return nil
	}
	ctx, span := pm.cfg.Tracer.Start(ctx, "call the "+string(req.Step)+" provider", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("onboard.step", string(req.Step)), attribute.Int("onboard.attempt", req.Attempt)))
	defer span.End()
	return pm.attempt(ctx, c, req, meta)
}

// cancelledBefore reports whether a requested attempt of step must not
// start because the customer was cancelled first (a cancel right after
// the signup, say, finds verification requested): a cancelled customer
// gets no new effects (no KYC check, no welcome email), and one being
// cancelled only the attempts of compensable steps, whose results its
// compensation waits for.
func cancelledBefore(c *domain.Customer, step domain.Step) bool {
	switch c.State() {
	case domain.StateCancelled:
		return true
	case domain.StateCancelling:
		return !step.Compensable()
	}
	return false
}

// attempt calls the step's provider once and records the outcome.
func (pm *Manager) attempt(ctx context.Context, c *domain.Customer, req domain.StepRequested, meta commands.Meta) error {
	id, key := c.ID(), req.IdempotencyKey
	cid := id.String()
	d, err := pm.details(ctx, c)
	if err != nil {
		return err
	}
	var result map[string]string
	switch req.Step {
	case domain.StepVerification:
		var checkID string
		checkID, err = pm.cfg.Providers.KYC.StartCheck(ctx, providers.CheckRequest{CustomerID: cid, Email: d.Email, Company: d.Company, Country: d.Country, IdempotencyKey: key})
		if err == nil {
			return pm.exec(ctx, id, meta, func(c *domain.Customer) error { return c.RecordCheckStarted(req.Attempt, checkID) })
		}
	case domain.StepBilling:
		var acct providers.BillingAccount
		acct, err = pm.cfg.Providers.Billing.CreateBillingAccount(ctx, providers.BillingAccountRequest{CustomerID: cid, Company: d.Company, Email: d.Email, Plan: string(d.Plan), IdempotencyKey: key})
		result = map[string]string{"account_id": acct.AccountID, "subscription_id": acct.SubscriptionID}
	case domain.StepTenant:
		var tenant string
		tenant, err = pm.cfg.Providers.Tenants.CreateTenant(ctx, providers.TenantRequest{CustomerID: cid, Company: d.Company, Plan: string(d.Plan), IdempotencyKey: key})
		result = map[string]string{"tenant_id": tenant}
	case domain.StepCRM:
		var rec providers.CRMRecord
		rec, err = pm.cfg.Providers.CRM.UpsertAccount(ctx, providers.CRMAccount{ExternalID: cid, Company: d.Company, Email: d.Email, ContactName: d.ContactName, Plan: string(d.Plan), Stage: "onboarding", IdempotencyKey: key})
		result = map[string]string{"crm_record_id": rec.RecordID}
	case domain.StepWelcome:
		var msg string
		msg, err = pm.cfg.Providers.Mailer.Send(ctx, providers.Message{CustomerID: cid, To: d.Email, Template: providers.TemplateWelcome, Subject: "Welcome to onboard, " + d.Company,
			Data: map[string]string{"contact_name": d.ContactName, "company": d.Company}, IdempotencyKey: key})
		result = map[string]string{"message_id": msg}
	}
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: the attempt stays in flight and is redelivered
	}
	if err != nil {
		trace.SpanFromContext(ctx).RecordError(err)
		trace.SpanFromContext(ctx).SetStatus(codes.Error, "provider call failed")
		if pm.waitsOut(ctx, req.Step, err) {
			pm.cfg.Logger.InfoContext(ctx, "provider down: the customer waits for it", "step", req.Step, "provider", req.Step.Provider(), "attempt", req.Attempt, "err", err)
			return pm.exec(ctx, id, meta, func(c *domain.Customer) error {
				return c.Block(req.Step, req.Attempt, req.Step.Provider(), truncateMessage(err.Error()))
			})
		}
		class, wait := classify(err)
		pm.cfg.Logger.WarnContext(ctx, "step attempt failed", "step", req.Step, "attempt", req.Attempt, "error_class", class, "retry_after", wait, "err", err)
		// The failure carries the provider's Retry-After as a time: its
		// retry is scheduled later, by whichever process reacts to it.
		notBefore := pm.after(wait)
		return pm.exec(ctx, id, meta, func(c *domain.Customer) error {
			return c.RecordStepFailedRetryNotBefore(req.Step, req.Attempt, class, truncateMessage(err.Error()), notBefore)
		})
	}
	// The success and the next step's request are one append: the next
	// manager gets to work without a round trip through the relay (the
	// success still reaches it, and finds the request made).
	return pm.exec(ctx, id, meta, func(c *domain.Customer) error {
		if err := c.RecordStepSucceeded(req.Step, req.Attempt, result); err != nil {
			return err
		}
		commands.RequestNext(c)
		return nil
	})
}

func truncateMessage(s string) string {
	const max = 500
	if len(s) > max {
		return s[:max]
	}
	return s
}

// failed decides what follows a failed attempt: a durable retry after a
// backoff, or a pause for an operator. version is the failure's.
func (pm *Manager) failed(ctx context.Context, id uuid.UUID, version int, f domain.StepFailed, meta commands.Meta) error {
	c, err := pm.cfg.Commands.LoadSince(ctx, id, version)
	if err != nil {
		return err
	}
	if c.State() == domain.StateCancelling {
		return pm.compensate(ctx, id, 0, meta)
	}
	if (c.State() != domain.StateVerifying && c.State() != domain.StateProvisioning) ||
		c.CurrentStep() != f.Step || c.InFlight(f.Step) != 0 || c.Attempt(f.Step) != f.Attempt {
		return nil // the customer has moved on
	}
	if f.Class == domain.ErrorPermanent || f.Attempt >= pm.maxAttempts(f.Step) {
		reason := fmt.Sprintf("%s failed permanently: %s", f.Step, f.Message)
		if f.Class != domain.ErrorPermanent {
			reason = fmt.Sprintf("%s failed %d times; last error: %s", f.Step, f.Attempt, f.Message)
		}
		return pm.exec(ctx, id, meta, func(c *domain.Customer) error { return c.Pause(f.Step, f.Class, reason) })
	}
	if err := pm.cfg.Timers.Schedule(ctx, Timer{CustomerID: id, Kind: TimerRetry, Step: f.Step, Attempt: f.Attempt, DueAt: pm.retryDue(f.Attempt, f.RetryNotBefore)}); err != nil {
		return err
	}
	pm.cfg.OnRetry(f.Step)
	return nil
}

func (pm *Manager) maxAttempts(step domain.Step) int {
	if n := pm.cfg.MaxAttempts[step]; n > 0 {
		return n
	}
	return 5
}

// retryDue is when the durable retry after attempt n runs: after the
// backoff's delay, and not before notBefore (the provider's Retry-After,
// zero when it named none) when that is later.
func (pm *Manager) retryDue(attempt int, notBefore time.Time) time.Time {
	due := pm.cfg.Now().Add(pm.Backoff(attempt))
	if notBefore.After(due) {
		return notBefore
	}
	return due
}

// after is the time d from now, or zero for no wait.
func (pm *Manager) after(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return pm.cfg.Now().Add(d)
}

// Backoff is the durable retry delay after attempt n (1-based): full
// jitter over an exponential, uniform in [0, min(MaxDelay,
// BaseDelay·2^(n-1))]. Full jitter spreads the retries of customers that
// failed together (a provider's outage) instead of keeping them in step.
func (pm *Manager) Backoff(attempt int) time.Duration {
	return fullJitter(pm.cfg.BaseDelay, pm.cfg.MaxDelay, attempt)
}

// fullJitter is backoff/v5's exponential backoff around half the ceiling
// with a randomization factor of 1, which draws from [0, ceiling]; the
// ceiling doubles from base per attempt up to capDelay.
func fullJitter(base, capDelay time.Duration, attempt int) time.Duration {
	b := &backoff.ExponentialBackOff{InitialInterval: min(base, capDelay) / 2, RandomizationFactor: 1, Multiplier: 2, MaxInterval: capDelay / 2}
	b.Reset()
	d := b.NextBackOff()
	for i := 1; i < min(attempt, 64); i++ { // 63 doublings reach any cap
		d = b.NextBackOff()
	}
	return min(d, capDelay) // the draw is rounded in float64 and may land just past the cap
}

// compensate undoes what the customer's cancel requires and nothing else:
// each pending compensation is one idempotent provider call, recorded as an
// event. A failure is retried by a durable timer until it succeeds.
func (pm *Manager) compensate(ctx context.Context, id uuid.UUID, failures int, meta commands.Meta) error {
	c, err := pm.cfg.Commands.Load(ctx, id)
	if err != nil {
		return err
	}
	for _, step := range c.PendingCompensations() {
		// Closing an account or deleting a tenant is idempotent by nature
		// (by customer id), so each retry may take a fresh key: a provider
		// that stored a permanent refusal under the old key (as Stripe-like
		// APIs do) would otherwise refuse every retry forever.
		key := fmt.Sprintf("%s:compensate:%d", domain.IdempotencyKey(id, step, 0), failures)
		var existed bool
		var callErr error
		switch step {
		case domain.StepBilling:
			existed, callErr = pm.cfg.Providers.Billing.CloseAccount(ctx, providers.CloseAccountRequest{CustomerID: id.String(), IdempotencyKey: key})
		case domain.StepTenant:
			existed, callErr = pm.cfg.Providers.Tenants.DeleteTenant(ctx, providers.DeleteTenantRequest{CustomerID: id.String(), IdempotencyKey: key})
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if callErr != nil {
			class, wait := classify(callErr)
			if class == domain.ErrorPermanent {
				pm.cfg.Logger.ErrorContext(ctx, "compensation refused by the provider; retrying with a new key: operator attention needed",
					"step", step, "failures", failures+1, "err", callErr)
			} else {
				pm.cfg.Logger.WarnContext(ctx, "compensation failed; will retry", "step", step, "failures", failures+1, "err", callErr)
			}
			return pm.cfg.Timers.Schedule(ctx, Timer{CustomerID: id, Kind: TimerCompensate, Step: step, Attempt: failures + 1, DueAt: pm.retryDue(failures+1, pm.after(wait))})
		}
		result := c.Result(step)
		m := meta
		m.Actor = "system:compensation"
		err := pm.exec(ctx, id, m, func(c *domain.Customer) error {
			if step == domain.StepBilling {
				return c.RecordBillingClosed(result["account_id"], existed)
			}
			return c.RecordTenantDeprovisioned(result["tenant_id"], existed)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// The channels by which support learns of a rejected customer.
const (
	ChannelEmail         = "email"          // the support_rejected email to ProcessConfig.SupportEmail
	ChannelOperatorAlert = "operator_alert" // the mailer refused for good: an ERROR log and the pause metric
)

// notifySupport tells support about a rejected customer, once.
func (pm *Manager) notifySupport(ctx context.Context, id uuid.UUID, reason string, failures int, meta commands.Meta) error {
	c, err := pm.cfg.Commands.Load(ctx, id)
	if err != nil {
		return err
	}
	if c.State() != domain.StateRejected || c.Snapshot().SupportNotified {
		return nil
	}
	d, err := pm.details(ctx, c)
	if err != nil {
		return err
	}
	// reason stays encrypted in the events and timers; only the email gets
	// it decrypted.
	key, err := pm.key(ctx, id)
	if err != nil {
		return err
	}
	decrypted, err := domain.DecryptPersonal(domain.SupportNotified{Reason: reason}, id, key)
	if err != nil {
		return err
	}
	_, err = pm.cfg.Providers.Mailer.Send(ctx, providers.Message{CustomerID: id.String(), To: pm.cfg.SupportEmail, Template: "support_rejected",
		Subject: "Verification rejected: " + d.Company, Data: map[string]string{"customer_id": id.String(), "company": d.Company, "reason": decrypted.(domain.SupportNotified).Reason},
		IdempotencyKey: domain.IdempotencyKey(id, domain.StepVerification, 0) + ":support"})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		class, wait := classify(err)
		if class == domain.ErrorPermanent {
			// The mailer stored its refusal under the key, so retrying would
			// be refused forever: the operator alert is the notification.
			pm.cfg.Logger.ErrorContext(ctx, "support email refused: operator attention needed for a rejected customer", "reason", reason, "err", err)
			pm.cfg.OnPause(domain.StepVerification, domain.ErrorPermanent)
			return pm.exec(ctx, id, meta, func(c *domain.Customer) error {
				return c.NotifySupport(ChannelOperatorAlert, reason+"; the support email was refused: "+truncateMessage(err.Error()))
			})
		}
		return pm.cfg.Timers.Schedule(ctx, Timer{CustomerID: id, Kind: TimerNotify, Step: domain.StepVerification, Attempt: failures + 1, Ref: reason, DueAt: pm.retryDue(failures+1, pm.after(wait))})
	}
	return pm.exec(ctx, id, meta, func(c *domain.Customer) error { return c.NotifySupport(ChannelEmail, reason) })
}

// Fire runs one due timer.
func (pm *Manager) Fire(ctx context.Context, tm Timer) error {
	ctx = WithLogAttrs(ctx, slog.String("customer_id", tm.CustomerID.String()), slog.String("timer", string(tm.Kind)))
	ctx, span := pm.cfg.Tracer.Start(commands.ContextWithTrace(ctx, tm.Trace), "fire "+string(tm.Kind)+" timer",
		trace.WithAttributes(attribute.String("onboard.customer_id", tm.CustomerID.String()), attribute.String("onboard.step", string(tm.Step))))
	defer span.End()
	meta := commands.Meta{Actor: "system:" + string(tm.Step), CausationID: "timer:" + string(tm.Kind), Trace: commands.TraceOf(ctx)}
	switch tm.Kind {
	case TimerRetry:
		c, err := pm.cfg.Commands.Load(ctx, tm.CustomerID)
		if err != nil {
			return err
		}
		if c.CurrentStep() != tm.Step || c.InFlight(tm.Step) != 0 || c.Attempt(tm.Step) != tm.Attempt {
			return nil
		}
		return pm.request(ctx, tm.CustomerID, tm.Step, meta)
	case TimerDeadline:
		return pm.deadline(ctx, tm, meta)
	case TimerCompensate:
		meta.Actor = "system:compensation"
		return pm.compensate(ctx, tm.CustomerID, tm.Attempt, meta)
	case TimerNotify:
		return pm.notifySupport(ctx, tm.CustomerID, tm.Ref, tm.Attempt, meta)
	}
	return nil
}

// deadline runs when a KYC verdict did not come in time: poll the provider;
// when it stays silent after the last poll, pause for an operator.
func (pm *Manager) deadline(ctx context.Context, tm Timer, meta commands.Meta) error {
	c, err := pm.cfg.Commands.Load(ctx, tm.CustomerID)
	if err != nil {
		return err
	}
	if c.State() != domain.StateVerifying || c.CheckID() != tm.Ref {
		return nil // the verdict came
	}
	v, err := pm.cfg.Providers.KYC.GetCheck(ctx, tm.Ref)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil && v.Status != providers.VerdictPending {
		return pm.exec(ctx, tm.CustomerID, meta, func(c *domain.Customer) error {
			return c.RecordVerdict(tm.Ref, v.Status == providers.VerdictApproved, v.Reason)
		})
	}
	polls := tm.Attempt + 1
	if polls < pm.cfg.VerificationPolls {
		next := tm
		_, wait := classify(err) // a failed poll's Retry-After, if any
		next.Attempt, next.DueAt = polls, pm.cfg.Now().Add(max(pm.Backoff(polls)+pm.cfg.BaseDelay, wait))
		return pm.cfg.Timers.Schedule(ctx, next)
	}
	reason := fmt.Sprintf("no verdict from the identity provider for check %s after %d polls", tm.Ref, polls)
	if err != nil {
		reason += "; last poll failed: " + truncateMessage(err.Error())
	}
	return pm.exec(ctx, tm.CustomerID, meta, func(c *domain.Customer) error {
		return c.Pause(domain.StepVerification, domain.ErrorTransient, reason)
	})
}
