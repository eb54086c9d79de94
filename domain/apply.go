package domain

import "maps"

// apply changes the customer by one fact. Appliers never fail and never
// check: validation happened in the command method that raised the event,
// or, for history, when it was first recorded.
func (c *Customer) apply(e Event) {
	switch e := e.(type) {
	case SignedUp:
		c.state = StatePending
		c.profile = SignupDetails{Email: e.Email, Company: e.Company, ContactName: e.ContactName, Country: e.Country, Plan: e.Plan}
		c.step = StepVerification
		for i := range c.steps {
			c.steps[i].group = 1
		}
	case StepRequested:
		p := c.progress(e.Step)
		p.group, p.attempt, p.inFlight, p.requested = e.AttemptGroup, e.Attempt, e.Attempt, true
		p.key = e.IdempotencyKey
		c.step = e.Step
		switch c.state {
		case StatePending:
			c.state = StateVerifying
		case StateVerified:
			c.state = StateProvisioning
		}
	case VerificationCheckStarted:
		c.checkID = e.CheckID
	case StepSucceeded:
		p := c.progress(e.Step)
		p.inFlight, p.succeeded, p.result = 0, true, maps.Clone(e.Result)
		c.lastError = ""
		if e.Step == StepVerification {
			c.checkID = ""
		}
		if c.state == StateVerifying && e.Step == StepVerification {
			c.state = StateVerified
		}
		if c.state == StateVerified || c.state == StateProvisioning {
			if next, ok := e.Step.Next(); ok {
				c.step = next
			}
		}
	case StepFailed:
		p := c.progress(e.Step)
		p.inFlight = 0
		p.failures++
		c.lastError = e.Message
	case VerificationRejected:
		c.progress(StepVerification).inFlight = 0
		c.checkID = ""
		c.lastError = e.Reason
		c.state = StateRejected
	case SupportNotified:
		c.supportDone = true
	case Paused:
		p := c.progress(e.Step)
		p.inFlight = 0
		if e.Class != ErrorTransient || e.Step == StepVerification {
			p.key = "" // the provider's answer is final: a retry asks anew
		}
		if e.Step == StepVerification {
			c.checkID = ""
		}
		c.pausedStep, c.pauseReason = e.Step, e.Reason
		c.state = StatePaused
	case StepRetryRequested:
		p := c.progress(e.Step)
		p.group, p.attempt = e.AttemptGroup, 0
		c.step = e.Step
		c.pausedStep, c.pauseReason = "", ""
		c.state = StateProvisioning
		if e.Step == StepVerification {
			c.state = StateVerifying
		}
	case StepSkipped:
		c.progress(e.Step).skipped = true
		if next, ok := e.Step.Next(); ok {
			c.step = next
		}
		c.pausedStep, c.pauseReason = "", ""
		c.state = StateProvisioning
	case CancellationRequested:
		c.cancelReason = e.Reason
		c.pausedStep, c.pauseReason = "", ""
		c.state = StateCancelling
	case BillingClosed:
		c.progress(StepBilling).compensated = true
	case TenantDeprovisioned:
		c.progress(StepTenant).compensated = true
	case Cancelled:
		c.state = StateCancelled
	case OnboardingCompleted:
		c.state = StateActive
	case ResultIgnored:
		// Recorded for the audit trail; it changes nothing.
	}
}
