package audit

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
)

var testID = uuid.MustParse("0190f5a4-7e1a-7c3e-9b1a-3f6d2c1b0a99")

// TestEveryEventTypeIsMapped keeps domain.CommandOfType and followerOf
// complete when an event type is added.
func TestEveryEventTypeIsMapped(t *testing.T) {
	for _, typ := range domain.EventTypes() {
		leader := domain.CommandOfType(typ) != ""
		_, follower := followerOf[typ]
		if leader == follower {
			t.Errorf("%s: leader %t, follower %t: want exactly one", typ, leader, follower)
		}
	}
}

func TestCheckHistoryRejects(t *testing.T) {
	su := domain.SignedUp{CustomerID: testID.String()}
	req := func(s domain.Step) domain.Event { return domain.StepRequested{Step: s, Attempt: 1, AttemptGroup: 1} }
	ok := func(s domain.Step) domain.Event { return domain.StepSucceeded{Step: s, Attempt: 1} }
	verified := []domain.Event{su, req(domain.StepVerification), domain.VerificationCheckStarted{Attempt: 1, CheckID: "c"}, ok(domain.StepVerification)}
	active := append(append([]domain.Event(nil), verified...),
		req(domain.StepBilling), ok(domain.StepBilling), req(domain.StepTenant), ok(domain.StepTenant),
		req(domain.StepCRM), ok(domain.StepCRM), req(domain.StepWelcome), ok(domain.StepWelcome), domain.OnboardingCompleted{})
	with := func(h []domain.Event, more ...domain.Event) []domain.Event {
		return append(append([]domain.Event(nil), h...), more...)
	}
	tests := []struct {
		name    string
		history []domain.Event
		version int64
		detail  string
	}{
		{"headless stream", []domain.Event{req(domain.StepVerification)}, 1, "from (new) to (new)"},
		{"follower first", []domain.Event{domain.Cancelled{}}, 1, "cannot follow nothing"},
		{"second signup", with(verified, su), 5, "customer.signed_up.v1 (sign_up) from verified to verified"},
		{"request after active", with(active, req(domain.StepWelcome)), 14, "(request_step) from active to active"},
		{"completed after signup", []domain.Event{su, domain.OnboardingCompleted{}}, 2, "cannot follow customer.signed_up.v1 (sign_up)"},
		{"verification success completes the journey", with(verified, domain.OnboardingCompleted{}), 4, "from verifying to active"},
		{"completed after a request", with(verified, req(domain.StepBilling), domain.OnboardingCompleted{}), 6, "cannot follow customer.step_requested.v1 (request_step)"},
		{"completion of the journey without welcome", with(verified, ok(domain.StepBilling), domain.OnboardingCompleted{}), 5, "from verified to active"},
		{"verdict in pending", []domain.Event{su, domain.VerificationRejected{CheckID: "c"}}, 2, "(reject_verification) from pending to pending"},
		{"skip when not paused", with(verified, domain.StepSkipped{Step: domain.StepCRM}), 5, "(skip_step) from verified to verified"},
		{"cancel without compensation left open", with(active[:6], domain.CancellationRequested{Operator: "op"}), 7, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckHistory("customer-x", tt.history)
			if tt.detail == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("want a *Problem, got %v", err)
			}
			if p.Version != tt.version || p.Kind != ProblemTransition || !strings.Contains(p.Detail, tt.detail) {
				t.Fatalf("got %v, want version %d with %q", p, tt.version, tt.detail)
			}
			if !errors.Is(err, ErrVerifyFailed) {
				t.Error("a problem must wrap ErrVerifyFailed")
			}
		})
	}
}
