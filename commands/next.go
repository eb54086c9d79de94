package commands

import "github.com/onboard/onboard/domain"

// RequestNext requests the customer's next step when the journey goes on
// and nothing is in flight. Whoever records a step's success calls it, so
// that the success and the next request are one append: the next manager
// gets to work without a round trip through the relay, and the relay
// routes the success to no one (see process.RouteOf). A refusal raises
// nothing, and leaves the request to the success's own reaction.
func RequestNext(c *domain.Customer) {
	if next, ok := NextRequest(c); ok {
		_, _ = c.RequestStep(next)
	}
}

// NextRequest names the step to request next, if the journey goes on and
// nothing is in flight.
func NextRequest(c *domain.Customer) (domain.Step, bool) {
	switch c.State() {
	case domain.StateVerified, domain.StateProvisioning:
		step := c.CurrentStep()
		return step, c.InFlight(step) == 0 && !c.Snapshot().Steps[stepIndex(step)].Succeeded
	}
	return "", false
}

func stepIndex(s domain.Step) int {
	for i, x := range domain.Steps() {
		if x == s {
			return i
		}
	}
	return 0
}
