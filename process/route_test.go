package process_test

import (
	"slices"
	"testing"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/process"
)

func TestRouteGivesEachEventOneKnownManager(t *testing.T) {
	none := []string{domain.TypeCancelled, domain.TypeOnboardingCompleted, domain.TypeSupportNotified, domain.TypeResultIgnored,
		domain.TypeUnblocked, domain.TypeProviderDataDeleted}
	samples := map[string]domain.Event{
		domain.TypeSignedUp:                 domain.SignedUp{},
		domain.TypeStepRequested:            domain.StepRequested{Step: domain.StepCRM},
		domain.TypeVerificationCheckStarted: domain.VerificationCheckStarted{},
		domain.TypeStepSucceeded:            domain.StepSucceeded{Step: domain.StepBilling},
		domain.TypeStepFailed:               domain.StepFailed{Step: domain.StepTenant},
		domain.TypeVerificationRejected:     domain.VerificationRejected{},
		domain.TypeSupportNotified:          domain.SupportNotified{},
		domain.TypePaused:                   domain.Paused{Step: domain.StepWelcome},
		domain.TypeStepRetryRequested:       domain.StepRetryRequested{Step: domain.StepBilling},
		domain.TypeStepSkipped:              domain.StepSkipped{Step: domain.StepCRM},
		domain.TypeCancellationRequested:    domain.CancellationRequested{},
		domain.TypeBillingClosed:            domain.BillingClosed{},
		domain.TypeTenantDeprovisioned:      domain.TenantDeprovisioned{},
		domain.TypeCancelled:                domain.Cancelled{},
		domain.TypeOnboardingCompleted:      domain.OnboardingCompleted{},
		domain.TypeResultIgnored:            domain.ResultIgnored{},
		domain.TypeBlocked:                  domain.Blocked{Step: domain.StepBilling},
		domain.TypeUnblocked:                domain.Unblocked{Step: domain.StepBilling},
		domain.TypePersonalDataErased:       domain.PersonalDataErased{},
		domain.TypeProviderDataDeleted:      domain.ProviderDataDeleted{},
	}
	stored := func(e domain.Event) eventstore.Envelope {
		typ, schema, data, err := domain.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		return eventstore.Envelope{StreamID: "customer-1", StreamType: "customer", Version: 1, Type: typ, SchemaVersion: schema, Data: data}
	}
	for _, typ := range domain.EventTypes() {
		e, ok := samples[typ]
		if !ok {
			t.Fatalf("no sample for %s", typ)
		}
		got := process.RouteOf(stored(e), nil)
		if slices.Contains(none, typ) {
			if got != "" {
				t.Errorf("%s routed to %q, want no manager", typ, got)
			}
			continue
		}
		if !slices.Contains(process.Managers(), got) {
			t.Errorf("%s routed to %q, not a manager", typ, got)
		}
	}
	other := stored(domain.SignedUp{})
	other.StreamType = "seal"
	if got := process.RouteOf(other, nil); got != "" {
		t.Errorf("an event of another stream type routed to %q, want no manager", got)
	}
	if got := process.RouteOf(stored(domain.StepSucceeded{Step: domain.StepBilling}), nil); got != "tenant" {
		t.Errorf("billing success goes to %q, want the tenant manager", got)
	}
}

// TestRouteOfASuccessWithItsNextRequest: a success appended together with
// the next step's request needs no reaction; without that request right
// after it in the same transaction it goes to the next step's manager.
func TestRouteOfASuccessWithItsNextRequest(t *testing.T) {
	stored := func(e domain.Event, version int64, tx uint64) eventstore.Envelope {
		typ, schema, data, err := domain.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		return eventstore.Envelope{StreamID: "customer-1", StreamType: "customer", Version: version, TransactionID: tx,
			Type: typ, SchemaVersion: schema, Data: data}
	}
	success := stored(domain.StepSucceeded{Step: domain.StepBilling, Attempt: 1}, 5, 100)
	request := stored(domain.StepRequested{Step: domain.StepTenant, Attempt: 1}, 6, 100)
	laterRequest := stored(domain.StepRequested{Step: domain.StepTenant, Attempt: 1}, 6, 101)
	otherStream := request
	otherStream.StreamID = "customer-2"
	for _, c := range []struct {
		name string
		next *eventstore.Envelope
		want string
	}{
		{"with its request", &request, ""},
		{"next unknown", nil, "tenant"},
		{"request in a later append", &laterRequest, "tenant"},
		{"another customer's request", &otherStream, "tenant"},
		{"followed by no request", &success, "tenant"},
	} {
		if got := process.RouteOf(success, c.next); got != c.want {
			t.Errorf("%s: routed to %q, want %q", c.name, got, c.want)
		}
	}
	if got := process.RouteOf(request, nil); got != "tenant" {
		t.Errorf("the request routed to %q, want tenant", got)
	}
}

// TestRouteOfEventsSettledByTheirSuccessor: the last step's success or
// skip appended with the completion, and a verification check followed by
// its verdict, need no reaction; with any other successor, or none known,
// they go to their manager as before.
func TestRouteOfEventsSettledByTheirSuccessor(t *testing.T) {
	stored := func(e domain.Event, version int64, tx uint64) eventstore.Envelope {
		typ, schema, data, err := domain.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		return eventstore.Envelope{StreamID: "customer-1", StreamType: "customer", Version: version, TransactionID: tx,
			Type: typ, SchemaVersion: schema, Data: data}
	}
	welcomed := stored(domain.StepSucceeded{Step: domain.StepWelcome, Attempt: 1}, 11, 100)
	skipped := stored(domain.StepSkipped{Step: domain.StepWelcome, Operator: "op", Reason: "r"}, 11, 100)
	completed := stored(domain.OnboardingCompleted{}, 12, 100)
	completedLater := stored(domain.OnboardingCompleted{}, 12, 101)
	check := stored(domain.VerificationCheckStarted{Attempt: 1, CheckID: "chk"}, 3, 200)
	approved := stored(domain.StepSucceeded{Step: domain.StepVerification, Attempt: 1}, 4, 201)
	rejected := stored(domain.VerificationRejected{Reason: "no"}, 4, 201)
	failed := stored(domain.StepFailed{Step: domain.StepVerification, Attempt: 1, Class: domain.ErrorTransient}, 4, 201)
	approvedLater := stored(domain.StepSucceeded{Step: domain.StepVerification, Attempt: 1}, 5, 202)
	approvedElsewhere := approved
	approvedElsewhere.StreamID = "customer-2"
	for _, c := range []struct {
		name string
		env  eventstore.Envelope
		next *eventstore.Envelope
		want string
	}{
		{"last success with the completion", welcomed, &completed, ""},
		{"last success, completion in a later append", welcomed, &completedLater, "welcome"},
		{"last success, next unknown", welcomed, nil, "welcome"},
		{"last skip with the completion", skipped, &completed, ""},
		{"last skip, next unknown", skipped, nil, "welcome"},
		{"check followed by its approval", check, &approved, ""},
		{"check followed by its rejection", check, &rejected, ""},
		{"check followed by a failure", check, &failed, "verification"},
		{"check, approval not next", check, &approvedLater, "verification"},
		{"check, another customer's approval", check, &approvedElsewhere, "verification"},
		{"check, next unknown", check, nil, "verification"},
	} {
		if got := process.RouteOf(c.env, c.next); got != c.want {
			t.Errorf("%s: routed to %q, want %q", c.name, got, c.want)
		}
	}
}
