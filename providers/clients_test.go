package providers_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

func TestIdempotencyKey(t *testing.T) {
	a := providers.IdempotencyKey("c1", "billing", 0)
	if a != providers.IdempotencyKey("c1", "billing", 0) {
		t.Fatal("same inputs must give the same key")
	}
	for _, other := range []string{
		providers.IdempotencyKey("c2", "billing", 0),
		providers.IdempotencyKey("c1", "tenant", 0),
		providers.IdempotencyKey("c1", "billing", 1),
	} {
		if other == a {
			t.Fatalf("different inputs gave the same key %q", a)
		}
	}
}

// TestClientsContract runs every operation of every client against the
// simulator and checks the answers and the effects ledger.
func TestClientsContract(t *testing.T) {
	ctx := context.Background()
	s, srv := newSim(t, sim.Config{Seed: 1})
	p := fastPolicy(nil)
	kyc := must[*providers.KYC](t)(providers.NewKYC(cfgFor(srv, "kyc", p)))
	pay := must[*providers.Payments](t)(providers.NewPayments(cfgFor(srv, "payments", p)))
	prov := must[*providers.Provisioning](t)(providers.NewProvisioning(cfgFor(srv, "provisioning", p)))
	crm := must[*providers.CRM](t)(providers.NewCRM(cfgFor(srv, "crm", p)))
	mail := must[*providers.Email](t)(providers.NewEmail(cfgFor(srv, "email", p)))
	key := func(step string) string { return providers.IdempotencyKey("cust-1", step, 0) }

	t.Run("kyc", func(t *testing.T) {
		id, err := kyc.StartCheck(ctx, providers.CheckRequest{CustomerID: "cust-1", Email: "a@b.example", Company: "Acme", Country: "DE", IdempotencyKey: key("verification")})
		if err != nil || id == "" {
			t.Fatalf("StartCheck = %q, %v", id, err)
		}
		again, err := kyc.StartCheck(ctx, providers.CheckRequest{CustomerID: "cust-1", Email: "a@b.example", Company: "Acme", Country: "DE", IdempotencyKey: key("verification")})
		if err != nil || again != id {
			t.Fatalf("repeated StartCheck = %q, %v; want %q", again, err, id)
		}
		v, err := kyc.GetCheck(ctx, id)
		if err != nil || v.CheckID != id || v.CustomerID != "cust-1" {
			t.Fatalf("GetCheck = %+v, %v", v, err)
		}
		if v.Status != providers.VerdictApproved && v.Status != providers.VerdictPending {
			t.Fatalf("status %q, want approved or pending", v.Status)
		}
	})
	t.Run("payments", func(t *testing.T) {
		existed, err := pay.CloseAccount(ctx, providers.CloseAccountRequest{CustomerID: "cust-1", IdempotencyKey: key("billing.close.early")})
		if err != nil || existed {
			t.Fatalf("CloseAccount before create = %v, %v; want false, nil", existed, err)
		}
		acc, err := pay.CreateBillingAccount(ctx, providers.BillingAccountRequest{CustomerID: "cust-1", Company: "Acme", Email: "a@b.example", Plan: "pro", IdempotencyKey: key("billing")})
		if err != nil || acc.AccountID == "" || acc.SubscriptionID == "" {
			t.Fatalf("CreateBillingAccount = %+v, %v", acc, err)
		}
		existed, err = pay.CloseAccount(ctx, providers.CloseAccountRequest{CustomerID: "cust-1", IdempotencyKey: key("billing.close")})
		if err != nil || !existed {
			t.Fatalf("CloseAccount = %v, %v; want true, nil", existed, err)
		}
	})
	t.Run("provisioning", func(t *testing.T) {
		existed, err := prov.DeleteTenant(ctx, providers.DeleteTenantRequest{CustomerID: "nobody", IdempotencyKey: key("tenant.delete.nobody")})
		if err != nil || existed {
			t.Fatalf("DeleteTenant of nobody = %v, %v; want false, nil", existed, err)
		}
		id, err := prov.CreateTenant(ctx, providers.TenantRequest{CustomerID: "cust-1", Company: "Acme", Plan: "pro", IdempotencyKey: key("tenant")})
		if err != nil || id == "" {
			t.Fatalf("CreateTenant = %q, %v", id, err)
		}
		existed, err = prov.DeleteTenant(ctx, providers.DeleteTenantRequest{CustomerID: "cust-1", IdempotencyKey: key("tenant.delete")})
		if err != nil || !existed {
			t.Fatalf("DeleteTenant = %v, %v; want true, nil", existed, err)
		}
	})
	t.Run("crm", func(t *testing.T) {
		acc := providers.CRMAccount{ExternalID: "cust-1", Company: "Acme", Email: "a@b.example", Plan: "pro", Stage: "onboarding", IdempotencyKey: key("crm")}
		first, err := crm.UpsertAccount(ctx, acc)
		if err != nil || !first.Created || first.RecordID == "" {
			t.Fatalf("first UpsertAccount = %+v, %v", first, err)
		}
		acc.Stage, acc.IdempotencyKey = "active", key("crm.update")
		second, err := crm.UpsertAccount(ctx, acc)
		if err != nil || second.Created || second.RecordID != first.RecordID {
			t.Fatalf("second UpsertAccount = %+v, %v; want an update of %s", second, err, first.RecordID)
		}
	})
	t.Run("email", func(t *testing.T) {
		id, err := mail.SendWelcome(ctx, providers.WelcomeEmail{CustomerID: "cust-1", To: "a@b.example", Company: "Acme", ContactName: "Ada", IdempotencyKey: key("welcome")})
		if err != nil || id == "" {
			t.Fatalf("SendWelcome = %q, %v", id, err)
		}
		id, err = mail.Send(ctx, providers.Message{CustomerID: "cust-1", To: "support@onboard.example", Template: "verification_rejected", IdempotencyKey: key("support")})
		if err != nil || id == "" {
			t.Fatalf("Send = %q, %v", id, err)
		}
	})

	got := s.Ledger()
	c := got.Customers["cust-1"]
	want := sim.CustomerEffects{KYCChecks: 1, BillingAccounts: 1, Subscriptions: 1, ClosedAccounts: 1, Tenants: 1, DeletedTenants: 1, CRMRecords: 1, CRMUpdates: 1, Emails: 2}
	c.EmailsByType = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("ledger for cust-1 = %+v\nwant %+v", c, want)
	}
	if got.DuplicateEffects != 0 || got.DuplicatesPrevented != 1 {
		t.Errorf("duplicate effects %d (want 0), prevented %d (want 1: the repeated StartCheck)", got.DuplicateEffects, got.DuplicatesPrevented)
	}
}

