package providers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// The provider names, used in *Error.Provider, hooks and metric labels.
const (
	ProviderKYC          = "kyc"
	ProviderPayments     = "payments"
	ProviderProvisioning = "provisioning"
	ProviderCRM          = "crm"
	ProviderEmail        = "email"
)

// errMissing builds the permanent error of a request missing a field the
// contract requires; no call is made.
func (c *caller) errMissing(op, field string) error {
	return &Error{Provider: c.provider, Op: op, Class: ClassPermanent, Err: fmt.Errorf("%w: %s is required", ErrInvalid, field)}
}

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

// VerdictStatus is the state of a KYC check.
type VerdictStatus string

// The KYC check states.
const (
	VerdictPending  VerdictStatus = "pending"
	VerdictApproved VerdictStatus = "approved"
	VerdictRejected VerdictStatus = "rejected"
)

// CheckRequest asks the KYC provider to verify a customer.
type CheckRequest struct {
	CustomerID     string `json:"customer_id"`
	Email          string `json:"email"`
	Company        string `json:"company"`
	Country        string `json:"country"`
	IdempotencyKey string `json:"-"`
}

// Verdict is the state of a KYC check as the provider reports it.
type Verdict struct {
	CheckID    string        `json:"id"`
	CustomerID string        `json:"customer_id"`
	Status     VerdictStatus `json:"status"`
	Reason     string        `json:"reason,omitempty"`
}

// KYC is the client of the identity-verification provider. Checks are
// asynchronous: StartCheck returns at once, the verdict arrives later as a
// signed webhook (see VerifyWebhook), and GetCheck polls for it when the
// webhook is late. Safe for concurrent use.
type KYC struct{ c *caller }

// NewKYC returns a KYC client; it fails on an invalid Config.
func NewKYC(cfg Config) (*KYC, error) {
	c, err := newCaller(ProviderKYC, cfg)
	if err != nil {
		return nil, err
	}
	return &KYC{c: c}, nil
}

// StartCheck starts a verification and returns the provider's check id.
// Repeating it with the same IdempotencyKey returns the same check id.
func (k *KYC) StartCheck(ctx context.Context, req CheckRequest) (string, error) {
	const op = "StartCheck"
	if req.CustomerID == "" {
		return "", k.c.errMissing(op, "customer id")
	}
	if req.IdempotencyKey == "" {
		return "", k.c.errMissing(op, "idempotency key")
	}
	var out Verdict
	if err := k.c.call(ctx, op, http.MethodPost, "/checks", req.IdempotencyKey, req, &out); err != nil {
		return "", err
	}
	return out.CheckID, nil
}

// GetCheck returns the current verdict of a check. An unknown id is a
// permanent *Error wrapping ErrNotFound.
func (k *KYC) GetCheck(ctx context.Context, checkID string) (Verdict, error) {
	const op = "GetCheck"
	if checkID == "" {
		return Verdict{}, k.c.errMissing(op, "check id")
	}
	var out Verdict
	err := k.c.call(ctx, op, http.MethodGet, "/checks/"+url.PathEscape(checkID), "", nil, &out)
	return out, err
}

// BreakerState returns the state of the KYC provider's circuit breaker.
func (k *KYC) BreakerState() BreakerState { return k.c.state() }

// BillingAccountRequest asks the payment processor for a billing account
// with a subscription to Plan.
type BillingAccountRequest struct {
	CustomerID     string `json:"customer_id"`
	Company        string `json:"company"`
	Email          string `json:"email"`
	Plan           string `json:"plan"`
	IdempotencyKey string `json:"-"`
}

// BillingAccount is what CreateBillingAccount created.
type BillingAccount struct {
	AccountID      string `json:"id"`
	SubscriptionID string `json:"subscription_id"`
}

// CloseAccountRequest asks the payment processor to close every billing
// account of a customer and cancel its subscriptions. It addresses the
// customer, not an account id, because compensation must also undo an
// account whose creation response was lost.
type CloseAccountRequest struct {
	CustomerID     string `json:"-"`
	IdempotencyKey string `json:"-"`
}

// Payments is the client of the payment processor. Safe for concurrent use.
type Payments struct{ c *caller }

// NewPayments returns a Payments client; it fails on an invalid Config.
func NewPayments(cfg Config) (*Payments, error) {
	c, err := newCaller(ProviderPayments, cfg)
	if err != nil {
		return nil, err
	}
	return &Payments{c: c}, nil
}

// CreateBillingAccount creates a billing account and its subscription. A
// declined payment method is a permanent *Error wrapping ErrDeclined.
func (p *Payments) CreateBillingAccount(ctx context.Context, req BillingAccountRequest) (BillingAccount, error) {
	const op = "CreateBillingAccount"
	if req.CustomerID == "" {
		return BillingAccount{}, p.c.errMissing(op, "customer id")
	}
	if req.IdempotencyKey == "" {
		return BillingAccount{}, p.c.errMissing(op, "idempotency key")
	}
	var out BillingAccount
	err := p.c.call(ctx, op, http.MethodPost, "/accounts", req.IdempotencyKey, req, &out)
	return out, err
}

