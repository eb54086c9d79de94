package messaging

import "time"

// Metrics receives the counters and timings of the relay and the router,
// for a Prometheus or OpenTelemetry adapter in cmd/onboard. Methods are
// called from several goroutines and must be safe for concurrent use and
// fast: they run on the delivery path.
type Metrics interface {
	// EventsRelayed is called after JetStream acknowledged a batch of n
	// events; lag is the time from the recording of the last of them (the
	// database clock) to the acknowledgement.
	EventsRelayed(n int, lag time.Duration)
	// RelayRewound is called when the relay found the stream behind its
	// cursor and publishes again from an earlier place.
	RelayRewound()
	// MessageHandled is called after each delivery to a handler; err is
	// nil on success (and for a duplicate skipped by the inbox).
	MessageHandled(handler string, d time.Duration, err error)
	// DeadLettered is called when a message was recorded as a dead letter.
	DeadLettered(handler, eventType string)
	// MessageForged is called when a message does not match the event
	// store (ErrForged): by the handler it was delivered to, which
	// dead-letters it, or by "relay", which ignores it. An alert.
	MessageForged(where string)
}

// NopMetrics discards everything.
type NopMetrics struct{}

// EventsRelayed does nothing.
func (NopMetrics) EventsRelayed(int, time.Duration) {}

// RelayRewound does nothing.
func (NopMetrics) RelayRewound() {}

// MessageHandled does nothing.
func (NopMetrics) MessageHandled(string, time.Duration, error) {}

// DeadLettered does nothing.
func (NopMetrics) DeadLettered(string, string) {}

// MessageForged does nothing.
func (NopMetrics) MessageForged(string) {}
