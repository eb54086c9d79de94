package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
)

// ErrCoverageGap: a durable consumer's records show it skipped an event
// before its position; the *CoverageGapError counts them.
var ErrCoverageGap = errors.New("consumer coverage has gaps")

// CoverageGapError is CoverageReport.Err's verdict. It wraps ErrCoverageGap.
type CoverageGapError struct {
	Gaps, Consumers int
}

func (e *CoverageGapError) Error() string {
	return fmt.Sprintf("%d gaps in %d consumers", e.Gaps, e.Consumers)
}

// Unwrap returns ErrCoverageGap.
func (e *CoverageGapError) Unwrap() error { return ErrCoverageGap }

// The kinds of durable consumers, by what they record of their progress.
const (
	// ConsumerProjection: a read model, checkpointed in the transaction
	// of its rows.
	ConsumerProjection = "projection"
	// ConsumerInbox: a process manager's NATS consumer, which records an
	// inbox row (handler, event id) per event it processed.
	ConsumerInbox = "inbox"
	// ConsumerCheckpoint: the process managers' runner without NATS,
	// checkpointed in global order.
	ConsumerCheckpoint = "checkpoint"
)

// Gap is an event a consumer should have processed, by its position, and
// did not.
type Gap struct {
	Position int64     `json:"position"`
	EventID  uuid.UUID `json:"event_id"`
	StreamID string    `json:"stream_id"`
	Version  int64     `json:"version"`
	Type     string    `json:"type"`
	Detail   string    `json:"detail"`
}

// ConsumerCoverage is what coverage proved of one consumer.
type ConsumerCoverage struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Position is how far the consumer got: its checkpoint, or for an
	// inbox the last event it recorded (zero when it recorded none).
	Position eventstore.Cursor `json:"position"`
	// Covered counts the events proven processed: a projection's events
	// up to its checkpoint that its rows reflect, the events routed to an
	// inbox consumer that it (or a runner's checkpoint) recorded, a
	// runner's events up to its checkpoint.
	Covered int64 `json:"covered"`
	// Pruned counts events routed to an inbox consumer, recorded before
	// CoverageOptions.InboxKeptSince, whose inbox row may have been pruned:
	// neither proven nor a gap.
	Pruned int64 `json:"pruned,omitempty"`
	// Pending counts events routed to an inbox consumer after its
	// Position: not processed yet, which is no gap.
	Pending int64 `json:"pending,omitempty"`
	// GapCount counts the gaps; Gaps holds up to CoverageOptions.MaxGaps
	// of them, by position.
	GapCount int   `json:"gap_count"`
	Gaps     []Gap `json:"gaps"`
}

// CoverageReport is the outcome of Coverage.
type CoverageReport struct {
	// Events is how many events were read.
	Events    int64              `json:"events"`
	Consumers []ConsumerCoverage `json:"consumers"`
	Elapsed   time.Duration      `json:"elapsed_ns"`
}

// Err returns nil when no consumer has a gap, or a *CoverageGapError.
func (r CoverageReport) Err() error {
	gaps, consumers := 0, 0
	for _, c := range r.Consumers {
		if c.GapCount > 0 {
			gaps += c.GapCount
			consumers++
		}
	}
	if gaps == 0 {
		return nil
	}
	return &CoverageGapError{Gaps: gaps, Consumers: consumers}
}

// ConsumerRecords is what the process managers' consumers recorded of
// their progress; cmd/onboard reads it from messaging_inbox and
// onboard_pm_checkpoints.
type ConsumerRecords interface {
	// Inbox returns, per handler named, the ids of the events it recorded
	// in its inbox.
	Inbox(ctx context.Context, handlers []string) (map[string][]uuid.UUID, error)
	// RunnerCheckpoints returns the checkpoint of each process-manager
	// runner without NATS, by name; each covers every manager.
	RunnerCheckpoints(ctx context.Context) (map[string]eventstore.Cursor, error)
}

// InboxConsumer names a process manager's NATS consumer: its handler (the
// name of its inbox rows) and the route it receives.
type InboxConsumer struct {
	Handler string
	Route   string
}
