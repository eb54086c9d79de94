package external

import (
	"context"
	"errors"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/handlers"
)

// Clients are the five provider clients.
type Clients struct {
	KYC          *KYC
	Payments     *Payments
	Provisioning *Provisioning
	CRM          *CRM
	Email        *Email
}

// NewClients builds the five clients from one base URL per provider.
func NewClients(kyc, payments, provisioning, crm, email Config) (Clients, error) {
	var c Clients
	var errs [5]error
	c.KYC, errs[0] = NewKYC(kyc)
	c.Payments, errs[1] = NewPayments(payments)
	c.Provisioning, errs[2] = NewProvisioning(provisioning)
	c.CRM, errs[3] = NewCRM(crm)
	c.Email, errs[4] = NewEmail(email)
	return c, errors.Join(errs[:]...)
}

// ForHandlers adapts the clients to the interfaces the process managers
// declare, translating this package's error classes into
// handlers.ProviderError.
func (c Clients) ForHandlers() handlers.Providers {
	return handlers.Providers{KYC: kycAdapter{c.KYC}, Billing: billingAdapter{c.Payments}, Tenants: tenantAdapter{c.Provisioning}, CRM: crmAdapter{c.CRM}, Mailer: mailAdapter{c.Email}}
}

// forHandlers wraps err with the class the process managers act on.
func forHandlers(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		class := domain.ErrorTransient
		if e.Class == ClassPermanent {
			class = domain.ErrorPermanent
		}
		return &handlers.ProviderError{Class: class, RetryAfter: e.RetryAfter, Err: err}
	}
	return &handlers.ProviderError{Class: domain.ErrorTransient, Err: err}
}

type kycAdapter struct{ k *KYC }

func (a kycAdapter) StartCheck(ctx context.Context, r handlers.CheckRequest) (string, error) {
	id, err := a.k.StartCheck(ctx, CheckRequest{CustomerID: r.CustomerID, Email: r.Email, Company: r.Company, Country: r.Country, IdempotencyKey: r.IdempotencyKey})
	return id, forHandlers(err)
}

func (a kycAdapter) CheckVerdict(ctx context.Context, checkID string) (handlers.Verdict, error) {
	v, err := a.k.GetCheck(ctx, checkID)
	if err != nil {
		return handlers.Verdict{}, forHandlers(err)
	}
	return handlers.Verdict{Decided: v.Status != VerdictPending, Approved: v.Status == VerdictApproved, Reason: v.Reason}, nil
}

type billingAdapter struct{ p *Payments }

func (a billingAdapter) CreateAccount(ctx context.Context, r handlers.BillingRequest) (string, string, error) {
	acct, err := a.p.CreateBillingAccount(ctx, BillingAccountRequest{CustomerID: r.CustomerID, Company: r.Company, Email: r.Email, Plan: r.Plan, IdempotencyKey: r.IdempotencyKey})
	return acct.AccountID, acct.SubscriptionID, forHandlers(err)
}

func (a billingAdapter) CloseAccount(ctx context.Context, customerID, key string) (bool, error) {
	existed, err := a.p.CloseAccount(ctx, CloseAccountRequest{CustomerID: customerID, IdempotencyKey: key})
	return existed, forHandlers(err)
}

type tenantAdapter struct{ p *Provisioning }

func (a tenantAdapter) CreateTenant(ctx context.Context, r handlers.TenantRequest) (string, error) {
	id, err := a.p.CreateTenant(ctx, TenantRequest{CustomerID: r.CustomerID, Company: r.Company, Plan: r.Plan, IdempotencyKey: r.IdempotencyKey})
	return id, forHandlers(err)
}

func (a tenantAdapter) DeleteTenant(ctx context.Context, customerID, key string) (bool, error) {
	existed, err := a.p.DeleteTenant(ctx, DeleteTenantRequest{CustomerID: customerID, IdempotencyKey: key})
	return existed, forHandlers(err)
}

type crmAdapter struct{ c *CRM }

func (a crmAdapter) UpsertAccount(ctx context.Context, r handlers.CRMRequest) (string, error) {
	rec, err := a.c.UpsertAccount(ctx, CRMAccount{ExternalID: r.CustomerID, Company: r.Company, Email: r.Email, ContactName: r.ContactName, Plan: r.Plan, Stage: "onboarding", IdempotencyKey: r.IdempotencyKey})
	return rec.RecordID, forHandlers(err)
}

type mailAdapter struct{ e *Email }

func (a mailAdapter) Send(ctx context.Context, r handlers.EmailRequest) (string, error) {
	id, err := a.e.Send(ctx, Message{CustomerID: r.CustomerID, To: r.To, Template: r.Template, Subject: r.Subject, Data: r.Data, IdempotencyKey: r.IdempotencyKey})
	return id, forHandlers(err)
}
