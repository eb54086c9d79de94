package domain_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/onboard/onboard/domain"
)

func load(t *testing.T, h []domain.Event) *domain.Customer {
	t.Helper()
	c, err := domain.FromHistory(custID, h)
	if err != nil {
		t.Fatalf("FromHistory: %v", err)
	}
	return c
}

func TestFixturesReachTheirStates(t *testing.T) {
	for _, s := range domain.States() {
		h, ok := stateHistories[s]
		if !ok {
			t.Fatalf("no history for state %s", s)
		}
		if got := load(t, h).State(); got != s {
			t.Errorf("history for %s lands in %s", s, got)
		}
	}
}

// TestEveryNonEdgeIsRejected runs every command in every state that has no
// edge for it, and expects the typed error naming both: never a no-op.
func TestEveryNonEdgeIsRejected(t *testing.T) {
	for _, s := range domain.States() {
		for _, cmd := range domain.Commands() {
			if domain.Allowed(s, cmd) || cmd == domain.CmdSignUp {
				continue
			}
			t.Run(string(s)+"/"+string(cmd), func(t *testing.T) {
				c := load(t, stateHistories[s])
				before := c.Snapshot()
				err := invoke(c, cmd)
				if !errors.Is(err, domain.ErrInvalidTransition) {
					t.Fatalf("err = %v, want ErrInvalidTransition", err)
				}
				var ce *domain.CommandError
				if !errors.As(err, &ce) || ce.State != s || ce.Command != cmd {
					t.Fatalf("err = %#v, want CommandError{State: %s, Command: %s}", err, s, cmd)
				}
				if len(c.Changes()) != 0 || !reflect.DeepEqual(before, c.Snapshot()) {
					t.Fatalf("a rejected command changed the customer")
				}
			})
		}
	}
}

func TestSignUpIsCreationOnly(t *testing.T) {
	for _, s := range domain.States() {
		if domain.Allowed(s, domain.CmdSignUp) {
			t.Errorf("sign_up allowed in %s: an existing customer cannot sign up again", s)
		}
	}
}

func TestTerminalStatesOnlyRecordIgnoredResults(t *testing.T) {
	for _, s := range domain.States() {
		if !s.Terminal() {
			continue
		}
		for _, cmd := range domain.AllowedCommands(s) {
			for _, tr := range domain.Transitions() {
				if tr.From == s && tr.Command == cmd && tr.To != s {
					t.Errorf("terminal state %s leaves to %s by %s", s, tr.To, cmd)
				}
			}
		}
	}
}

type edgeCase struct {
	name  string
	given []domain.Event
	when  func(c *domain.Customer) error
	then  []domain.Event
	state domain.State
	// wantErr, when set, is the sentinel the command must fail with.
	wantErr error
}

