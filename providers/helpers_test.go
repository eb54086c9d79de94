package providers_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

// newSim starts a simulator on loopback and stops it with the test.
func newSim(t *testing.T, cfg sim.Config) (*sim.Simulator, *httptest.Server) {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/sim/", http.StripPrefix("/sim", s))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	return s, srv
}

func newBenchServer(s *sim.Simulator) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/sim/", http.StripPrefix("/sim", s))
	return httptest.NewServer(mux)
}

// recorder records what the resilience layer reports through its hooks.
type recorder struct {
	mu          sync.Mutex
	attempts    []providers.Outcome
	retryWaits  []time.Duration
	transitions [][2]providers.BreakerState
}

func (r *recorder) hooks() providers.Hooks {
	return providers.Hooks{
		OnAttempt: func(_, _ string, o providers.Outcome, _ time.Duration) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.attempts = append(r.attempts, o)
		},
		OnRetry: func(_, _ string, _ error, d time.Duration) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.retryWaits = append(r.retryWaits, d)
		},
		OnStateChange: func(_ string, from, to providers.BreakerState) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.transitions = append(r.transitions, [2]providers.BreakerState{from, to})
		},
	}
}

func (r *recorder) attemptCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.attempts)
}

func (r *recorder) waits() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.retryWaits...)
}

func (r *recorder) states() [][2]providers.BreakerState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][2]providers.BreakerState(nil), r.transitions...)
}

// fastPolicy retries within milliseconds, so that the suite stays fast.
func fastPolicy(rec *recorder) providers.Policy {
	p := providers.Policy{
		Timeout:       5 * time.Second,
		MaxAttempts:   3,
		BaseDelay:     time.Millisecond,
		MaxDelay:      4 * time.Millisecond,
		MaxRetryAfter: time.Second,
	}
	if rec != nil {
		p.Hooks = rec.hooks()
	}
	return p
}

func cfgFor(srv *httptest.Server, provider string, p providers.Policy) providers.Config {
	return providers.Config{BaseURL: srv.URL + "/sim/" + provider, Policy: p}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