// CloseAccount closes the customer's billing accounts. existed is false
// when the customer never had one — the compensated effect never happened —
// and true when one was closed now or earlier.
func (p *Payments) CloseAccount(ctx context.Context, req CloseAccountRequest) (existed bool, err error) {
	const op = "CloseAccount"
	if req.CustomerID == "" {
		return false, p.c.errMissing(op, "customer id")
	}
	if req.IdempotencyKey == "" {
		return false, p.c.errMissing(op, "idempotency key")
	}
	var out struct {
		Existed bool `json:"existed"`
	}
	err = p.c.call(ctx, op, http.MethodPost, "/customers/"+url.PathEscape(req.CustomerID)+"/close", req.IdempotencyKey, nil, &out)
	return out.Existed, err
}

// BreakerState returns the state of the payment processor's circuit breaker.
func (p *Payments) BreakerState() BreakerState { return p.c.state() }

// TenantRequest asks the cloud provider for a tenant.
type TenantRequest struct {
	CustomerID     string `json:"customer_id"`
	Company        string `json:"company"`
	Plan           string `json:"plan"`
	IdempotencyKey string `json:"-"`
}

// DeleteTenantRequest asks the cloud provider to deprovision the
// customer's tenant; like CloseAccountRequest it addresses the customer.
type DeleteTenantRequest struct {
	CustomerID     string `json:"-"`
	IdempotencyKey string `json:"-"`
}

// Provisioning is the client of the cloud provider. Safe for concurrent use.
type Provisioning struct{ c *caller }

// NewProvisioning returns a Provisioning client; it fails on an invalid
// Config.
func NewProvisioning(cfg Config) (*Provisioning, error) {
	c, err := newCaller(ProviderProvisioning, cfg)
	if err != nil {
		return nil, err
	}
	return &Provisioning{c: c}, nil
}

// CreateTenant provisions a tenant and returns its id.
func (p *Provisioning) CreateTenant(ctx context.Context, req TenantRequest) (tenantID string, err error) {
	const op = "CreateTenant"
	if req.CustomerID == "" {
		return "", p.c.errMissing(op, "customer id")
	}
	if req.IdempotencyKey == "" {
		return "", p.c.errMissing(op, "idempotency key")
	}
	var out struct {
		ID string `json:"id"`
	}
	err = p.c.call(ctx, op, http.MethodPost, "/tenants", req.IdempotencyKey, req, &out)
	return out.ID, err
}

// DeleteTenant deprovisions the customer's tenant. existed is false when the
// customer never had one, true when it was deleted now or earlier.
func (p *Provisioning) DeleteTenant(ctx context.Context, req DeleteTenantRequest) (existed bool, err error) {
	const op = "DeleteTenant"
	if req.CustomerID == "" {
		return false, p.c.errMissing(op, "customer id")
	}
	if req.IdempotencyKey == "" {
		return false, p.c.errMissing(op, "idempotency key")
	}
	var out struct {
		Existed bool `json:"existed"`
	}
	err = p.c.call(ctx, op, http.MethodDelete, "/customers/"+url.PathEscape(req.CustomerID)+"/tenant", req.IdempotencyKey, nil, &out)
	return out.Existed, err
}

// BreakerState returns the state of the cloud provider's circuit breaker.
func (p *Provisioning) BreakerState() BreakerState { return p.c.state() }

// CRMAccount is the record kept in the CRM, keyed by our customer id.
type CRMAccount struct {
	ExternalID     string `json:"-"`
	Company        string `json:"company"`
	Email          string `json:"email"`
	ContactName    string `json:"contact_name"`
	Plan           string `json:"plan"`
	Stage          string `json:"stage"`
	IdempotencyKey string `json:"-"`
}

// CRMRecord is the CRM's answer to an upsert.
type CRMRecord struct {
	RecordID string `json:"id"`
	Created  bool   `json:"created"` // false when an existing record was updated
}

// CRM is the client of the CRM. Safe for concurrent use.
type CRM struct{ c *caller }

// NewCRM returns a CRM client; it fails on an invalid Config.
func NewCRM(cfg Config) (*CRM, error) {
	c, err := newCaller(ProviderCRM, cfg)
	if err != nil {
		return nil, err
	}
	return &CRM{c: c}, nil
}

