package domain_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
)

func TestSignUpValidation(t *testing.T) {
	valid := domain.SignupDetails{Email: "ada@example.com", Company: "Analytical Engines", ContactName: "Ada", Country: "GB", Plan: domain.PlanGrowth}
	with := func(f func(*domain.SignupDetails)) domain.SignupDetails { d := valid; f(&d); return d }
	tests := []struct {
		name    string
		details domain.SignupDetails
		pointer string // "" means valid
	}{
		{"valid", valid, ""},
		{"email upper case and spaces are normalized", with(func(d *domain.SignupDetails) { d.Email = "  Ada@Example.COM " }), ""},
		{"country lower case is normalized", with(func(d *domain.SignupDetails) { d.Country = "gb" }), ""},
		{"missing email", with(func(d *domain.SignupDetails) { d.Email = "" }), "/email"},
		{"email without at", with(func(d *domain.SignupDetails) { d.Email = "ada.example.com" }), "/email"},
		{"email with display name", with(func(d *domain.SignupDetails) { d.Email = "Ada <ada@example.com>" }), "/email"},
		{"email without domain dot", with(func(d *domain.SignupDetails) { d.Email = "ada@localhost" }), "/email"},
		{"email too long", with(func(d *domain.SignupDetails) {
			d.Email = strings.Repeat("a", 60) + "@" + strings.Repeat("b", 200) + ".com"
		}), "/email"},
		{"email local part too long", with(func(d *domain.SignupDetails) { d.Email = strings.Repeat("a", 65) + "@example.com" }), "/email"},
		{"email invalid utf-8", with(func(d *domain.SignupDetails) { d.Email = "a\xffb@example.com" }), "/email"},
		{"missing company", with(func(d *domain.SignupDetails) { d.Company = "   " }), "/company"},
		{"company too long", with(func(d *domain.SignupDetails) { d.Company = strings.Repeat("é", domain.MaxCompanyLength+1) }), "/company"},
		{"company with control chars", with(func(d *domain.SignupDetails) { d.Company = "Acme\x00Ltd" }), "/company"},
		{"company invalid utf-8", with(func(d *domain.SignupDetails) { d.Company = "Acme\xc3" }), "/company"},
		{"missing contact", with(func(d *domain.SignupDetails) { d.ContactName = "" }), "/contact_name"},
		{"contact too long", with(func(d *domain.SignupDetails) { d.ContactName = strings.Repeat("x", domain.MaxContactNameLength+1) }), "/contact_name"},
		{"missing country", with(func(d *domain.SignupDetails) { d.Country = "" }), "/country"},
		{"unknown country", with(func(d *domain.SignupDetails) { d.Country = "XX" }), "/country"},
		{"alpha-3 country", with(func(d *domain.SignupDetails) { d.Country = "GBR" }), "/country"},
		{"missing plan", with(func(d *domain.SignupDetails) { d.Plan = "" }), "/plan"},
		{"unknown plan", with(func(d *domain.SignupDetails) { d.Plan = "platinum" }), "/plan"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := domain.SignUp(custID, tc.details)
			if tc.pointer == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if c.State() != domain.StatePending || len(c.Changes()) != 1 || c.Version() != 0 {
					t.Fatalf("got state %s, %d changes, version %d", c.State(), len(c.Changes()), c.Version())
				}
				su := c.Changes()[0].(domain.SignedUp)
				if su.Email != strings.ToLower(strings.TrimSpace(su.Email)) || su.Country != strings.ToUpper(su.Country) {
					t.Fatalf("not normalized: %+v", su)
				}
				return
			}
			var ve *domain.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, domain.ErrValidation) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			if len(ve.Fields) != 1 || ve.Fields[0].Pointer != tc.pointer {
				t.Fatalf("fields = %+v, want one at %s", ve.Fields, tc.pointer)
			}
		})
	}
}

func TestSignUpReportsEveryInvalidField(t *testing.T) {
	_, err := domain.SignUp(custID, domain.SignupDetails{})
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 5 {
		t.Fatalf("err = %v, want 5 field errors", err)
	}
}

func TestSignUpRejectsNilID(t *testing.T) {
	_, err := domain.SignUp(uuid.Nil, domain.SignupDetails{Email: "a@example.com", Company: "C", ContactName: "A", Country: "DE", Plan: domain.PlanStarter})
	if !errors.Is(err, domain.ErrValidation) {
		t.Fatalf("err = %v", err)
	}
}

func TestFromHistoryNeedsSignup(t *testing.T) {
	if _, err := domain.FromHistory(custID, nil); !errors.Is(err, domain.ErrNoHistory) {
		t.Fatalf("empty: %v", err)
	}
	if _, err := domain.FromHistory(custID, []domain.Event{domain.Cancelled{}}); !errors.Is(err, domain.ErrNoHistory) {
		t.Fatalf("headless: %v", err)
	}
}

func TestVersionAndCommit(t *testing.T) {
	c := load(t, hVerified)
	if c.Version() != len(hVerified) {
		t.Fatalf("version = %d", c.Version())
	}
	if _, err := c.RequestStep(domain.StepBilling); err != nil {
		t.Fatal(err)
	}
	if c.Version() != len(hVerified) || c.Snapshot().Version != len(hVerified)+1 {
		t.Fatalf("uncommitted change counted in Version")
	}
	c.MarkCommitted()
	if c.Version() != len(hVerified)+1 || len(c.Changes()) != 0 {
		t.Fatalf("after commit: version %d, %d changes", c.Version(), len(c.Changes()))
	}
}

func TestPendingCompensations(t *testing.T) {
	c := load(t, hCancelling) // billing done, tenant in flight
	if got := c.PendingCompensations(); len(got) != 1 || got[0] != domain.StepBilling {
		t.Fatalf("pending = %v, want [billing] (tenant waits for its in-flight attempt)", got)
	}
	if err := c.RecordStepSucceeded(domain.StepTenant, 1, map[string]string{"tenant_id": "t-1"}); err != nil {
		t.Fatal(err)
	}
	if got := c.PendingCompensations(); len(got) != 2 {
		t.Fatalf("pending = %v, want billing and tenant", got)
	}
	if c.Result(domain.StepTenant)["tenant_id"] != "t-1" {
		t.Fatalf("tenant result lost")
	}
}
