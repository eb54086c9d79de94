package sim

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/onboard/onboard/providers"
)

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("150ms", "2s"), so that the admin endpoint is editable by hand.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Latency is a uniform distribution in [Min, Max]. Max below Min means Min.
type Latency struct {
	Min Duration `json:"min"`
	Max Duration `json:"max"`
}

// Outage makes a provider answer 503 to everything: while Down is true, or
// until Until (then with a Retry-After counting down to it).
type Outage struct {
	Down  bool      `json:"down"`
	Until time.Time `json:"until,omitzero"`
}

// Fault is one kind of injected failure.
type Fault string

// The faults. Transient ones (503, 429, reset, timeout) happen before the
// request is processed; permanent ones (402, 422) are answered and stored
// under the idempotency key like a real decline; the lost ones perform the
// effect and then lose the answer.
const (
	FaultNone      Fault = "ok"      // no fault (a script placeholder)
	Fault503       Fault = "503"     // 503 Service Unavailable
	Fault429       Fault = "429"     // 429 Too Many Requests with Retry-After
	FaultReset     Fault = "reset"   // connection reset before any answer
	FaultTimeout   Fault = "timeout" // no answer until the client gives up
	Fault402       Fault = "402"     // 402 declined (any provider; payments' natural one)
	Fault422       Fault = "422"     // 422 validation error
	FaultLostReset Fault = "lost"    // effect done, then the connection is reset
	FaultLost504   Fault = "lost504" // effect done, then 504 Gateway Timeout
)

var transientFaults = []Fault{Fault503, Fault429, FaultReset, FaultTimeout}

var knownFaults = []Fault{FaultNone, Fault503, Fault429, FaultReset, FaultTimeout, Fault402, Fault422, FaultLostReset, FaultLost504}

// ProviderConfig configures the behaviour of one provider.
type ProviderConfig struct {
	// Latency is added to every request before it is processed.
	Latency Latency `json:"latency"`
	// TransientRate is the share of requests failing with a transient
	// fault, drawn uniformly from TransientKinds (default 503, 429, reset).
	TransientRate  float64 `json:"transient_rate"`
	TransientKinds []Fault `json:"transient_kinds,omitempty"`
	// RetryAfter is sent with 429s. Default 1s.
	RetryAfter Duration `json:"retry_after"`
	// PermanentRate is the share of requests declined (402 for payments)
	// or rejected as invalid (422 for the others).
	PermanentRate float64 `json:"permanent_rate"`
	// LostResponseRate is the share of successful requests whose effect
	// happens but whose answer is lost: the connection is reset, or with
	// LostResponseMode "504" a 504 is answered instead.
	LostResponseRate float64 `json:"lost_response_rate"`
	LostResponseMode string  `json:"lost_response_mode,omitempty"`
	// Outage makes every request fail with 503.
	Outage Outage `json:"outage"`
	// Script is consumed one entry per request before any random draw, for
	// tests that need an exact sequence ("503", "lost", "ok", ...).
	Script []Fault `json:"script,omitempty"`
}

// KYCConfig configures the verdicts and webhooks of the KYC provider.
type KYCConfig struct {
	// CallbackURL receives the signed webhooks; empty sends none (the
	// verdict is still visible to GetCheck).
	CallbackURL string `json:"callback_url"`
	// WebhookSecret signs the webhooks. Default "whsec_dev".
	WebhookSecret string `json:"webhook_secret"`
	// Approve, Reject and Silent are relative weights of the verdicts; a
	// silent check stays pending forever and sends no webhook. All zero
	// means approve everything.
	Approve float64 `json:"approve"`
	Reject  float64 `json:"reject"`
	Silent  float64 `json:"silent"`
	// Delay is the time from a check's creation to its verdict.
	Delay Latency `json:"delay"`
	// DuplicateRate is the share of webhooks delivered twice (same event
	// id), as real providers do, to exercise replay detection.
	DuplicateRate float64 `json:"duplicate_rate"`
	// DeliveryAttempts bounds the deliveries of one webhook while the
	// callback fails. Default 5.
	DeliveryAttempts int `json:"delivery_attempts"`
}