// TestMissingFields checks that a request without the fields the contract
// requires fails permanently without reaching the provider.
func TestMissingFields(t *testing.T) {
	ctx := context.Background()
	s, srv := newSim(t, sim.Config{})
	p := fastPolicy(nil)
	pay := must[*providers.Payments](t)(providers.NewPayments(cfgFor(srv, "payments", p)))
	mail := must[*providers.Email](t)(providers.NewEmail(cfgFor(srv, "email", p)))
	tests := []struct {
		name string
		call func() error
	}{
		{"no idempotency key", func() error {
			_, err := pay.CreateBillingAccount(ctx, providers.BillingAccountRequest{CustomerID: "c", Plan: "pro"})
			return err
		}},
		{"no customer", func() error {
			_, err := pay.CloseAccount(ctx, providers.CloseAccountRequest{IdempotencyKey: "k"})
			return err
		}},
		{"no recipient", func() error {
			_, err := mail.Send(ctx, providers.Message{CustomerID: "c", Template: "x", IdempotencyKey: "k"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, providers.ErrPermanent) || !errors.Is(err, providers.ErrInvalid) {
				t.Fatalf("err = %v, want permanent ErrInvalid", err)
			}
		})
	}
	if n := s.Stats("payments").Requests + s.Stats("email").Requests; n != 0 {
		t.Fatalf("%d requests reached the simulator, want 0", n)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []providers.Config{
		{BaseURL: "not a url"},
		{BaseURL: "ftp://host/x"},
		{BaseURL: "http://host", Policy: providers.Policy{Timeout: -1, MaxAttempts: -1}},
	} {
		if _, err := providers.NewPayments(cfg); err == nil {
			t.Errorf("NewPayments(%+v) succeeded, want an error", cfg)
		}
	}
}
