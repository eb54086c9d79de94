package messaging

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
)

// Defaults of StreamConfig.
const (
	DefaultStreamName           = "ONBOARDING"
	DefaultSubjectPrefix        = "onboarding.events"
	DefaultRedrivePrefix        = "onboarding.redrive"
	DefaultDeadLetterStreamName = "ONBOARDING_DEAD_LETTERS"
	DefaultDeadLetterPrefix     = "onboarding.deadletters"
	DefaultDuplicateWindow      = 10 * time.Minute
)

// StreamConfig describes the JetStream streams events travel on. The zero
// value is the production layout with one replica.
type StreamConfig struct {
	// Name is the events stream; default ONBOARDING.
	Name string
	// SubjectPrefix is the prefix of event subjects; default
	// "onboarding.events". An event is published on
	// <prefix>.<stream type>.<event type>.<stream id>.<route> (see
	// EventSubject).
	SubjectPrefix string
	// Route names the handler an event is for (the process manager that
	// reacts to it), or "" for none: the relay publishes the event with it
	// as the subject's last token, and a handler added WithRoute is
	// delivered the events of its route only. next is the next event of
	// e's stream in the relay's batch (committed, then, and published
	// after e), nil when the batch has none. Nil routes every event to
	// none.
	Route func(e eventstore.Envelope, next *eventstore.Envelope) string
	// RedrivePrefix is the prefix on which re-driven dead letters are
	// published to one handler (<prefix>.<handler>); it is part of the
	// events stream. Default "onboarding.redrive".
	RedrivePrefix string
	// DeadLetterName and DeadLetterPrefix are the stream and subject
	// prefix of dead letters (<prefix>.<handler>); defaults
	// ONBOARDING_DEAD_LETTERS and "onboarding.deadletters".
	DeadLetterName   string
	DeadLetterPrefix string
	// Replicas is the replication factor: 1 for a single server, 3 in a
	// cluster. Default 1.
	Replicas int
	// DuplicateWindow is how long JetStream remembers Nats-Msg-Id values
	// to drop re-published events; default 10 minutes. A relay that
	// re-publishes after a longer outage relies on consumer inboxes.
	DuplicateWindow time.Duration
	// MemoryStorage keeps the streams in memory instead of files; only
	// for benchmarks that measure the file-less ceiling.
	MemoryStorage bool
}

func (c *StreamConfig) setDefaults() {
	if c.Name == "" {
		c.Name = DefaultStreamName
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.RedrivePrefix == "" {
		c.RedrivePrefix = DefaultRedrivePrefix
	}
	if c.DeadLetterName == "" {
		c.DeadLetterName = DefaultDeadLetterStreamName
	}
	if c.DeadLetterPrefix == "" {
		c.DeadLetterPrefix = DefaultDeadLetterPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
}

// Validate reports every invalid field at once.
func (c StreamConfig) Validate() error {
	var errs []error
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: want 1 to 5", c.Replicas))
	}
	if c.DuplicateWindow < 0 {
		errs = append(errs, errors.New("duplicate window is negative"))
	}
	for _, p := range []string{c.SubjectPrefix, c.RedrivePrefix, c.DeadLetterPrefix} {
		if strings.ContainsAny(p, "*> \t") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") {
			errs = append(errs, fmt.Errorf("subject prefix %q is not a literal subject", p))
		}
	}
	return errors.Join(errs...)
}

// EventSubject returns the subject an event is published on:
// <prefix>.<stream type>.<event type>.<stream id>.<route>, each part made a
// single subject token (see SubjectToken; no route is "_").
func (c StreamConfig) EventSubject(streamType, eventType, streamID, route string) string {
	return c.SubjectPrefix + "." + SubjectToken(streamType) + "." + SubjectToken(eventType) + "." +
		SubjectToken(streamID) + "." + SubjectToken(route)
}

// EventTypeFilter returns the subject filter that matches every event of
// the given type.
func (c StreamConfig) EventTypeFilter(eventType string) string {
	return c.SubjectPrefix + ".*." + SubjectToken(eventType) + ".>"
}

// RoutedFilter returns the subject filter that matches every event
// published with the given route (see Route).
func (c StreamConfig) RoutedFilter(route string) string {
	return c.SubjectPrefix + ".*.*.*." + SubjectToken(route)
}

// AllEventsFilter returns the subject filter that matches every event.
func (c StreamConfig) AllEventsFilter() string { return c.SubjectPrefix + ".>" }

func (c StreamConfig) redriveSubject(handler string) string {
	return c.RedrivePrefix + "." + handler
}

func (c StreamConfig) deadLetterSubject(handler string) string {
	return c.DeadLetterPrefix + "." + handler
}

// SubjectToken makes s one subject token: the characters a token cannot
// hold ('.', '*', '>', white space) become '_', and an empty s becomes "_".
// Event types keep their dots in headers and payload; the subject is only
// for filtering.
func SubjectToken(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, s)
}

// EnsureStreams creates the events stream and the dead-letter stream, or
// updates them to cfg; it is idempotent and safe to run at every start from
// several processes.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("ensure streams: %w: %w", ErrInvalidConfig, err)
	}
	storage := jetstream.FileStorage
	if cfg.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	events := jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: "Committed onboarding events, relayed from the Postgres event store.",
		Subjects:    []string{cfg.SubjectPrefix + ".>", cfg.RedrivePrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		// Postgres is the source of truth, but the stream keeps all events
		// so that a new durable consumer can start from the beginning
		// (after NATS lost its data: from the consumers' lowest floor).
		MaxAge:      0,
		Storage:     storage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		AllowDirect: true,
		Discard:     jetstream.DiscardOld,
	}
	if err := ensureStream(ctx, js, events); err != nil {
		return err
	}
	dead := jetstream.StreamConfig{
		Name:        cfg.DeadLetterName,
		Description: "Onboarding events a handler gave up on, with the error.",
		Subjects:    []string{cfg.DeadLetterPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     storage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
	}
	return ensureStream(ctx, js, dead)
}

// ensureStream creates the stream, or updates it when its configuration
// differs from want. It does not update a stream that is already as wanted:
// an update while another goroutine of the process creates consumers on
// the stream races inside an embedded nats-server (filestore's
// UpdateConfig against ConsumerStore), and the relay and the router both
// ensure the streams when they start.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	s, err := js.Stream(ctx, want.Name)
	if err == nil {
		have := s.CachedInfo().Config
		if have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention &&
			have.MaxAge == want.MaxAge && have.Storage == want.Storage && have.Replicas == want.Replicas &&
			(want.Duplicates == 0 || have.Duplicates == want.Duplicates) && have.AllowDirect == want.AllowDirect && have.Discard == want.Discard {
			return nil
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("ensure stream %s: %w", want.Name, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, want); err != nil {
		return fmt.Errorf("ensure stream %s: %w", want.Name, err)
	}
	return nil
}
