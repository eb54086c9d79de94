package operator

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/projections"
)

// Deadlines are how long a customer may wait for its next event, per
// state ("verifying") or state and step ("provisioning/billing", which
// wins over the state's).
type Deadlines map[string]time.Duration

// stuckGrace is added to every derived deadline: time for the worker to
// react, the provider's call timeout and a loaded machine.
const stuckGrace = 2 * time.Minute

// DefaultDeadlines derives the deadlines from the retry and KYC settings:
// a step's next event comes at the latest after the longest backoff
// between two attempts; a KYC verdict after the deadline and every poll;
// a compensation's after the longest backoff. A paused customer waits for
// an operator, and is stuck after a day.
func DefaultDeadlines(p Policy) Deadlines {
	p = p.WithDefaults()
	backoff := func(attempt int) time.Duration {
		d := p.BaseDelay << min(attempt-1, 40)
		if d <= 0 || d > p.MaxDelay {
			return p.MaxDelay
		}
		return d
	}
	d := Deadlines{
		string(domain.StatePending):    stuckGrace,
		string(domain.StateVerified):   stuckGrace,
		string(domain.StateCancelling): p.MaxDelay + stuckGrace,
		string(domain.StatePaused):     24 * time.Hour,
	}
	kyc := p.VerificationDeadline
	for n := 1; n < p.VerificationPolls; n++ {
		kyc += backoff(n) + p.BaseDelay
	}
	d[string(domain.StateVerifying)] = max(kyc, backoff(p.maxAttempts(domain.StepVerification))) + stuckGrace
	for _, s := range domain.Steps()[1:] {
		d[string(domain.StateProvisioning)+"/"+string(s)] = backoff(p.maxAttempts(s)) + stuckGrace
	}
	return d
}

// ParseDeadlines reads "verifying=40m,provisioning/billing=10m" over
// base: each entry replaces base's.
func ParseDeadlines(s string, base Deadlines) (Deadlines, error) {
	out := Deadlines{}
	for k, v := range base {
		out[k] = v
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("deadline %q: want state=duration or state/step=duration", part)
		}
		state, step, _ := strings.Cut(key, "/")
		if st, err := domain.ParseState(state); err != nil || st.Terminal() {
			return nil, fmt.Errorf("deadline %q: %q is not a state that waits", part, state)
		}
		if _, err := domain.ParseStep(step); step != "" && err != nil {
			return nil, fmt.Errorf("deadline %q: %q is not a step", part, step)
		}
		dur, err := time.ParseDuration(val)
		if err != nil || dur <= 0 {
			return nil, fmt.Errorf("deadline %q: %q is not a positive duration", part, val)
		}
		out[key] = dur
	}
	return out, nil
}

// For is the deadline of a customer in state at step.
func (d Deadlines) For(state, step string) time.Duration {
	if v, ok := d[state+"/"+step]; ok {
		return v
	}
	if v, ok := d[state]; ok {
		return v
	}
	return stuckGrace
}

// shortest is the least deadline.
func (d Deadlines) shortest() time.Duration {
	least := 24 * time.Hour
	for _, v := range d {
		least = min(least, v)
	}
	return least
}

// StuckCustomer is a customer past the deadline of its next event.
type StuckCustomer struct {
	ID      uuid.UUID `json:"id"`
	Email   string    `json:"email"`
	Company string    `json:"company"`
	State   string    `json:"state"`
	Step    string    `json:"step"`
	// Since is when its last event was recorded; Deadline when the next
	// was due.
	Since    time.Time `json:"since"`
	Deadline time.Time `json:"deadline"`
	WaitsFor string    `json:"waits_for"`
}

// IdleReader finds customers idle since before a time;
// *projections.Projections is one.
type IdleReader interface {
	Idle(ctx context.Context, before time.Time, limit int) ([]projections.Customer, error)
}

// Detector finds stuck customers.
type Detector struct {
	Reads IdleReader
	// Timers, when set, extend a deadline to a pending timer's due time
	// (a provider's long Retry-After is not stuck).
	Timers    TimerReader
	Deadlines Deadlines
	Now       func() time.Time
	// Limit bounds the customers looked at; default 1000.
	Limit int
}

// Stuck returns the customers past their deadline, longest overdue first.
func (d Detector) Stuck(ctx context.Context) ([]StuckCustomer, error) {
	now := time.Now()
	if d.Now != nil {
		now = d.Now()
	}
	limit := d.Limit
	if limit <= 0 {
		limit = 1000
	}
	idle, err := d.Reads.Idle(ctx, now.Add(-d.Deadlines.shortest()), limit)
	if err != nil {
		return nil, err
	}
	out := []StuckCustomer{}
	for _, c := range idle {
		due := c.UpdatedAt.Add(d.Deadlines.For(c.State, c.Step))
		if !now.After(due) {
			continue
		}
		// A paused customer has no timer: it waits for an operator.
		if d.Timers != nil && c.State != string(domain.StatePaused) {
			timers, err := d.Timers.TimersOf(ctx, c.ID)
			if err != nil {
				return nil, err
			}
			for _, t := range timers {
				if t.DueAt.Add(stuckGrace).After(due) {
					due = t.DueAt.Add(stuckGrace)
				}
			}
			if !now.After(due) {
				continue
			}
		}
		out = append(out, StuckCustomer{ID: c.ID, Email: c.Email, Company: c.Company, State: c.State, Step: c.Step,
			Since: c.UpdatedAt, Deadline: due, WaitsFor: waitsFor(c)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Deadline.Before(out[j].Deadline) })
	return out, nil
}

// waitsFor names the event a customer waits for.
func waitsFor(c projections.Customer) string {
	provider := projections.ProviderOf(domain.Step(c.Step))
	switch domain.State(c.State) {
	case domain.StatePending, domain.StateVerified:
		return "the worker to request the next step"
	case domain.StateVerifying:
		return "the KYC check's start, its webhook, or a poll of the provider"
	case domain.StateProvisioning:
		return fmt.Sprintf("%s's answer for the %s step, or its retry", provider, c.Step)
	case domain.StateCancelling:
		return "the compensation calls (payments, provisioning)"
	case domain.StatePaused:
		return "an operator to retry, skip or cancel the " + c.PausedStep + " step"
	}
	return "its next event"
}
