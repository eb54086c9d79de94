package handlers_test

import (
	"slices"
	"testing"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/handlers"
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
		got := handlers.Route(e)
		if slices.Contains(none, typ) {
			if got != "" {
				t.Errorf("%s routed to %q, want no manager", typ, got)
			}
			continue
		}
		if !slices.Contains(handlers.Managers(), got) {
			t.Errorf("%s routed to %q, not a manager", typ, got)
		}
	}
	if got := handlers.Route(domain.StepSucceeded{Step: domain.StepBilling}); got != "tenant" {
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
		m := handlers.Route(e)
		if m == "" {
			continue
		}
		if !slices.Contains(handlers.ManagerEventTypes(m), e.EventType()) {
			t.Errorf("%s (%+v) goes to %s, whose consumer does not receive %s", e.EventType(), e, m, e.EventType())
		}
	}
}