func edgeCases() []edgeCase {
	compensateBoth := []domain.Step{domain.StepBilling, domain.StepTenant}
	pausedAt := func(h []domain.Event, step domain.Step, attempt int) []domain.Event {
		return append(clone(h), domain.StepFailed{Step: step, Attempt: attempt, Class: domain.ErrorPermanent, Message: "no"}, domain.Paused{Step: step, Reason: "no", Attempts: attempt, Class: domain.ErrorPermanent})
	}
	hCRMInFlight := append(clone(hProvisioning), ok(domain.StepTenant, 1, "tenant_id", "t-1"), req(domain.StepCRM, 1, 1))
	hBillingInFlight := append(clone(hVerified), req(domain.StepBilling, 1, 1))
	hCancellingBillingOnly := append(clone(hBillingInFlight), domain.StepFailed{Step: domain.StepBilling, Attempt: 1, Class: domain.ErrorTransient, Message: "lost"}, domain.CancellationRequested{Operator: "op", Reason: "r", Compensate: []domain.Step{domain.StepBilling}})
	return []edgeCase{
		{name: "verification requested", given: hPending,
			when: func(c *domain.Customer) error { _, err := c.RequestStep(domain.StepVerification); return err },
			then: []domain.Event{req(domain.StepVerification, 1, 1)}, state: domain.StateVerifying},
		{name: "verification retried after a transient failure",
			given: append(clone(hPending), req(domain.StepVerification, 1, 1), domain.StepFailed{Step: domain.StepVerification, Attempt: 1, Class: domain.ErrorTransient, Message: "503"}),
			when:  func(c *domain.Customer) error { _, err := c.RequestStep(domain.StepVerification); return err },
			then:  []domain.Event{req(domain.StepVerification, 2, 1)}, state: domain.StateVerifying},
		{name: "request while in flight is a duplicate", given: hVerifying,
			when:    func(c *domain.Customer) error { _, err := c.RequestStep(domain.StepVerification); return err },
			wantErr: domain.ErrDuplicateCommand},
		{name: "request of another step than the current one", given: hVerified,
			when:    func(c *domain.Customer) error { _, err := c.RequestStep(domain.StepTenant); return err },
			wantErr: domain.ErrInvalidTransition},
		{name: "billing requested", given: hVerified,
			when: func(c *domain.Customer) error { _, err := c.RequestStep(domain.StepBilling); return err },
			then: []domain.Event{req(domain.StepBilling, 1, 1)}, state: domain.StateProvisioning},
		{name: "crm requested", given: append(clone(hProvisioning), ok(domain.StepTenant, 1)),
			when: func(c *domain.Customer) error { _, err := c.RequestStep(domain.StepCRM); return err },
			then: []domain.Event{req(domain.StepCRM, 1, 1)}, state: domain.StateProvisioning},
		{name: "check started", given: append(clone(hPending), req(domain.StepVerification, 1, 1)),
			when: func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk-9") },
			then: []domain.Event{domain.VerificationCheckStarted{Attempt: 1, CheckID: "chk-9"}}, state: domain.StateVerifying},
		{name: "check started twice", given: hVerifying,
			when:    func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk-1") },
			wantErr: domain.ErrDuplicateCommand},
		{name: "identity verified", given: hVerifying,
			when: func(c *domain.Customer) error { return c.RecordVerdict("chk-1", true, "") },
			then: []domain.Event{ok(domain.StepVerification, 1, "check_id", "chk-1")}, state: domain.StateVerified},
		{name: "verdict for another check is stale", given: hVerifying,
			when:    func(c *domain.Customer) error { return c.RecordVerdict("chk-0", true, "") },
			wantErr: domain.ErrStaleResult},
		{name: "verification succeeds only by a verdict", given: append(clone(hPending), req(domain.StepVerification, 1, 1)),
			when:    func(c *domain.Customer) error { return c.RecordStepSucceeded(domain.StepVerification, 1, nil) },
			wantErr: domain.ErrInvalidTransition},
		{name: "tenant succeeded", given: hProvisioning,
			when: func(c *domain.Customer) error {
				return c.RecordStepSucceeded(domain.StepTenant, 1, map[string]string{"tenant_id": "t-1"})
			},
			then: []domain.Event{ok(domain.StepTenant, 1, "tenant_id", "t-1")}, state: domain.StateProvisioning},
		{name: "duplicate success is stale", given: append(clone(hProvisioning), ok(domain.StepTenant, 1)),
			when:    func(c *domain.Customer) error { return c.RecordStepSucceeded(domain.StepTenant, 1, nil) },
			wantErr: domain.ErrStaleResult},
		{name: "welcome succeeded completes onboarding", given: hAtWelcome,
			when: func(c *domain.Customer) error { return c.RecordStepSucceeded(domain.StepWelcome, 1, nil) },
			then: []domain.Event{ok(domain.StepWelcome, 1), domain.OnboardingCompleted{}}, state: domain.StateActive},
		{name: "late billing success in cancelling keeps its compensation", given: append(clone(hBillingInFlight), domain.CancellationRequested{Operator: "op", Reason: "r", Compensate: []domain.Step{domain.StepBilling}}),
			when: func(c *domain.Customer) error {
				return c.RecordStepSucceeded(domain.StepBilling, 1, map[string]string{"account_id": "a"})
			},
			then: []domain.Event{ok(domain.StepBilling, 1, "account_id", "a")}, state: domain.StateCancelling},
		{name: "late crm success when all is compensated cancels",
			given: append(clone(hCRMInFlight), domain.CancellationRequested{Operator: "op", Reason: "r", Compensate: compensateBoth}, domain.BillingClosed{AccountID: "acct-1", Existed: true}, domain.TenantDeprovisioned{TenantID: "t-1", Existed: true}),
			when:  func(c *domain.Customer) error { return c.RecordStepSucceeded(domain.StepCRM, 1, nil) },
			then:  []domain.Event{ok(domain.StepCRM, 1), domain.Cancelled{Reason: "r"}}, state: domain.StateCancelled},
		{name: "verification failed", given: hVerifying,
			when: func(c *domain.Customer) error {
				return c.RecordStepFailed(domain.StepVerification, 1, domain.ErrorTransient, "timeout")
			},
			then:  []domain.Event{domain.StepFailed{Step: domain.StepVerification, Attempt: 1, Class: domain.ErrorTransient, Message: "timeout"}},
			state: domain.StateVerifying},
		{name: "tenant failed", given: hProvisioning,
			when: func(c *domain.Customer) error {
				return c.RecordStepFailed(domain.StepTenant, 1, domain.ErrorPermanent, "quota")
			},
			then:  []domain.Event{domain.StepFailed{Step: domain.StepTenant, Attempt: 1, Class: domain.ErrorPermanent, Message: "quota"}},
			state: domain.StateProvisioning},
		{name: "failure with an unknown class", given: hProvisioning,
			when:    func(c *domain.Customer) error { return c.RecordStepFailed(domain.StepTenant, 1, "flaky", "x") },
			wantErr: domain.ErrValidation},
		{name: "in-flight billing fails in cancelling", given: append(clone(hBillingInFlight), domain.CancellationRequested{Operator: "op", Reason: "r", Compensate: []domain.Step{domain.StepBilling}}),
			when: func(c *domain.Customer) error {
				return c.RecordStepFailed(domain.StepBilling, 1, domain.ErrorTransient, "503")
			},
			then:  []domain.Event{domain.StepFailed{Step: domain.StepBilling, Attempt: 1, Class: domain.ErrorTransient, Message: "503"}},
			state: domain.StateCancelling},
		{name: "in-flight crm fails in cancelling with nothing left",
			given: append(clone(hCRMInFlight), domain.CancellationRequested{Operator: "op", Reason: "r", Compensate: compensateBoth}, domain.BillingClosed{Existed: true}, domain.TenantDeprovisioned{Existed: true}),
			when: func(c *domain.Customer) error {
				return c.RecordStepFailed(domain.StepCRM, 1, domain.ErrorTransient, "503")
			},
			then:  []domain.Event{domain.StepFailed{Step: domain.StepCRM, Attempt: 1, Class: domain.ErrorTransient, Message: "503"}, domain.Cancelled{Reason: "r"}},
			state: domain.StateCancelled},
		{name: "verification rejected", given: hVerifying,
			when: func(c *domain.Customer) error { return c.RecordVerdict("chk-1", false, "document mismatch") },
			then: []domain.Event{domain.VerificationRejected{CheckID: "chk-1", Reason: "document mismatch"}}, state: domain.StateRejected},
		{name: "support notified", given: hRejected,
			when: func(c *domain.Customer) error { return c.NotifySupport("email", "rejected") },
			then: []domain.Event{domain.SupportNotified{Channel: "email", Reason: "rejected"}}, state: domain.StateRejected},
		{name: "support notified twice", given: append(clone(hRejected), domain.SupportNotified{Channel: "email"}),
			when:    func(c *domain.Customer) error { return c.NotifySupport("email", "rejected") },
			wantErr: domain.ErrDuplicateCommand},
		{name: "verification paused (KYC silent)", given: hVerifying,
			when: func(c *domain.Customer) error {
				return c.Pause(domain.StepVerification, domain.ErrorTransient, "no verdict before the deadline")
			},
			then:  []domain.Event{domain.Paused{Step: domain.StepVerification, Reason: "no verdict before the deadline", Attempts: 1, Class: domain.ErrorTransient}},
			state: domain.StatePaused},
		{name: "tenant paused", given: append(clone(hProvisioning), domain.StepFailed{Step: domain.StepTenant, Attempt: 1, Class: domain.ErrorPermanent, Message: "quota"}),
			when:  func(c *domain.Customer) error { return c.Pause(domain.StepTenant, domain.ErrorPermanent, "quota") },
			then:  []domain.Event{domain.Paused{Step: domain.StepTenant, Reason: "quota", Attempts: 1, Class: domain.ErrorPermanent}},
			state: domain.StatePaused},
		{name: "pause needs a reason", given: hProvisioning,
			when:    func(c *domain.Customer) error { return c.Pause(domain.StepTenant, domain.ErrorPermanent, "") },
			wantErr: domain.ErrValidation},
		{name: "operator retries verification",
			given: append(clone(hVerifying), domain.Paused{Step: domain.StepVerification, Reason: "silent", Attempts: 1}),
			when:  func(c *domain.Customer) error { return c.RetryStep("op@example.com", "") },
			then:  []domain.Event{domain.StepRetryRequested{Step: domain.StepVerification, Operator: "op@example.com", AttemptGroup: 2}},
			state: domain.StateVerifying},
		{name: "operator retries tenant", given: hPaused,
			when:  func(c *domain.Customer) error { return c.RetryStep("op@example.com", "quota raised") },
			then:  []domain.Event{domain.StepRetryRequested{Step: domain.StepTenant, Operator: "op@example.com", Reason: "quota raised", AttemptGroup: 2}},
			state: domain.StateProvisioning},
		{name: "retry needs an operator", given: hPaused,
			when:    func(c *domain.Customer) error { return c.RetryStep("", "") },
			wantErr: domain.ErrValidation},
		{name: "operator skips crm", given: pausedAt(hCRMInFlight, domain.StepCRM, 1),
			when:  func(c *domain.Customer) error { return c.SkipStep("op@example.com", "CRM down, sync later") },
			then:  []domain.Event{domain.StepSkipped{Step: domain.StepCRM, Operator: "op@example.com", Reason: "CRM down, sync later"}},
			state: domain.StateProvisioning},
		{name: "operator skips welcome and completes", given: pausedAt(hAtWelcome, domain.StepWelcome, 1),
			when: func(c *domain.Customer) error { return c.SkipStep("op@example.com", "bounced") },
			then: []domain.Event{domain.StepSkipped{Step: domain.StepWelcome, Operator: "op@example.com", Reason: "bounced"},
				domain.OnboardingCompleted{SkippedSteps: []domain.Step{domain.StepWelcome}}},
			state: domain.StateActive},
		{name: "tenant cannot be skipped", given: hPaused,
			when:    func(c *domain.Customer) error { return c.SkipStep("op@example.com", "why not") },
			wantErr: domain.ErrInvalidTransition},
		{name: "skip needs a reason", given: pausedAt(hCRMInFlight, domain.StepCRM, 1),
			when:    func(c *domain.Customer) error { return c.SkipStep("op@example.com", "") },
			wantErr: domain.ErrValidation},
		{name: "cancel pending", given: hPending,
			when:  func(c *domain.Customer) error { return c.Cancel("op", "duplicate signup") },
			then:  []domain.Event{domain.CancellationRequested{Operator: "op", Reason: "duplicate signup"}, domain.Cancelled{Reason: "duplicate signup"}},
			state: domain.StateCancelled},
		{name: "cancel verifying", given: hVerifying,
			when:  func(c *domain.Customer) error { return c.Cancel("op", "r") },
			then:  []domain.Event{domain.CancellationRequested{Operator: "op", Reason: "r"}, domain.Cancelled{Reason: "r"}},
			state: domain.StateCancelled},
		{name: "cancel verified", given: hVerified,
			when:  func(c *domain.Customer) error { return c.Cancel("op", "r") },
			then:  []domain.Event{domain.CancellationRequested{Operator: "op", Reason: "r"}, domain.Cancelled{Reason: "r"}},
			state: domain.StateCancelled},
		{name: "cancel provisioning compensates billing and tenant", given: hProvisioning,
			when:  func(c *domain.Customer) error { return c.Cancel("op", "r") },
			then:  []domain.Event{domain.CancellationRequested{Operator: "op", Reason: "r", Compensate: compensateBoth}},
			state: domain.StateCancelling},
		{name: "cancel paused at tenant compensates", given: hPaused,
			when:  func(c *domain.Customer) error { return c.Cancel("op", "r") },
			then:  []domain.Event{domain.CancellationRequested{Operator: "op", Reason: "r", Compensate: compensateBoth}},
			state: domain.StateCancelling},
		{name: "cancel paused at verification has nothing to undo",
			given: append(clone(hVerifying), domain.Paused{Step: domain.StepVerification, Reason: "silent", Attempts: 1}),
			when:  func(c *domain.Customer) error { return c.Cancel("op", "r") },
			then:  []domain.Event{domain.CancellationRequested{Operator: "op", Reason: "r"}, domain.Cancelled{Reason: "r"}},
			state: domain.StateCancelled},
		{name: "cancel provisioning before any effect is requested",
			given: append(clone(hVerified), req(domain.StepBilling, 1, 1), domain.StepFailed{Step: domain.StepBilling, Attempt: 1, Class: domain.ErrorPermanent, Message: "declined"}),
			when:  func(c *domain.Customer) error { return c.Cancel("op", "r") },
			then:  []domain.Event{domain.CancellationRequested{Operator: "op", Reason: "r", Compensate: []domain.Step{domain.StepBilling}}},
			state: domain.StateCancelling},
		{name: "cancel needs a reason", given: hProvisioning,
			when:    func(c *domain.Customer) error { return c.Cancel("op", "") },
			wantErr: domain.ErrValidation},
		{name: "billing closed, tenant still to undo", given: append(clone(hCancelling), domain.StepSucceeded{Step: domain.StepTenant, Attempt: 1}),
			when:  func(c *domain.Customer) error { return c.RecordBillingClosed("acct-1", true) },
			then:  []domain.Event{domain.BillingClosed{AccountID: "acct-1", Existed: true}},
			state: domain.StateCancelling},
		{name: "last compensation cancels", given: hCancellingBillingOnly,
			when:  func(c *domain.Customer) error { return c.RecordBillingClosed("", false) },
			then:  []domain.Event{domain.BillingClosed{Existed: false}, domain.Cancelled{Reason: "r"}},
			state: domain.StateCancelled},
		{name: "compensation waits for the in-flight attempt", given: hCancelling,
			when:    func(c *domain.Customer) error { return c.RecordTenantDeprovisioned("t-1", true) },
			wantErr: domain.ErrInvalidTransition},
		{name: "a customer blocked at verification gives its attempt back", given: hVerifying,
			when:  func(c *domain.Customer) error { return c.Block(domain.StepVerification, 1, "kyc", "breaker open") },
			then:  []domain.Event{domain.Blocked{Step: domain.StepVerification, Provider: "kyc", Attempt: 1, Reason: "breaker open"}},
			state: domain.StateVerifying},
		{name: "a customer blocked in provisioning", given: hProvisioning,
			when:  func(c *domain.Customer) error { return c.Block(domain.StepTenant, 1, "provisioning", "breaker open") },
			then:  []domain.Event{domain.Blocked{Step: domain.StepTenant, Provider: "provisioning", Attempt: 1, Reason: "breaker open"}},
			state: domain.StateProvisioning},
		{name: "block needs the attempt in flight", given: hProvisioning,
			when:    func(c *domain.Customer) error { return c.Block(domain.StepTenant, 2, "provisioning", "breaker open") },
			wantErr: domain.ErrStaleResult},
		{name: "unblock at verification", given: append(clone(hVerifying), domain.Blocked{Step: domain.StepVerification, Provider: "kyc", Attempt: 1}),
			when:  func(c *domain.Customer) error { return c.Unblock() },
			then:  []domain.Event{domain.Unblocked{Step: domain.StepVerification, Provider: "kyc"}},
			state: domain.StateVerifying},
		{name: "unblock in provisioning", given: hBlocked,
			when:  func(c *domain.Customer) error { return c.Unblock() },
			then:  []domain.Event{domain.Unblocked{Step: domain.StepTenant, Provider: "provisioning"}},
			state: domain.StateProvisioning},
		{name: "unblock of a customer that waits for nothing", given: hProvisioning,
			when:    func(c *domain.Customer) error { return c.Unblock() },
			wantErr: domain.ErrDuplicateCommand},
		{name: "a blocked customer is not requested", given: hBlocked,
			when:    func(c *domain.Customer) error { _, err := c.RequestStep(domain.StepTenant); return err },
			wantErr: domain.ErrInvalidTransition},
		{name: "a blocked customer is not blocked again", given: hBlocked,
			when:    func(c *domain.Customer) error { return c.Block(domain.StepTenant, 1, "provisioning", "breaker open") },
			wantErr: domain.ErrDuplicateCommand},
		{name: "unblocked, the step is requested with the attempt given back", given: append(clone(hBlocked), domain.Unblocked{Step: domain.StepTenant, Provider: "provisioning"}),
			when: func(c *domain.Customer) error { _, err := c.RequestStep(domain.StepTenant); return err },
			then: []domain.Event{req(domain.StepTenant, 1, 1)}, state: domain.StateProvisioning},
		{name: "compensation twice", given: append(clone(hCancellingBillingOnly[:len(hCancellingBillingOnly)-1]), domain.CancellationRequested{Operator: "op", Reason: "r", Compensate: []domain.Step{domain.StepBilling}}, domain.BillingClosed{}),
			when:    func(c *domain.Customer) error { return c.RecordBillingClosed("", false) },
			wantErr: domain.ErrDuplicateCommand},
	}
}

