package process

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/providers"
)

// The providers the process managers call, as small interfaces over the
// provider clients' own request and response types. Every request carries
// an idempotency key derived from (customer id, step, attempt group), so a
// retried call never causes a second effect at the provider.
type (
	// KYC is the identity provider. The verdict arrives by webhook;
	// GetCheck polls for it when the webhook does not come.
	KYC interface {
		StartCheck(ctx context.Context, req providers.CheckRequest) (checkID string, err error)
		GetCheck(ctx context.Context, checkID string) (providers.Verdict, error)
	}
	// Billing is the payment processor. CloseAccount reports existed
	// false when the customer had no account, so a compensation of an
	// effect that never happened is still an answer.
	Billing interface {
		CreateBillingAccount(ctx context.Context, req providers.BillingAccountRequest) (providers.BillingAccount, error)
		CloseAccount(ctx context.Context, req providers.CloseAccountRequest) (existed bool, err error)
	}
	// Tenants is the cloud provisioning service.
	Tenants interface {
		CreateTenant(ctx context.Context, req providers.TenantRequest) (tenantID string, err error)
		DeleteTenant(ctx context.Context, req providers.DeleteTenantRequest) (existed bool, err error)
	}
	// CRM is the customer-relationship system. DeleteAccount deletes an
	// erased customer's record.
	CRM interface {
		UpsertAccount(ctx context.Context, acc providers.CRMAccount) (providers.CRMRecord, error)
		DeleteAccount(ctx context.Context, req providers.CRMDeleteRequest) (existed bool, err error)
	}
	// Mailer sends email. Suppress forgets an erased customer's addresses.
	Mailer interface {
		Send(ctx context.Context, m providers.Message) (messageID string, err error)
		Suppress(ctx context.Context, req providers.SuppressRequest) (existed bool, err error)
	}
)

// Providers are the external services of the journey.
type Providers struct {
	KYC     KYC
	Billing Billing
	Tenants Tenants
	CRM     CRM
	Mailer  Mailer
}

// ProvidersOf returns the provider clients as the process managers use
// them.
func ProvidersOf(c providers.Clients) Providers {
	return Providers{KYC: c.KYC, Billing: c.Payments, Tenants: c.Provisioning, CRM: c.CRM, Mailer: c.Email}
}

// Validate names every missing provider.
func (p Providers) Validate() error {
	var errs []error
	for name, missing := range map[string]bool{"KYC": p.KYC == nil, "Billing": p.Billing == nil, "Tenants": p.Tenants == nil, "CRM": p.CRM == nil, "Mailer": p.Mailer == nil} {
		if missing {
			errs = append(errs, fmt.Errorf("process: provider %s is required", name))
		}
	}
	return errors.Join(errs...)
}

// classify returns the class of a provider failure and the wait the
// provider asked for (its Retry-After, 0 when none): transient failures are
// retried durably, no sooner than that wait; permanent ones pause the
// customer. A failure that is not a *providers.Error counts as transient.
func classify(err error) (domain.ErrorClass, time.Duration) {
	var pe *providers.Error
	if !errors.As(err, &pe) {
		return domain.ErrorTransient, 0
	}
	if pe.Class == providers.ClassPermanent {
		return domain.ErrorPermanent, 0
	}
	return domain.ErrorTransient, max(pe.RetryAfter, 0)
}

// OutageBoard is where customers wait out a provider's outage: Wait records
// a customer waiting, Status reads the provider's outage status. Outages
// is the implementation.
type OutageBoard interface {
	Wait(ctx context.Context, id uuid.UUID, provider string, step domain.Step, since time.Time) error
	Status(ctx context.Context, provider string) (domain.ProviderStatus, error)
}

var _ OutageBoard = (*Outages)(nil)

// waitsOut is the rule of who waits: a transient failure of a call to a
// provider that is down. It is down when its breaker refused the call, when
// this process's breaker is open, or while its outage lasts (another
// process's breakers found it down). A permanent failure, such as a
// declined card, says the provider answered: it never waits.
func (pm *Manager) waitsOut(ctx context.Context, step domain.Step, err error) bool {
	if pm.cfg.Outages == nil {
		return false
	}
	if class, _ := classify(err); class != domain.ErrorTransient {
		return false
	}
	provider := step.Provider()
	if errors.Is(err, providers.ErrCircuitOpen) {
		return true
	}
	if pm.cfg.Breakers != nil && pm.cfg.Breakers(provider) == providers.BreakerOpen {
		return true
	}
	status, serr := pm.cfg.Outages.Status(ctx, provider)
	return serr == nil && status == domain.ProviderDown
}

// blocked records where a customer that started to wait waits, for
// Outages to resume it: unless it stopped waiting meanwhile.
func (pm *Manager) blocked(ctx context.Context, id uuid.UUID, env eventstore.Envelope, e domain.Blocked) error {
	if pm.cfg.Outages == nil {
		return nil
	}
	c, err := pm.cfg.Commands.LoadSince(ctx, id, int(env.Version))
	if err != nil {
		return err
	}
	if c.BlockedOn() != e.Provider {
		return nil
	}
	return pm.cfg.Outages.Wait(ctx, id, e.Provider, e.Step, env.RecordedAt)
}
