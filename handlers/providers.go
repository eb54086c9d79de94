package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/onboard/onboard/domain"
)

// The requests the process managers make of providers. Every one carries
// an idempotency key derived from (customer id, step, attempt group), so a
// retried call never causes a second effect at the provider.
type (
	// CheckRequest asks the identity provider to verify a customer.
	CheckRequest struct{ CustomerID, Email, Company, Country, IdempotencyKey string }
	// BillingRequest asks the payment processor for an account and a
	// subscription.
	BillingRequest struct{ CustomerID, Company, Email, Plan, IdempotencyKey string }
	// TenantRequest asks the cloud for a tenant.
	TenantRequest struct{ CustomerID, Company, Plan, IdempotencyKey string }
	// CRMRequest upserts the customer's CRM record by its external id.
	CRMRequest struct{ CustomerID, Company, Email, ContactName, Plan, IdempotencyKey string }
	// EmailRequest sends one templated message.
	EmailRequest struct {
		CustomerID, To, Template, Subject string
		Data                              map[string]string
		IdempotencyKey                    string
	}
)

// Verdict is the identity provider's answer to a check.
type Verdict struct {
	Decided, Approved bool
	Reason            string
}

// KYC is the identity provider. The verdict arrives by webhook; CheckVerdict
// polls for it when the webhook does not come.
type KYC interface {
	StartCheck(ctx context.Context, r CheckRequest) (checkID string, err error)
	CheckVerdict(ctx context.Context, checkID string) (Verdict, error)
}

// Billing is the payment processor.
type Billing interface {
	CreateAccount(ctx context.Context, r BillingRequest) (accountID, subscriptionID string, err error)
	// CloseAccount closes the customer's account; existed is false when it
	// had none, so a compensation of an effect that never happened is
	// still an answer.
	CloseAccount(ctx context.Context, customerID, idempotencyKey string) (existed bool, err error)
}

// Tenants is the cloud provisioning service.
type Tenants interface {
	CreateTenant(ctx context.Context, r TenantRequest) (tenantID string, err error)
	DeleteTenant(ctx context.Context, customerID, idempotencyKey string) (existed bool, err error)
}

// CRM is the customer-relationship system.
type CRM interface {
	UpsertAccount(ctx context.Context, r CRMRequest) (recordID string, err error)
}

// Mailer sends email.
type Mailer interface {
	Send(ctx context.Context, r EmailRequest) (messageID string, err error)
}

// Providers are the external services of the journey.
type Providers struct {
	KYC     KYC
	Billing Billing
	Tenants Tenants
	CRM     CRM
	Mailer  Mailer
}

// Validate names every missing provider.
func (p Providers) Validate() error {
	var errs []error
	for name, missing := range map[string]bool{"KYC": p.KYC == nil, "Billing": p.Billing == nil, "Tenants": p.Tenants == nil, "CRM": p.CRM == nil, "Mailer": p.Mailer == nil} {
		if missing {
			errs = append(errs, fmt.Errorf("handlers: provider %s is required", name))
		}
	}
	return errors.Join(errs...)
}

// ProviderError classifies a provider failure for the process managers:
// transient failures are retried durably, permanent ones pause the
// customer. Provider clients wrap their errors in it; an error that is not
// a ProviderError counts as transient.
type ProviderError struct {
	Class domain.ErrorClass
	// RetryAfter is the provider's own hint, honoured by the next retry.
	RetryAfter time.Duration
	Err        error
}

// Error is the provider's error: the class is a field, not repeated in text.
func (e *ProviderError) Error() string { return e.Err.Error() }

// Unwrap returns the provider's error.
func (e *ProviderError) Unwrap() error { return e.Err }

// classify returns the class of err and the provider's retry hint.
func classify(err error) (domain.ErrorClass, time.Duration) {
	var pe *ProviderError
	if errors.As(err, &pe) && pe.Class.Valid() {
		return pe.Class, pe.RetryAfter
	}
	return domain.ErrorTransient, 0
}