// UpsertAccount creates or updates the record whose external id is
// acc.ExternalID. An upsert is idempotent by nature; the key still makes a
// replay return the first answer.
func (c *CRM) UpsertAccount(ctx context.Context, acc CRMAccount) (CRMRecord, error) {
	const op = "UpsertAccount"
	if acc.ExternalID == "" {
		return CRMRecord{}, c.c.errMissing(op, "external id")
	}
	if acc.IdempotencyKey == "" {
		return CRMRecord{}, c.c.errMissing(op, "idempotency key")
	}
	var out CRMRecord
	err := c.c.call(ctx, op, http.MethodPut, "/accounts/"+url.PathEscape(acc.ExternalID), acc.IdempotencyKey, acc, &out)
	return out, err
}

// CRMDeleteRequest asks the CRM to delete a customer's record after its
// erasure.
type CRMDeleteRequest struct {
	ExternalID     string
	IdempotencyKey string
}

// DeleteAccount deletes the record whose external id is req.ExternalID;
// existed is false when there was none.
func (c *CRM) DeleteAccount(ctx context.Context, req CRMDeleteRequest) (existed bool, err error) {
	const op = "DeleteAccount"
	if req.ExternalID == "" {
		return false, c.c.errMissing(op, "external id")
	}
	if req.IdempotencyKey == "" {
		return false, c.c.errMissing(op, "idempotency key")
	}
	var out struct {
		Existed bool `json:"existed"`
	}
	err = c.c.call(ctx, op, http.MethodDelete, "/accounts/"+url.PathEscape(req.ExternalID), req.IdempotencyKey, nil, &out)
	return out.Existed, err
}

// BreakerState returns the state of the CRM's circuit breaker.
func (c *CRM) BreakerState() BreakerState { return c.c.state() }

// TemplateWelcome is the template of the welcome message.
const TemplateWelcome = "welcome"

// Message is an email to send through a template.
type Message struct {
	CustomerID     string            `json:"customer_id"` // whom the message is about
	To             string            `json:"to"`
	Template       string            `json:"template"`
	Subject        string            `json:"subject,omitempty"`
	Data           map[string]string `json:"data,omitempty"`
	IdempotencyKey string            `json:"-"`
}

// WelcomeEmail is the welcome message to a new customer.
type WelcomeEmail struct {
	CustomerID     string
	To             string
	Company        string
	ContactName    string
	IdempotencyKey string
}

// Email is the client of the email provider. Safe for concurrent use.
type Email struct{ c *caller }

// NewEmail returns an Email client; it fails on an invalid Config.
func NewEmail(cfg Config) (*Email, error) {
	c, err := newCaller(ProviderEmail, cfg)
	if err != nil {
		return nil, err
	}
	return &Email{c: c}, nil
}

// Send sends a message and returns the provider's message id. It serves
// any template, e.g. the support notification of a rejected verification.
func (e *Email) Send(ctx context.Context, m Message) (messageID string, err error) {
	const op = "Send"
	switch {
	case m.CustomerID == "":
		return "", e.c.errMissing(op, "customer id")
	case m.To == "":
		return "", e.c.errMissing(op, "recipient")
	case m.Template == "":
		return "", e.c.errMissing(op, "template")
	case m.IdempotencyKey == "":
		return "", e.c.errMissing(op, "idempotency key")
	}
	var out struct {
		ID string `json:"id"`
	}
	err = e.c.call(ctx, op, http.MethodPost, "/messages", m.IdempotencyKey, m, &out)
	return out.ID, err
}

// SendWelcome sends the welcome message (TemplateWelcome).
func (e *Email) SendWelcome(ctx context.Context, w WelcomeEmail) (messageID string, err error) {
	return e.Send(ctx, Message{
		CustomerID:     w.CustomerID,
		To:             w.To,
		Template:       TemplateWelcome,
		Subject:        "Welcome to onboard",
		Data:           map[string]string{"company": w.Company, "contact_name": w.ContactName},
		IdempotencyKey: w.IdempotencyKey,
	})
}

// SuppressRequest asks the email provider to forget a customer's
// addresses and never to mail them again, after its erasure.
type SuppressRequest struct {
	CustomerID     string
	IdempotencyKey string
}

// Suppress suppresses the customer's addresses; existed is false when the
// provider held none.
func (e *Email) Suppress(ctx context.Context, req SuppressRequest) (existed bool, err error) {
	const op = "Suppress"
	if req.CustomerID == "" {
		return false, e.c.errMissing(op, "customer id")
	}
	if req.IdempotencyKey == "" {
		return false, e.c.errMissing(op, "idempotency key")
	}
	var out struct {
		Existed bool `json:"existed"`
	}
	err = e.c.call(ctx, op, http.MethodPut, "/suppressions/"+url.PathEscape(req.CustomerID), req.IdempotencyKey, nil, &out)
	return out.Existed, err
}

// BreakerState returns the state of the email provider's circuit breaker.
func (e *Email) BreakerState() BreakerState { return e.c.state() }
