package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// customerStreamType is the stream type of customers; a customer's stream
// id is "customer-<uuid>" (commands.StreamID, which audit may not import;
// a test keeps the two equal).
const customerStreamType = "customer"

// CustomerStreamID is the event-store stream of a customer.
func CustomerStreamID(id uuid.UUID) string { return customerStreamType + "-" + id.String() }

// Point is the moment of a customer's history to replay to: the last event
// recorded at or before At, or the event at Version. The zero Point is now
// (every event). Setting both is an error.
type Point struct {
	At      time.Time
	Version int64
}

// Entry is one event of a customer's timeline, in words an auditor reads.
type Entry struct {
	Version       int64     `json:"version"`
	Position      int64     `json:"position"`
	RecordedAt    time.Time `json:"recorded_at"`
	Type          string    `json:"type"`
	Actor         string    `json:"actor,omitempty"`
	CorrelationID string    `json:"correlation_id,omitempty"`
	CausationID   string    `json:"causation_id,omitempty"`
	// Summary says what happened; Reason why, when the event records one
	// (an operator's reason, a provider's error, a rejection).
	Summary string `json:"summary"`
	Reason  string `json:"reason,omitempty"`
	// Event is the event as decoded (and upcast) by today's code; Data is
	// its JSON, for machines reading the replay.
	Event domain.Event    `json:"-"`
	Data  json.RawMessage `json:"data"`
}

// Replay is a customer as it was at a Point, with the timeline that led
// there.
type Replay struct {
	// Customer is the state after the last event of Timeline.
	Customer domain.Snapshot `json:"customer"`
	// At is the requested time, when one was given.
	At *time.Time `json:"at,omitempty"`
	// Timeline is every event up to the point, oldest first.
	Timeline []Entry `json:"timeline"`
	// LatestVersion is the stream's version now, so a reader sees how much
	// of the history the replay leaves out.
	LatestVersion int64 `json:"latest_version"`
}

// ReplayCustomer rebuilds customer id as it was at point from its stream,
// through today's domain code (upcasters included). Errors wrap
// ErrCustomerNotFound, or ErrNoSuchPoint (a *PointError) when the customer
// did not exist yet at that time or has no such version.
func ReplayCustomer(ctx context.Context, r eventstore.StreamReader, id uuid.UUID, point Point, opts ...Option) (Replay, error) {
	o := optionsOf(opts)
	if !point.At.IsZero() && point.Version != 0 {
		return Replay{}, &PointError{CustomerID: id.String(), Detail: "give a time or a version, not both"}
	}
	if point.Version < 0 {
		return Replay{}, &PointError{CustomerID: id.String(), Detail: fmt.Sprintf("version %d: versions start at 1", point.Version)}
	}
	envs, err := r.ReadStream(ctx, CustomerStreamID(id), 1)
	if errors.Is(err, eventstore.ErrStreamNotFound) || (err == nil && len(envs) == 0) {
		return Replay{}, fmt.Errorf("customer %s: %w", id, ErrCustomerNotFound)
	}
	if err != nil {
		return Replay{}, fmt.Errorf("replay customer %s: %w", id, err)
	}
	latest := envs[len(envs)-1].Version
	n := len(envs)
	switch {
	case point.Version > 0:
		if point.Version > latest {
			return Replay{}, &PointError{CustomerID: id.String(), Detail: fmt.Sprintf("version %d does not exist: the stream is at version %d", point.Version, latest)}
		}
		n = int(point.Version)
	case !point.At.IsZero():
		n = 0
		for n < len(envs) && !envs[n].RecordedAt.After(point.At) {
			n++
		}
		if n == 0 {
			return Replay{}, &PointError{CustomerID: id.String(), Detail: fmt.Sprintf("did not exist yet at %s (signed up %s)",
				point.At.UTC().Format(time.RFC3339Nano), envs[0].RecordedAt.UTC().Format(time.RFC3339Nano))}
		}
	}
	// The whole stream is decoded: a later erasure erases the past too.
	events, err := o.history(ctx, id, envs)
	if err != nil {
		return Replay{}, fmt.Errorf("replay customer %s: %w", id, err)
	}
	envs, events = envs[:n], events[:n]

	timeline := make([]Entry, len(envs))
	for i, env := range envs {
		ev := events[i]
		data, err := json.Marshal(ev)
		if err != nil {
			return Replay{}, fmt.Errorf("replay customer %s: version %d: %w", id, env.Version, err)
		}
		summary, reason := Describe(ev)
		m := env.Metadata
		timeline[i] = Entry{
			Version: env.Version, Position: env.Position, RecordedAt: env.RecordedAt, Type: env.Type,
			Actor: m.Actor, CorrelationID: m.CorrelationID, CausationID: m.CausationID,
			Summary: summary, Reason: reason, Event: ev, Data: data,
		}
	}
	c, err := domain.FromHistory(id, events)
	if err != nil {
		return Replay{}, fmt.Errorf("replay customer %s: %w", id, err)
	}
	out := Replay{Customer: c.Snapshot(), Timeline: timeline, LatestVersion: latest}
	if !point.At.IsZero() {
		at := point.At
		out.At = &at
	}
	return out, nil
}

