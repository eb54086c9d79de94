package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/projections"
)

// PendingTimer is a process manager's durable timer of a customer.
type PendingTimer struct {
	Kind    string    `json:"kind"`
	Step    string    `json:"step"`
	Attempt int       `json:"attempt"`
	Ref     string    `json:"ref,omitempty"`
	DueAt   time.Time `json:"due_at"`
}

// InboxEntry records that a consumer handled one of the customer's events.
type InboxEntry struct {
	Handler     string    `json:"handler"`
	EventID     uuid.UUID `json:"event_id"`
	EventType   string    `json:"event_type,omitempty"`
	ProcessedAt time.Time `json:"processed_at"`
}

// DeadLetterEntry is a message of the customer a consumer gave up on.
type DeadLetterEntry struct {
	ID         int64     `json:"id"`
	Handler    string    `json:"handler"`
	EventID    uuid.UUID `json:"event_id"`
	EventType  string    `json:"event_type"`
	Error      string    `json:"error"`
	Status     string    `json:"status"`
	Deliveries int64     `json:"deliveries"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// What explain reads besides the customer's stream. cmd/onboard wires
// them to the worker's timers and the messaging's inbox and dead letters.
type (
	// TimerReader lists a customer's pending timers.
	TimerReader interface {
		TimersOf(ctx context.Context, customerID uuid.UUID) ([]PendingTimer, error)
	}
	// InboxReader lists the inbox rows of the given events.
	InboxReader interface {
		InboxOf(ctx context.Context, eventIDs []uuid.UUID) ([]InboxEntry, error)
	}
	// DeadLetterReader lists the dead letters of a stream.
	DeadLetterReader interface {
		DeadLettersOf(ctx context.Context, streamID string) ([]DeadLetterEntry, error)
	}
)

// Policy is what the process managers do next, as the diagnosis tells it:
// their retry and KYC settings (process.Config's).
type Policy struct {
	// MaxAttempts per step; 5 where absent.
	MaxAttempts          map[domain.Step]int
	VerificationDeadline time.Duration
	VerificationPolls    int
	BaseDelay, MaxDelay  time.Duration
}

func (p Policy) maxAttempts(step domain.Step) int {
	if n := p.MaxAttempts[step]; n > 0 {
		return n
	}
	return 5
}

// WithDefaults fills what is unset with the process managers' defaults.
func (p Policy) WithDefaults() Policy {
	if p.VerificationDeadline <= 0 {
		p.VerificationDeadline = 15 * time.Minute
	}
	if p.VerificationPolls <= 0 {
		p.VerificationPolls = 3
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = time.Second
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 5 * time.Minute
	}
	return p
}

// Explainer answers "why is this customer not active?".
type Explainer struct {
	// Events is required; the readers are optional (nil where the process
	// has no such table: no inbox or dead letters without NATS).
	Events      eventstore.StreamReader
	Timers      TimerReader
	Inbox       InboxReader
	DeadLetters DeadLetterReader
	Policy      Policy
	Now         func() time.Time
	// Keys decrypts the customer's personal data; without it encrypted
	// fields show as domain.Encrypted (domain.DecryptHistory).
	Keys eventstore.KeyReader
}

// Explanation is everything known about one customer's journey.
type Explanation struct {
	ID    uuid.UUID `json:"id"`
	State string    `json:"state"`
	Step  string    `json:"step"`
	// Diagnosis says in one line what the customer waits for and what
	// happens next.
	Diagnosis   string            `json:"diagnosis"`
	Events      []ExplainedEvent  `json:"events"`
	Calls       []ProviderCall    `json:"calls"`
	Timers      []PendingTimer    `json:"timers"`
	Inbox       []InboxEntry      `json:"inbox"`
	DeadLetters []DeadLetterEntry `json:"dead_letters"`
	TraceIDs    []string          `json:"trace_ids"`
}

// ExplainedEvent is one event of the customer's stream.
type ExplainedEvent struct {
	ID            uuid.UUID `json:"id"`
	Version       int64     `json:"version"`
	Position      int64     `json:"position"`
	Type          string    `json:"type"`
	RecordedAt    time.Time `json:"recorded_at"`
	Actor         string    `json:"actor"`
	Reason        string    `json:"reason,omitempty"`
	CorrelationID string    `json:"correlation_id,omitempty"`
	TraceID       string    `json:"trace_id,omitempty"`
	// Data is the event's data, its personal fields decrypted, or
	// [erased] after the customer's erasure (see EventData).
	Data json.RawMessage `json:"data"`
}

// ErrNotFound means there is no customer with the id.
var ErrNotFound = errors.New("customer not found")

// Explain gathers the customer's explanation.
func (x Explainer) Explain(ctx context.Context, id uuid.UUID) (Explanation, error) {
	streamID := commands.StreamID(id)
	envs, err := x.Events.ReadStream(ctx, streamID, 1)
	if errors.Is(err, eventstore.ErrStreamNotFound) || (err == nil && len(envs) == 0) {
		return Explanation{}, fmt.Errorf("customer %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Explanation{}, fmt.Errorf("explain %s: %w", id, err)
	}
	events, err := commands.DecodeEnvelopes(envs)
	if err == nil {
		events, err = domain.DecryptHistory(id, events, eventstore.DataKeyOf(ctx, x.Keys, streamID))
	}
	if err != nil {
		return Explanation{}, fmt.Errorf("explain %s: %w", id, err)
	}
	c, err := domain.FromHistory(id, events)
	if err != nil {
		return Explanation{}, fmt.Errorf("explain %s: %w", id, err)
	}
	out := Explanation{ID: id, State: string(c.State()), Step: string(c.CurrentStep()), Timers: []PendingTimer{},
		Inbox: []InboxEntry{}, DeadLetters: []DeadLetterEntry{}, TraceIDs: []string{}}
	ids := make([]uuid.UUID, len(envs))
	for i, env := range envs {
		ids[i] = env.ID
		tid := TraceID(env.Metadata.Trace)
		data, err := EventData(env, events[i])
		if err != nil {
			return Explanation{}, fmt.Errorf("explain %s: %w", id, err)
		}
		out.Events = append(out.Events, ExplainedEvent{ID: env.ID, Version: env.Version, Position: env.Position, Type: env.Type,
			RecordedAt: env.RecordedAt, Actor: env.Metadata.Actor, Reason: ReasonOf(events[i]),
			CorrelationID: env.Metadata.CorrelationID, TraceID: tid, Data: data})
		if tid != "" && !contains(out.TraceIDs, tid) {
			out.TraceIDs = append(out.TraceIDs, tid)
		}
	}
	out.Calls = callsOf(envs, events)
	if err := x.gather(ctx, &out, streamID, ids); err != nil {
		return Explanation{}, fmt.Errorf("explain %s: %w", id, err)
	}
	now := time.Now
	if x.Now != nil {
		now = x.Now
	}
	out.Diagnosis = diagnose(facts{c: c, envs: envs, events: events, calls: out.Calls, timers: out.Timers,
		dead: out.DeadLetters, policy: x.Policy.WithDefaults(), now: now()})
	return out, nil
}

// gather reads the timers, inbox rows and dead letters.
func (x Explainer) gather(ctx context.Context, out *Explanation, streamID string, ids []uuid.UUID) error {
	if x.Timers != nil {
		t, err := x.Timers.TimersOf(ctx, out.ID)
		if err != nil {
			return fmt.Errorf("timers: %w", err)
		}
		out.Timers = append(out.Timers, t...)
	}
	if x.Inbox != nil {
		in, err := x.Inbox.InboxOf(ctx, ids)
		if err != nil {
			return fmt.Errorf("inbox: %w", err)
		}
		types := map[uuid.UUID]string{}
		for _, e := range out.Events {
			types[e.ID] = e.Type
		}
		for i := range in {
			in[i].EventType = types[in[i].EventID]
		}
		out.Inbox = append(out.Inbox, in...)
	}
	if x.DeadLetters != nil {
		d, err := x.DeadLetters.DeadLettersOf(ctx, streamID)
		if err != nil {
			return fmt.Errorf("dead letters: %w", err)
		}
		out.DeadLetters = append(out.DeadLetters, d...)
	}
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TraceID is the trace id of a W3C trace context, "" when there is none.
func TraceID(trace map[string]string) string {
	parts := strings.Split(trace["traceparent"], "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}

// EventData is the data of env as operators see it: as stored, or, when
// the event holds personal data, ev as domain.DecryptHistory showed it, so
// that ciphertext is never shown.
func EventData(env eventstore.Envelope, ev domain.Event) (json.RawMessage, error) {
	if !domain.HasPersonalData(ev) {
		return json.RawMessage(env.Data), nil
	}
	return json.Marshal(ev)
}

// ReasonOf is the why of an event, where it records one.
func ReasonOf(e domain.Event) string {
	switch e := e.(type) {
	case domain.StepFailed:
		return e.Message
	case domain.VerificationRejected:
		return e.Reason
	case domain.SupportNotified:
		return e.Reason
	case domain.Paused:
		return e.Reason
	case domain.StepRetryRequested:
		return e.Reason
	case domain.StepSkipped:
		return e.Reason
	case domain.CancellationRequested:
		return e.Reason
	case domain.Cancelled:
		return e.Reason
	case domain.ResultIgnored:
		return e.Reason
	}
	return ""
}

// ProviderCall is one attempt of a step at its provider, as the customer's
// events record it: its request and its outcome.
type ProviderCall struct {
	Step           string    `json:"step"`
	Provider       string    `json:"provider"`
	Attempt        int       `json:"attempt"`
	AttemptGroup   int       `json:"attempt_group"`
	IdempotencyKey string    `json:"idempotency_key"`
	RequestedAt    time.Time `json:"requested_at"`
	// Outcome is succeeded, failed, check_started (the KYC check runs; its
	// verdict comes by webhook), in_flight, or compensated (an undo after a
	// cancel).
	Outcome    string     `json:"outcome"`
	ErrorClass string     `json:"error_class,omitempty"`
	Message    string     `json:"message,omitempty"`
	AnsweredAt *time.Time `json:"answered_at,omitempty"`
	// LatencyMS is from the request's event to the outcome's.
	LatencyMS *int64 `json:"latency_ms,omitempty"`
}

// compensation is an undo call, recorded by its outcome's event alone: its
// request and its failed tries leave no event (they are retried by a
// timer), so it has no attempt or latency.
func compensation(step domain.Step, at time.Time, existed bool, done string) ProviderCall {
	msg := done
	if !existed {
		msg = "nothing to undo: the provider held none"
	}
	return ProviderCall{Step: string(step), Provider: projections.ProviderOf(step), RequestedAt: at, Outcome: "compensated",
		Message: msg, AnsweredAt: &at}
}

// callsOf pairs each step_requested with the outcome of its attempt.
func callsOf(envs []eventstore.Envelope, events []domain.Event) []ProviderCall {
	calls := []ProviderCall{}
	open := map[domain.Step]int{} // step → index of its last call without an outcome
	answer := func(step domain.Step, attempt int, at time.Time, outcome, class, msg string) {
		i, ok := open[step]
		if !ok || calls[i].Attempt != attempt {
			return
		}
		delete(open, step)
		c := &calls[i]
		c.Outcome, c.ErrorClass, c.Message, c.AnsweredAt = outcome, class, msg, &at
		ms := at.Sub(c.RequestedAt).Milliseconds()
		c.LatencyMS = &ms
	}
	for i, e := range events {
		at := envs[i].RecordedAt
		switch e := e.(type) {
		case domain.StepRequested:
			open[e.Step] = len(calls)
			calls = append(calls, ProviderCall{Step: string(e.Step), Provider: projections.ProviderOf(e.Step), Attempt: e.Attempt,
				AttemptGroup: e.AttemptGroup, IdempotencyKey: e.IdempotencyKey, RequestedAt: at, Outcome: "in_flight"})
		case domain.StepSucceeded:
			answer(e.Step, e.Attempt, at, "succeeded", "", "")
		case domain.StepFailed:
			answer(e.Step, e.Attempt, at, "failed", string(e.Class), e.Message)
		case domain.VerificationCheckStarted:
			answer(domain.StepVerification, e.Attempt, at, "check_started", "", "check "+e.CheckID)
		case domain.BillingClosed:
			calls = append(calls, compensation(domain.StepBilling, at, e.Existed, "account "+e.AccountID+" closed"))
		case domain.TenantDeprovisioned:
			calls = append(calls, compensation(domain.StepTenant, at, e.Existed, "tenant "+e.TenantID+" deprovisioned"))
		case domain.SupportNotified:
			if e.Channel == "email" {
				calls = append(calls, ProviderCall{Step: string(domain.StepVerification), Provider: "email", RequestedAt: at,
					Outcome: "succeeded", Message: "support told of the rejection", AnsweredAt: &at})
			}
		}
	}
	return calls
}
