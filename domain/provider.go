package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ProviderEvent is a fact about one provider's outages, on the provider's
// own stream (provider-<name>). Its events are not customer events:
// DecodeProviderEvent reads them, and EventTypes does not list them.
type ProviderEvent interface {
	EventType() string
	isProviderEvent()
}

// The stable type names of the provider events.
const (
	TypeOutageStarted   = "provider.outage_started.v1"
	TypeOutageRecovered = "provider.outage_recovered.v1"
	TypeOutageEnded     = "provider.outage_ended.v1"
)

// OutageStarted is the one alert of an outage: customers wait on the
// provider, whose circuit breaker refused their calls. Waiting counts them
// when the alert was raised.
type OutageStarted struct {
	Provider string `json:"provider"`
	Waiting  int    `json:"waiting"`
}

// OutageRecovered records that the provider answered again (a waiting
// customer's call got through): the waiting customers resume, oldest
// first, at a bounded rate.
type OutageRecovered struct {
	Provider string `json:"provider"`
	Waiting  int    `json:"waiting"`
}

// OutageEnded records that the last customer waiting on the provider
// resumed.
type OutageEnded struct {
	Provider string `json:"provider"`
	Resumed  int    `json:"resumed"`
}

func (OutageStarted) EventType() string   { return TypeOutageStarted }
func (OutageRecovered) EventType() string { return TypeOutageRecovered }
func (OutageEnded) EventType() string     { return TypeOutageEnded }

func (OutageStarted) isProviderEvent()   {}
func (OutageRecovered) isProviderEvent() {}
func (OutageEnded) isProviderEvent()     {}

// ProviderStatus is where a provider is in its outage cycle: up, down
// (customers wait, one is resumed now and then as a probe) and recovering
// (the waiting customers resume), then up again.
type ProviderStatus string

// The provider statuses.
const (
	ProviderUp         ProviderStatus = "up"
	ProviderDown       ProviderStatus = "down"
	ProviderRecovering ProviderStatus = "recovering"
)

// ErrProviderStatus is wrapped by the rejections of Provider's commands:
// the outage is not where the command assumes it is (another process
// decided first).
var ErrProviderStatus = errors.New("provider outage: not in the status the command needs")

// Provider is the outage cycle of one provider, folded from its stream.
// Its commands return the event to append at Version; a concurrent append
// by another process fails on the version, so one outage raises one alert.
type Provider struct {
	name    string
	status  ProviderStatus
	version int
	since   time.Time // recording time of the event that set the status
}

// ProviderFromHistory folds the provider's events, oldest first, with
// their recording times.
func ProviderFromHistory(name string, history []ProviderEvent, at []time.Time) *Provider {
	p := &Provider{name: name, status: ProviderUp}
	for i, e := range history {
		switch e.(type) {
		case OutageStarted:
			p.status = ProviderDown
		case OutageRecovered:
			p.status = ProviderRecovering
		case OutageEnded:
			p.status = ProviderUp
		}
		if i < len(at) {
			p.since = at[i]
		}
	}
	p.version = len(history)
	return p
}

// Status returns the provider's status.
func (p *Provider) Status() ProviderStatus { return p.status }

// Version is the number of events on the provider's stream.
func (p *Provider) Version() int { return p.version }

// Since is when the status began (zero while up and never down).
func (p *Provider) Since() time.Time { return p.since }

// StartOutage raises the outage's alert for a provider that is up.
func (p *Provider) StartOutage(waiting int) (OutageStarted, error) {
	if p.status != ProviderUp {
		return OutageStarted{}, fmt.Errorf("%w: %s is %s", ErrProviderStatus, p.name, p.status)
	}
	return OutageStarted{Provider: p.name, Waiting: waiting}, nil
}

// Recover records that a provider that is down answered again.
func (p *Provider) Recover(waiting int) (OutageRecovered, error) {
	if p.status != ProviderDown {
		return OutageRecovered{}, fmt.Errorf("%w: %s is %s", ErrProviderStatus, p.name, p.status)
	}
	return OutageRecovered{Provider: p.name, Waiting: waiting}, nil
}

// EndOutage records that no customer waits on a recovering provider any
// more.
func (p *Provider) EndOutage(resumed int) (OutageEnded, error) {
	if p.status != ProviderRecovering {
		return OutageEnded{}, fmt.Errorf("%w: %s is %s", ErrProviderStatus, p.name, p.status)
	}
	return OutageEnded{Provider: p.name, Resumed: resumed}, nil
}

// ProviderStreamID is the stream of a provider's outages.
func ProviderStreamID(name string) string { return "provider-" + name }

// DecodeProviderEvent decodes a stored provider event.
func DecodeProviderEvent(eventType string, data []byte) (ProviderEvent, error) {
	switch eventType {
	case TypeOutageStarted:
		return decodeProvider[OutageStarted](eventType, data)
	case TypeOutageRecovered:
		return decodeProvider[OutageRecovered](eventType, data)
	case TypeOutageEnded:
		return decodeProvider[OutageEnded](eventType, data)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownEventType, eventType)
}

func decodeProvider[T ProviderEvent](eventType string, data []byte) (ProviderEvent, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", eventType, err)
	}
	return v, nil
}