// Describe returns a one-line summary of e and the reason it records, if
// any.
func Describe(e domain.Event) (summary, reason string) {
	switch e := e.(type) {
	case domain.SignedUp:
		return fmt.Sprintf("signed up %s (%s, %s plan)", e.Email, e.Company, e.Plan), ""
	case domain.StepRequested:
		return fmt.Sprintf("%s attempt %d requested (group %d)", e.Step, e.Attempt, e.AttemptGroup), ""
	case domain.VerificationCheckStarted:
		return fmt.Sprintf("verification check %s started (attempt %d)", e.CheckID, e.Attempt), ""
	case domain.StepSucceeded:
		return fmt.Sprintf("%s attempt %d succeeded%s", e.Step, e.Attempt, formatResult(e.Result)), ""
	case domain.StepFailed:
		return fmt.Sprintf("%s attempt %d failed (%s)", e.Step, e.Attempt, e.Class), e.Message
	case domain.VerificationRejected:
		return fmt.Sprintf("verification rejected (check %s)", e.CheckID), e.Reason
	case domain.SupportNotified:
		return fmt.Sprintf("support notified by %s", e.Channel), e.Reason
	case domain.Paused:
		return fmt.Sprintf("paused at %s after %d attempts", e.Step, e.Attempts), e.Reason
	case domain.StepRetryRequested:
		return fmt.Sprintf("%s retried by %s (group %d)", e.Step, e.Operator, e.AttemptGroup), e.Reason
	case domain.StepSkipped:
		return fmt.Sprintf("%s skipped by %s", e.Step, e.Operator), e.Reason
	case domain.CancellationRequested:
		s := "cancelled by " + e.Operator
		if len(e.Compensate) > 0 {
			s += ", to compensate: " + joinSteps(e.Compensate)
		}
		return s, e.Reason
	case domain.BillingClosed:
		return fmt.Sprintf("billing account %s closed (existed: %t)", e.AccountID, e.Existed), ""
	case domain.TenantDeprovisioned:
		return fmt.Sprintf("tenant %s deprovisioned (existed: %t)", e.TenantID, e.Existed), ""
	case domain.Cancelled:
		return "cancellation complete", e.Reason
	case domain.OnboardingCompleted:
		if len(e.SkippedSteps) > 0 {
			return "onboarding completed, skipped: " + joinSteps(e.SkippedSteps), ""
		}
		return "onboarding completed", ""
	case domain.ResultIgnored:
		return fmt.Sprintf("%s result from %s ignored", e.Step, e.Source), e.Reason
	}
	return e.EventType(), ""
}

func joinSteps(steps []domain.Step) string {
	s := make([]string, len(steps))
	for i, st := range steps {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

func formatResult(r map[string]string) string {
	if len(r) == 0 {
		return ""
	}
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + r[k]
	}
	return " (" + strings.Join(parts, " ") + ")"
}
