package domain

import (
	"maps"

	"github.com/google/uuid"
)

// Snapshot is a read-only copy of everything a customer knows, for queries,
// audit replays and tests that compare two customers.
type Snapshot struct {
	ID              uuid.UUID      `json:"id"`
	Version         int            `json:"version"`
	State           State          `json:"state"`
	Step            Step           `json:"step"`
	Email           string         `json:"email"`
	Company         string         `json:"company"`
	ContactName     string         `json:"contact_name"`
	Country         string         `json:"country"`
	Plan            Plan           `json:"plan"`
	CheckID         string         `json:"check_id,omitempty"`
	PausedStep      Step           `json:"paused_step,omitempty"`
	PauseReason     string         `json:"pause_reason,omitempty"`
	LastError       string         `json:"last_error,omitempty"`
	CancelReason    string         `json:"cancel_reason,omitempty"`
	SupportNotified bool           `json:"support_notified,omitempty"`
	BlockedOn       string         `json:"blocked_on,omitempty"`
	Steps           []StepSnapshot `json:"steps"`
}

// StepSnapshot is the progress of one step.
type StepSnapshot struct {
	Step         Step              `json:"step"`
	AttemptGroup int               `json:"attempt_group"`
	Attempt      int               `json:"attempt"`
	Key          string            `json:"idempotency_key,omitempty"`
	InFlight     int               `json:"in_flight,omitempty"`
	Failures     int               `json:"failures,omitempty"`
	Requested    bool              `json:"requested,omitempty"`
	Succeeded    bool              `json:"succeeded,omitempty"`
	Skipped      bool              `json:"skipped,omitempty"`
	Compensated  bool              `json:"compensated,omitempty"`
	Result       map[string]string `json:"result,omitempty"`
}

// Snapshot returns a copy of the customer's state, uncommitted changes
// included; Version counts them.
func (c *Customer) Snapshot() Snapshot {
	s := Snapshot{
		ID: c.id, Version: c.version + len(c.changes), State: c.state, Step: c.step,
		Email: c.profile.Email, Company: c.profile.Company, ContactName: c.profile.ContactName,
		Country: c.profile.Country, Plan: c.profile.Plan, CheckID: c.checkID,
		PausedStep: c.pausedStep, PauseReason: c.pauseReason, LastError: c.lastError,
		CancelReason: c.cancelReason, SupportNotified: c.supportDone, BlockedOn: c.blockedOn,
	}
	for i, step := range Steps() {
		p := c.steps[i]
		s.Steps = append(s.Steps, StepSnapshot{
			Step: step, AttemptGroup: p.group, Attempt: p.attempt, Key: p.key, InFlight: p.inFlight,
			Failures: p.failures, Requested: p.requested, Succeeded: p.succeeded,
			Skipped: p.skipped, Compensated: p.compensated, Result: maps.Clone(p.result),
		})
	}
	return s
}
