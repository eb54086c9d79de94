package domain_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/onboard/onboard/domain"
)

func sampleEvents() []domain.Event {
	return []domain.Event{
		signedUp(),
		req(domain.StepBilling, 2, 1),
		domain.VerificationCheckStarted{Attempt: 1, CheckID: "chk"},
		ok(domain.StepBilling, 1, "account_id", "acct", "subscription_id", "sub"),
		domain.StepFailed{Step: domain.StepTenant, Attempt: 3, Class: domain.ErrorTransient, Message: "503 Service Unavailable",
			RetryNotBefore: time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)},
		domain.VerificationRejected{CheckID: "chk", Reason: "sanctions"},
		domain.SupportNotified{Channel: "email", Reason: "rejected"},
		domain.Paused{Step: domain.StepCRM, Reason: "retries exhausted", Attempts: 5, Class: domain.ErrorTransient},
		domain.StepRetryRequested{Step: domain.StepCRM, Operator: "op@example.com", Reason: "fixed", AttemptGroup: 2},
		domain.StepSkipped{Step: domain.StepWelcome, Operator: "op", Reason: "bounced"},
		domain.CancellationRequested{Operator: "op", Reason: "fraud", Compensate: []domain.Step{domain.StepBilling}},
		domain.BillingClosed{AccountID: "acct", Existed: true},
		domain.TenantDeprovisioned{TenantID: "t", Existed: false},
		domain.Cancelled{Reason: "fraud"},
		domain.OnboardingCompleted{SkippedSteps: []domain.Step{domain.StepCRM}},
		domain.Blocked{Step: domain.StepBilling, Provider: "payments", Attempt: 2, Reason: "circuit breaker open"},
		domain.Unblocked{Step: domain.StepBilling, Provider: "payments"},
		domain.ResultIgnored{Step: domain.StepVerification, Source: "kyc-webhook", Reason: "duplicate"},
		domain.PersonalDataErased{Operator: "op", Reason: "art. 17"},
		domain.ProviderDataDeleted{Provider: "crm", Existed: true},
	}
}

func TestEventsRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range sampleEvents() {
		typ, version, data, err := domain.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		if version != 1 {
			t.Errorf("%s: schema version %d", typ, version)
		}
		got, err := domain.DecodeEvent(typ, data)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s: got %#v, want %#v", typ, got, e)
		}
		seen[typ] = true
	}
	for _, typ := range domain.EventTypes() {
		if !seen[typ] {
			t.Errorf("no round-trip sample for %s", typ)
		}
	}
}

func TestEventTypeNamesAreStable(t *testing.T) {
	// These strings are stored forever; a change here breaks old streams.
	want := []string{
		"customer.billing_closed.v1", "customer.blocked.v1", "customer.cancellation_requested.v1", "customer.cancelled.v1",
		"customer.onboarding_completed.v1", "customer.paused.v1", "customer.personal_data_erased.v1",
		"customer.provider_data_deleted.v1", "customer.result_ignored.v1",
		"customer.signed_up.v1", "customer.step_failed.v1", "customer.step_requested.v1",
		"customer.step_retry_requested.v1", "customer.step_skipped.v1", "customer.step_succeeded.v1",
		"customer.support_notified.v1", "customer.tenant_deprovisioned.v1", "customer.unblocked.v1",
		"customer.verification_check_started.v1", "customer.verification_rejected.v1",
	}
	got := domain.EventTypes()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("event types changed:\n got %v\nwant %v", got, want)
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	tests := []struct{ typ, data string }{
		{"customer.unknown.v1", `{}`},
		{domain.TypePaused, `{"step":"crm","bogus":1}`},
		{domain.TypePaused, `{"step":"crm"} {}`},
		{domain.TypePaused, `{"step":"crm"}}`},
		{domain.TypePaused, `{"attempts":"three"}`},
		{domain.TypePaused, `not json`},
	}
	for _, tc := range tests {
		if _, err := domain.DecodeEvent(tc.typ, []byte(tc.data)); err == nil {
			t.Errorf("DecodeEvent(%s, %s) succeeded", tc.typ, tc.data)
		}
	}
	if _, err := domain.DecodeEvent("customer.unknown.v1", []byte(`{}`)); !errors.Is(err, domain.ErrUnknownEventType) {
		t.Errorf("unknown type: %v", err)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, e := range sampleEvents() {
		typ, _, data, _ := domain.EncodeEvent(e)
		f.Add(typ, data)
	}
	f.Add("customer.paused.v1", []byte(`{"step":"\u0000"}`))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e, err := domain.DecodeEvent(typ, data)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode again.
		typ2, _, data2, err := domain.EncodeEvent(e)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		e2, err := domain.DecodeEvent(typ2, data2)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		// The encoded form is canonical: a second round trip changes no byte
		// (the first may, e.g. an empty map becomes an omitted one).
		_, _, data3, err := domain.EncodeEvent(e2)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if string(data2) != string(data3) {
			t.Fatalf("encoding not stable: %s vs %s", data2, data3)
		}
	})
}