// Config configures the simulator. Its JSON form is what the admin
// endpoint reads and writes.
type Config struct {
	// Seed seeds the randomness (math/rand/v2 PCG): the same seed and the
	// same sequence of requests give the same faults and verdicts.
	Seed uint64 `json:"seed"`
	// Providers maps "kyc", "payments", "provisioning", "crm", "email" to
	// their behaviour; a missing provider behaves perfectly.
	Providers map[string]ProviderConfig `json:"providers"`
	KYC       KYCConfig                 `json:"kyc"`

	// AdminKey is the key the admin endpoints (/admin/...) require, as
	// "Authorization: Bearer <key>". Empty disables them: they answer 403.
	// New reads it; SetConfig and the admin endpoints cannot change it.
	AdminKey string `json:"-"`
	// Now is the simulator's clock (webhook timestamps, outages). Default
	// time.Now.
	Now func() time.Time `json:"-"`
	// WebhookClient sends the webhooks. Default: a client with a 5s timeout.
	WebhookClient *http.Client `json:"-"`
}

// ProviderNames lists the simulated providers.
func ProviderNames() []string {
	return []string{providers.ProviderKYC, providers.ProviderPayments, providers.ProviderProvisioning, providers.ProviderCRM, providers.ProviderEmail}
}

func (c *Config) setDefaults() {
	if c.Providers == nil {
		c.Providers = map[string]ProviderConfig{}
	}
	for name, p := range c.Providers {
		p.setDefaults()
		c.Providers[name] = p
	}
	if c.KYC.WebhookSecret == "" {
		c.KYC.WebhookSecret = "whsec_dev"
	}
	if c.KYC.Approve == 0 && c.KYC.Reject == 0 && c.KYC.Silent == 0 {
		c.KYC.Approve = 1
	}
	if c.KYC.DeliveryAttempts == 0 {
		c.KYC.DeliveryAttempts = 5
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.WebhookClient == nil {
		// Verdicts of many checks go out at once: keep their connections
		// (the default keeps two per host and opens one per webhook
		// beyond that).
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		c.WebhookClient = &http.Client{Timeout: 5 * time.Second, Transport: t}
	}
}

func (p *ProviderConfig) setDefaults() {
	if len(p.TransientKinds) == 0 {
		p.TransientKinds = []Fault{Fault503, Fault429, FaultReset}
	}
	if p.RetryAfter == 0 {
		p.RetryAfter = Duration(time.Second)
	}
	if p.LostResponseMode == "" {
		p.LostResponseMode = "reset"
	}
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	for name, p := range c.Providers {
		if !slices.Contains(ProviderNames(), name) {
			errs = append(errs, fmt.Errorf("unknown provider %q", name))
			continue
		}
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("provider %s: %w", name, err))
		}
	}
	k := c.KYC
	if k.Approve < 0 || k.Reject < 0 || k.Silent < 0 {
		errs = append(errs, errors.New("kyc: verdict weights must not be negative"))
	}
	if err := checkRate("kyc duplicate_rate", k.DuplicateRate); err != nil {
		errs = append(errs, err)
	}
	if k.Delay.Min < 0 || k.Delay.Max < 0 {
		errs = append(errs, errors.New("kyc: delay must not be negative"))
	}
	if k.DeliveryAttempts < 0 {
		errs = append(errs, errors.New("kyc: delivery attempts must not be negative"))
	}
	return errors.Join(errs...)
}

// Validate reports every invalid field at once.
func (p ProviderConfig) Validate() error {
	var errs []error
	for name, r := range map[string]float64{"transient_rate": p.TransientRate, "permanent_rate": p.PermanentRate, "lost_response_rate": p.LostResponseRate} {
		if err := checkRate(name, r); err != nil {
			errs = append(errs, err)
		}
	}
	if p.Latency.Min < 0 || p.Latency.Max < 0 || p.RetryAfter < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	for _, k := range p.TransientKinds {
		if !slices.Contains(transientFaults, k) {
			errs = append(errs, fmt.Errorf("transient kind %q: want one of %v", k, transientFaults))
		}
	}
	for _, k := range p.Script {
		if !slices.Contains(knownFaults, k) {
			errs = append(errs, fmt.Errorf("script fault %q: want one of %v", k, knownFaults))
		}
	}
	if p.LostResponseMode != "" && p.LostResponseMode != "reset" && p.LostResponseMode != "504" {
		errs = append(errs, fmt.Errorf("lost_response_mode %q: want reset or 504", p.LostResponseMode))
	}
	return errors.Join(errs...)
}

func checkRate(name string, r float64) error {
	if r < 0 || r > 1 {
		return fmt.Errorf("%s %v: want a share in [0, 1]", name, r)
	}
	return nil
}
