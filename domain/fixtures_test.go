package domain_test

import (
	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
)

var custID = uuid.MustParse("0190f5a4-7e1a-7c3e-9b1a-3f6d2c1b0a99")

func key(step domain.Step, group int) string { return domain.IdempotencyKey(custID, step, group) }

func signedUp() domain.SignedUp {
	return domain.SignedUp{CustomerID: custID.String(), Email: "ada@example.com", Company: "Analytical Engines Ltd", ContactName: "Ada Lovelace", Country: "GB", Plan: domain.PlanGrowth}
}

func req(step domain.Step, attempt, group int) domain.StepRequested {
	return domain.StepRequested{Step: step, Attempt: attempt, AttemptGroup: group, IdempotencyKey: key(step, group)}
}

func ok(step domain.Step, attempt int, kv ...string) domain.StepSucceeded {
	res := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		res[kv[i]] = kv[i+1]
	}
	if len(res) == 0 {
		res = nil
	}
	return domain.StepSucceeded{Step: step, Attempt: attempt, Result: res}
}

// Histories that bring a customer into each state.
var (
	hPending   = []domain.Event{signedUp()}
	hVerifying = append(clone(hPending), req(domain.StepVerification, 1, 1), domain.VerificationCheckStarted{Attempt: 1, CheckID: "chk-1"})
	hVerified  = append(clone(hVerifying), ok(domain.StepVerification, 1, "check_id", "chk-1"))
	// Billing done, tenant in flight.
	hProvisioning = append(clone(hVerified), req(domain.StepBilling, 1, 1), ok(domain.StepBilling, 1, "account_id", "acct-1"), req(domain.StepTenant, 1, 1))
	hAtWelcome    = append(clone(hProvisioning), ok(domain.StepTenant, 1, "tenant_id", "t-1"), req(domain.StepCRM, 1, 1), ok(domain.StepCRM, 1), req(domain.StepWelcome, 1, 1))
	hActive       = append(clone(hAtWelcome), ok(domain.StepWelcome, 1), domain.OnboardingCompleted{})
	hRejected     = append(clone(hVerifying), domain.VerificationRejected{CheckID: "chk-1", Reason: "document mismatch"})
	hPaused       = append(clone(hProvisioning), domain.StepFailed{Step: domain.StepTenant, Attempt: 1, Class: domain.ErrorPermanent, Message: "quota"}, domain.Paused{Step: domain.StepTenant, Reason: "quota", Attempts: 1, Class: domain.ErrorPermanent})
	// Cancelled while the tenant was in flight: billing and tenant to undo.
	hCancelling = append(clone(hProvisioning), domain.CancellationRequested{Operator: "op", Reason: "fraud", Compensate: []domain.Step{domain.StepBilling, domain.StepTenant}})
	// Provisioning, waiting for the tenant provider.
	hBlocked   = append(clone(hProvisioning), domain.Blocked{Step: domain.StepTenant, Provider: "provisioning", Attempt: 1, Reason: "breaker open"})
	hCancelled = append(clone(hPending), domain.CancellationRequested{Operator: "op", Reason: "dup"}, domain.Cancelled{Reason: "dup"})
)

// stateHistories gives one history per state.
var stateHistories = map[domain.State][]domain.Event{
	domain.StatePending:      hPending,
	domain.StateVerifying:    hVerifying,
	domain.StateVerified:     hVerified,
	domain.StateProvisioning: hProvisioning,
	domain.StateActive:       hActive,
	domain.StateRejected:     hRejected,
	domain.StatePaused:       hPaused,
	domain.StateCancelling:   hCancelling,
	domain.StateCancelled:    hCancelled,
}

func clone(h []domain.Event) []domain.Event { return append([]domain.Event(nil), h...) }

// invoke runs cmd against c with the arguments most likely to be valid for
// c's data, so that a rejection tests the table, not the arguments.
func invoke(c *domain.Customer, cmd domain.Command) error {
	inFlight := c.CurrentStep()
	for _, s := range domain.Steps() {
		if c.InFlight(s) != 0 {
			inFlight = s
		}
	}
	attempt := max(c.InFlight(inFlight), 1)
	check := c.CheckID()
	if check == "" {
		check = "chk-1"
	}
	switch cmd {
	case domain.CmdSignUp:
		return nil // creation: covered by TestSignUpIsCreationOnly
	case domain.CmdRequestStep:
		_, err := c.RequestStep(c.CurrentStep())
		return err
	case domain.CmdStartCheck:
		return c.RecordCheckStarted(max(c.InFlight(domain.StepVerification), 1), "chk-new")
	case domain.CmdRecordStepSucceeded:
		if inFlight == domain.StepVerification {
			return c.RecordVerdict(check, true, "")
		}
		return c.RecordStepSucceeded(inFlight, attempt, nil)
	case domain.CmdRecordStepFailed:
		return c.RecordStepFailed(inFlight, attempt, domain.ErrorTransient, "503")
	case domain.CmdRejectVerification:
		return c.RecordVerdict(check, false, "mismatch")
	case domain.CmdNotifySupport:
		return c.NotifySupport("email", "rejected")
	case domain.CmdPause:
		return c.Pause(c.CurrentStep(), domain.ErrorPermanent, "declined")
	case domain.CmdRetryStep:
		return c.RetryStep("op@example.com", "outage over")
	case domain.CmdSkipStep:
		return c.SkipStep("op@example.com", "not needed")
	case domain.CmdCancel:
		return c.Cancel("op@example.com", "customer asked")
	case domain.CmdRecordCompensation:
		return c.RecordBillingClosed("acct-1", true)
	case domain.CmdIgnoreResult:
		return c.IgnoreResult(domain.StepVerification, "kyc-webhook", "late verdict")
	case domain.CmdBlock:
		return c.Block(inFlight, attempt, "payments", "breaker open")
	case domain.CmdUnblock:
		return c.Unblock()
	case domain.CmdErasePersonalData:
		return c.ErasePersonalData("op@example.com", "data subject request")
	case domain.CmdRecordProviderErase:
		return c.RecordProviderDataDeleted("crm", true)
	}
	panic("invoke: unknown command " + string(cmd))
}
