package domain

import "maps"

// apply changes the customer by one fact. Appliers never fail and never
// check: validation happened in the command method that raised the event,
// or, for history, when it was first recorded. The state comes from the
// transition table, through NextState; the appliers keep the rest.
func (c *Customer) apply(e Event) {
	c.state = NextState(c.state, e)
	switch e := e.(type) {
	case SignedUp:
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
	case VerificationCheckStarted:
		c.checkID = e.CheckID
	case StepSucceeded:
		p := c.progress(e.Step)
		p.inFlight, p.succeeded, p.result = 0, true, maps.Clone(e.Result)
		c.lastError = ""
		if e.Step == StepVerification {
			c.checkID = ""
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
	case StepRetryRequested:
		p := c.progress(e.Step)
		p.group, p.attempt = e.AttemptGroup, 0
		c.step = e.Step
		c.pausedStep, c.pauseReason = "", ""
	case StepSkipped:
		c.progress(e.Step).skipped = true
		if next, ok := e.Step.Next(); ok {
			c.step = next
		}
		c.pausedStep, c.pauseReason = "", ""
	case CancellationRequested:
		c.cancelReason = e.Reason
		c.pausedStep, c.pauseReason = "", ""
		c.blockedOn = "" // a cancelled customer waits for nothing
	case Blocked:
		p := c.progress(e.Step)
		p.inFlight, p.attempt = 0, max(e.Attempt-1, 0) // the attempt is given back
		c.blockedOn = e.Provider
	case Unblocked:
		c.blockedOn = ""
	case BillingClosed:
		c.progress(StepBilling).compensated = true
	case TenantDeprovisioned:
		c.progress(StepTenant).compensated = true
	case PersonalDataErased:
		c.erased = true
		c.profile = c.profile.erased()
		if c.state == StateRejected {
			c.lastError = Erased // the verdict's reason
		}
	case ProviderDataDeleted:
		c.providerErasures = append(c.providerErasures, e.Provider)
	case Cancelled, OnboardingCompleted, ResultIgnored:
		// They change the state only, or nothing.
	}
}