func ignoredCases() []edgeCase {
	var out []edgeCase
	for _, s := range domain.States() {
		out = append(out, edgeCase{
			name: "late result recorded in " + string(s), given: stateHistories[s],
			when: func(c *domain.Customer) error {
				return c.IgnoreResult(domain.StepVerification, "kyc-webhook", "late verdict")
			},
			then:  []domain.Event{domain.ResultIgnored{Step: domain.StepVerification, Source: "kyc-webhook", Reason: "late verdict"}},
			state: s,
		})
	}
	return out
}

// erasureCases erase every customer whose journey has ended or is being
// undone, and record a provider's deletion after it; a customer still
// onboarding must be cancelled first.
func erasureCases() []edgeCase {
	var out []edgeCase
	for _, s := range domain.States() {
		erased := domain.PersonalDataErased{Operator: "op", Reason: "art. 17"}
		if !s.Terminal() && s != domain.StateCancelling {
			out = append(out, edgeCase{name: "erasure refused in " + string(s), given: stateHistories[s],
				when:    func(c *domain.Customer) error { return c.ErasePersonalData("op", "art. 17") },
				wantErr: domain.ErrInvalidTransition})
			continue
		}
		out = append(out, edgeCase{name: "erased in " + string(s), given: stateHistories[s],
			when:  func(c *domain.Customer) error { return c.ErasePersonalData("op", "art. 17") },
			then:  []domain.Event{erased},
			state: s,
		}, edgeCase{name: "crm deletion recorded in " + string(s), given: append(clone(stateHistories[s]), erased),
			when:  func(c *domain.Customer) error { return c.RecordProviderDataDeleted("crm", true) },
			then:  []domain.Event{domain.ProviderDataDeleted{Provider: "crm", Existed: true}},
			state: s,
		})
	}
	return out
}

