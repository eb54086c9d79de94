package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
)

// Simulator serves the five provider contracts, the admin endpoints and the
// ledger on one http.Handler. Mount it under a prefix with
// http.StripPrefix("/sim", s). Safe for concurrent use. Close stops its
// webhook deliveries.
//
// Routes (relative to the mount point):
//
//	POST   /kyc/checks                         start a check (Idempotency-Key)
//	GET    /kyc/checks/{id}                    a check's verdict
//	POST   /payments/accounts                  billing account + subscription (Idempotency-Key)
//	POST   /payments/customers/{id}/close      close the customer's accounts (Idempotency-Key)
//	POST   /provisioning/tenants               create a tenant (Idempotency-Key)
//	DELETE /provisioning/customers/{id}/tenant delete the customer's tenant (Idempotency-Key)
//	PUT    /crm/accounts/{external_id}         upsert a CRM record (Idempotency-Key)
//	POST   /email/messages                     send an email (Idempotency-Key)
//	GET    /ledger                             the effects ledger
//	GET    /admin/config                       the whole Config as JSON
//	PUT    /admin/config                       merge fields into the Config
//	GET    /admin/config/providers/{name}      one ProviderConfig as JSON
//	PUT    /admin/config/providers/{name}      replace one ProviderConfig
//	GET    /admin/stats                        request counters per provider
//	POST   /admin/reset                        forget all state, keep the config
//
// The /admin routes need Config.AdminKey (see doc.go).
type Simulator struct {
	mux    *http.ServeMux
	ctx    context.Context // ends at Close, stopping webhooks and held requests
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	cfg      Config
	rng      *rand.Rand
	state    *state
	stats    map[string]*Stats
	gates    map[string]chan struct{}
	closed   bool
	webhooks WebhookCounts
	adminKey string // fixed at New
}

// Stats counts what one provider received, for tests and the admin
// endpoint.
type Stats struct {
	Requests    int           `json:"requests"`      // requests received, admin excluded
	Mutating    int           `json:"mutating"`      // of them, the ones that may have an effect (POST, PUT, DELETE)
	InFlight    int           `json:"in_flight"`     // requests being processed now
	MaxInFlight int           `json:"max_in_flight"` // the most at once so far
	Held        int           `json:"held"`          // requests waiting at a Hold
	Replays     int           `json:"replays"`       // answers replayed from an idempotency record
	Faults      map[Fault]int `json:"faults"`        // injected faults by kind
}

// New returns a simulator configured by cfg; it fails when cfg is invalid.
func New(cfg Config) (*Simulator, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sim config: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Simulator{
		ctx:    ctx,
		cancel: cancel,
		cfg:    cfg,
		rng:    newRand(cfg.Seed),
		state:  newState(),
		stats:  map[string]*Stats{},
		gates:  map[string]chan struct{}{},

		adminKey: cfg.AdminKey,
	}
	for _, p := range ProviderNames() {
		s.stats[p] = &Stats{Faults: map[Fault]int{}}
	}
	s.routes()
	return s, nil
}

func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// ServeHTTP implements http.Handler.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops the webhook deliveries and releases held requests, and waits
// for the deliveries to return. The handler keeps answering afterwards.
func (s *Simulator) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// Config returns the current configuration.
func (s *Simulator) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneConfig(s.cfg)
}

// SetConfig replaces the whole configuration (PatchConfig merges into it);
// a new seed restarts the random sequence. The admin key stays the one New
// was given.
func (s *Simulator) SetConfig(cfg Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cfg.Now == nil {
		cfg.Now = s.cfg.Now
	}
	if cfg.WebhookClient == nil {
		cfg.WebhookClient = s.cfg.WebhookClient
	}
	cfg.AdminKey = s.adminKey
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("sim config: %w", err)
	}
	if cfg.Seed != s.cfg.Seed {
		s.rng = newRand(cfg.Seed)
	}
	s.cfg = cloneConfig(cfg)
	return nil
}

// SetProvider replaces the whole configuration of one provider.
func (s *Simulator) SetProvider(name string, p ProviderConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.setDefaults()
	cfg := cloneConfig(s.cfg)
	cfg.Providers[name] = p
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("sim config: %w", err)
	}
	s.cfg = cfg
	return nil
}

func cloneConfig(c Config) Config {
	out := c
	out.Providers = make(map[string]ProviderConfig, len(c.Providers))
	for k, p := range c.Providers {
		p.TransientKinds = append([]Fault(nil), p.TransientKinds...)
		p.Script = append([]Fault(nil), p.Script...)
		out.Providers[k] = p
	}
	return out
}

// Stats returns the counters of one provider.
func (s *Simulator) Stats(provider string) Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.stats[provider]
	if !ok {
		return Stats{}
	}
	out := *st
	out.Faults = make(map[Fault]int, len(st.Faults))
	for k, v := range st.Faults {
		out.Faults[k] = v
	}
	return out
}

// Hold makes the provider's requests wait, after they have claimed their
// idempotency key and before they take effect, until release is called (or
// the request ends, or the simulator closes). Tests use it to hold requests
// in flight deterministically: an in-flight 409, a full bulkhead, a timeout.
func (s *Simulator) Hold(provider string) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gate := make(chan struct{})
	s.gates[provider] = gate
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.gates[provider] == gate {
				delete(s.gates, provider)
			}
			s.mu.Unlock()
			close(gate)
		})
	}
}

// Reset forgets all state (effects, checks, idempotency records, stats),
// keeping the configuration, and restarts the random sequence.
func (s *Simulator) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = newState()
	s.rng = newRand(s.cfg.Seed)
	s.webhooks = WebhookCounts{}
	for _, p := range ProviderNames() {
		s.stats[p] = &Stats{Faults: map[Fault]int{}}
	}
}
