package process_test

import (
	"slices"
	"testing"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/process"
)

func TestRouteGivesEachEventOneKnownManager(t *testing.T) {
	none := []string{domain.TypeCancelled, domain.TypeOnboardingCompleted, domain.TypeSupportNotified, domain.TypeResultIgnored}
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
	}
	for _, typ := range domain.EventTypes() {
		e, ok := samples[typ]
		if !ok {
			t.Fatalf("no sample for %s", typ)
		}
		got := process.Route(e)
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
	if got := process.Route(domain.StepSucceeded{Step: domain.StepBilling}); got != "tenant" {
		t.Errorf("billing success goes to %q, want the tenant manager", got)
	}
}

// TestManagerEventTypesCoverRoute: every event a manager is routed must be
// of a type its consumer is subscribed to.
func TestManagerEventTypesCoverRoute(t *testing.T) {
	var events []domain.Event
	for _, s := range domain.Steps() {
		events = append(events, domain.StepRequested{Step: s}, domain.StepSucceeded{Step: s}, domain.StepFailed{Step: s},
			domain.Paused{Step: s}, domain.StepRetryRequested{Step: s}, domain.StepSkipped{Step: s})
	}
	events = append(events, domain.SignedUp{}, domain.VerificationCheckStarted{}, domain.VerificationRejected{},
		domain.CancellationRequested{}, domain.BillingClosed{}, domain.TenantDeprovisioned{})
	for _, e := range events {
		m := process.Route(e)
		if m == "" {
			continue
		}
		if !slices.Contains(process.ManagerEventTypes(m), e.EventType()) {
			t.Errorf("%s (%+v) goes to %s, whose consumer does not receive %s", e.EventType(), e, m, e.EventType())
		}
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
		{"with its request", &request, process.RouteNone},
		{"next unknown", nil, "tenant"},
		{"request in a later append", &laterRequest, "tenant"},
		{"another customer's request", &otherStream, "tenant"},
		{"followed by no request", &success, "tenant"},
	} {
		if got := process.RouteOf(success, c.next); got != c.want {
			t.Errorf("%s: routed to %q, want %q", c.name, got, c.want)
		}
		if process.RoutedTo("tenant", success, c.next) != (c.want == "tenant") {
			t.Errorf("%s: RoutedTo disagrees with RouteOf", c.name)
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
		name      string
		env       eventstore.Envelope
		next      *eventstore.Envelope
		want, mgr string
	}{
		{"last success with the completion", welcomed, &completed, process.RouteNone, "welcome"},
		{"last success, completion in a later append", welcomed, &completedLater, "welcome", "welcome"},
		{"last success, next unknown", welcomed, nil, "welcome", "welcome"},
		{"last skip with the completion", skipped, &completed, process.RouteNone, "welcome"},
		{"last skip, next unknown", skipped, nil, "welcome", "welcome"},
		{"check followed by its approval", check, &approved, process.RouteNone, "verification"},
		{"check followed by its rejection", check, &rejected, process.RouteNone, "verification"},
		{"check followed by a failure", check, &failed, "verification", "verification"},
		{"check, approval not next", check, &approvedLater, "verification", "verification"},
		{"check, another customer's approval", check, &approvedElsewhere, "verification", "verification"},
		{"check, next unknown", check, nil, "verification", "verification"},
	} {
		if got := process.RouteOf(c.env, c.next); got != c.want {
			t.Errorf("%s: routed to %q, want %q", c.name, got, c.want)
		}
		if process.RoutedTo(c.mgr, c.env, c.next) != (c.want == c.mgr) {
			t.Errorf("%s: RoutedTo disagrees with RouteOf", c.name)
		}
	}
}