// TestEdges runs given-events / when-command / then-events cases, and fails
// when an edge of the transition table is taken by no case.
func TestEdges(t *testing.T) {
	taken := map[domain.Transition]bool{{Command: domain.CmdSignUp, To: domain.StatePending}: true}
	for _, tc := range append(append(edgeCases(), ignoredCases()...), erasureCases()...) {
		t.Run(tc.name, func(t *testing.T) {
			c := load(t, tc.given)
			from := c.State()
			err := tc.when(c)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if len(c.Changes()) != 0 {
					t.Fatalf("a rejected command raised %v", c.Changes())
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got := c.Changes(); !reflect.DeepEqual(got, tc.then) {
				t.Fatalf("events:\n got %#v\nwant %#v", got, tc.then)
			}
			if c.State() != tc.state {
				t.Fatalf("state = %s, want %s", c.State(), tc.state)
			}
			taken[domain.Transition{From: from, Command: domain.CommandOf(c.Changes()[0]), To: c.State()}] = true
			// The events, replayed, land in the same place.
			replayed := load(t, append(clone(tc.given), c.Changes()...))
			if !reflect.DeepEqual(replayed.Snapshot(), c.Snapshot()) {
				t.Fatalf("replay differs:\n got %#v\nwant %#v", replayed.Snapshot(), c.Snapshot())
			}
		})
	}
	for _, tr := range domain.Transitions() {
		if !taken[domain.Transition{From: tr.From, Command: tr.Command, To: tr.To}] {
			t.Errorf("edge %q --%s--> %s is taken by no test case", tr.From, tr.Command, tr.To)
		}
	}
}

// An operator retry keeps the idempotency key where the provider may have
// done the work and lost the answer (a run of transient failures), and asks
// anew where its answer is final: a permanent failure, stored under the old
// key, or a verification, whose new check doubles nothing.
func TestRetryKeepsTheKeyWhenTheOutcomeIsUnknown(t *testing.T) {
	pause := func(step domain.Step, class domain.ErrorClass) []domain.Event {
		h := hVerified
		if step == domain.StepVerification {
			h = hPending
		}
		return append(clone(h), req(step, 1, 1),
			domain.StepFailed{Step: step, Attempt: 1, Class: class, Message: "boom"},
			domain.Paused{Step: step, Reason: "boom", Attempts: 1, Class: class},
			domain.StepRetryRequested{Step: step, Operator: "op", AttemptGroup: 2})
	}
	for _, tc := range []struct {
		name    string
		given   []domain.Event
		step    domain.Step
		wantKey string
	}{
		{"billing after transient failures", pause(domain.StepBilling, domain.ErrorTransient), domain.StepBilling, key(domain.StepBilling, 1)},
		{"billing after a decline", pause(domain.StepBilling, domain.ErrorPermanent), domain.StepBilling, key(domain.StepBilling, 2)},
		{"pause of an unknown class", pause(domain.StepBilling, ""), domain.StepBilling, key(domain.StepBilling, 2)},
		{"verification after a silence", pause(domain.StepVerification, domain.ErrorTransient), domain.StepVerification, key(domain.StepVerification, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := load(t, tc.given)
			e, err := c.RequestStep(tc.step)
			if err != nil {
				t.Fatal(err)
			}
			if e.AttemptGroup != 2 || e.Attempt != 1 || e.IdempotencyKey != tc.wantKey {
				t.Fatalf("requested group %d attempt %d key %q, want group 2 attempt 1 key %q", e.AttemptGroup, e.Attempt, e.IdempotencyKey, tc.wantKey)
			}
		})
	}
}
