package providers_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

func billing(customer string, group int) providers.BillingAccountRequest {
	return providers.BillingAccountRequest{
		CustomerID: customer, Company: "Acme", Email: "a@b.example", Plan: "pro",
		IdempotencyKey: providers.IdempotencyKey(customer, "billing", group),
	}
}

// TestTransientRetried checks each transient class twice: once followed by
// a success, which the in-process retry reaches with exactly one effect at
// the provider, and once persisting, which ends in a transient *Error
// wrapping the class's cause.
func TestTransientRetried(t *testing.T) {
	tests := []struct {
		fault  sim.Fault
		cause  error
		status int
	}{
		{sim.Fault503, providers.ErrUnavailable, 503},
		{sim.Fault429, providers.ErrRateLimited, 429},
		{sim.FaultReset, providers.ErrConnection, 0},
		{sim.FaultTimeout, providers.ErrTimeout, 0},
	}
	for _, tt := range tests {
		t.Run(string(tt.fault), func(t *testing.T) {
			ctx := context.Background()
			s, srv := newSim(t, sim.Config{Seed: 7})
			rec := &recorder{}
			p := fastPolicy(rec)
			if tt.fault == sim.FaultTimeout {
				// Long enough for the retry to succeed on a loaded CI
				// machine; the timed-out attempt waits it out once.
				p.Timeout = time.Second
			}
			pay := must[*providers.Payments](t)(providers.NewPayments(cfgFor(srv, "payments", p)))

			if err := s.SetProvider("payments", sim.ProviderConfig{Script: []sim.Fault{tt.fault}, RetryAfter: sim.Duration(10 * time.Millisecond)}); err != nil {
				t.Fatal(err)
			}
			if _, err := pay.CreateBillingAccount(ctx, billing("c1", 0)); err != nil {
				t.Fatalf("after one %s: %v", tt.fault, err)
			}
			if n := rec.attemptCount(); n != 2 {
				t.Errorf("attempts = %d, want 2", n)
			}
			if tt.fault == sim.Fault429 {
				if w := rec.waits(); len(w) != 1 || w[0] != 10*time.Millisecond {
					t.Errorf("retry waits = %v, want [10ms] (the Retry-After)", w)
				}
			}
			if got := s.Ledger().Customers["c1"].BillingAccounts; got != 1 {
				t.Errorf("billing accounts = %d, want 1", got)
			}

			// A fresh client: a reused keep-alive connection would let
			// net/http retry a reset by itself.
			if tt.fault == sim.FaultTimeout {
				p.Timeout = 100 * time.Millisecond // failing anyway
			}
			pay = must[*providers.Payments](t)(providers.NewPayments(cfgFor(srv, "payments", p)))
			if err := s.SetProvider("payments", sim.ProviderConfig{TransientRate: 1, TransientKinds: []sim.Fault{tt.fault}, RetryAfter: sim.Duration(10 * time.Millisecond)}); err != nil {
				t.Fatal(err)
			}
			_, err := pay.CreateBillingAccount(ctx, billing("c2", 0))
			var e *providers.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *providers.Error", err)
			}
			if !errors.Is(err, providers.ErrTransient) || errors.Is(err, providers.ErrPermanent) || !errors.Is(err, tt.cause) {
				t.Errorf("err = %v, want transient wrapping %v", err, tt.cause)
			}
			if e.Attempts != 3 || e.StatusCode != tt.status || e.Provider != "payments" || e.Op != "CreateBillingAccount" {
				t.Errorf("error = %+v, want 3 attempts, status %d", e, tt.status)
			}
			if got := s.Ledger().Customers["c2"].BillingAccounts; got != 0 {
				t.Errorf("billing accounts of c2 = %d, want 0", got)
			}
		})
	}
}

// TestOutage checks that an outage is transient, and that a Retry-After
// beyond Policy.MaxRetryAfter ends the call at once, handing the wait to
// the durable retry.
func TestOutage(t *testing.T) {
	ctx := context.Background()
	s, srv := newSim(t, sim.Config{})
	rec := &recorder{}
	pay := must[*providers.Payments](t)(providers.NewPayments(cfgFor(srv, "payments", fastPolicy(rec))))

	if err := s.SetProvider("payments", sim.ProviderConfig{Outage: sim.Outage{Until: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	_, err := pay.CreateBillingAccount(ctx, billing("c1", 0))
	var e *providers.Error
	if !errors.As(err, &e) || !errors.Is(err, providers.ErrTransient) || !errors.Is(err, providers.ErrUnavailable) {
		t.Fatalf("err = %v, want transient ErrUnavailable", err)
	}
	if e.Attempts != 1 || e.RetryAfter < 59*time.Minute {
		t.Fatalf("attempts %d, retry after %s; want 1 attempt and about an hour", e.Attempts, e.RetryAfter)
	}

	if err := s.SetProvider("payments", sim.ProviderConfig{Outage: sim.Outage{Down: true}}); err != nil {
		t.Fatal(err)
	}
	_, err = pay.CreateBillingAccount(ctx, billing("c1", 0))
	if !errors.As(err, &e) || !errors.Is(err, providers.ErrUnavailable) || e.Attempts != 3 {
		t.Fatalf("err = %v, want transient ErrUnavailable after 3 attempts", err)
	}
}

// TestPermanentNotRetried checks each permanent class: one attempt, one
// request at the provider, a permanent *Error wrapping the class's cause.
func TestPermanentNotRetried(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, s *sim.Simulator, pay *providers.Payments)
		req    providers.BillingAccountRequest
		cause  error
		status int
	}{
		{
			name: "declined",
			setup: func(t *testing.T, s *sim.Simulator, _ *providers.Payments) {
				if err := s.SetProvider("payments", sim.ProviderConfig{PermanentRate: 1}); err != nil {
					t.Fatal(err)
				}
			},
			req: billing("c1", 0), cause: providers.ErrDeclined, status: 402,
		},
		{
			name: "validation injected",
			setup: func(t *testing.T, s *sim.Simulator, _ *providers.Payments) {
				if err := s.SetProvider("payments", sim.ProviderConfig{Script: []sim.Fault{sim.Fault422}}); err != nil {
					t.Fatal(err)
				}
			},
			req: billing("c1", 0), cause: providers.ErrInvalid, status: 422,
		},
		{
			name:  "validation by the provider",
			setup: func(*testing.T, *sim.Simulator, *providers.Payments) {},
			req:   providers.BillingAccountRequest{CustomerID: "c1", IdempotencyKey: "k"}, // no plan
			cause: providers.ErrInvalid, status: 400,
		},
		{
			name: "idempotency key reused with another body",
			setup: func(t *testing.T, _ *sim.Simulator, pay *providers.Payments) {
				req := billing("c1", 0)
				req.Plan = "basic"
				if _, err := pay.CreateBillingAccount(context.Background(), req); err != nil {
					t.Fatal(err)
				}
			},
			req: billing("c1", 0), cause: providers.ErrIdempotencyMismatch, status: 422,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv := newSim(t, sim.Config{})
			rec := &recorder{}
			pay := must[*providers.Payments](t)(providers.NewPayments(cfgFor(srv, "payments", fastPolicy(rec))))
			tt.setup(t, s, pay)
			before, attemptsBefore := s.Stats("payments").Requests, rec.attemptCount()

			_, err := pay.CreateBillingAccount(context.Background(), tt.req)
			var e *providers.Error
			if !errors.As(err, &e) || !errors.Is(err, providers.ErrPermanent) || errors.Is(err, providers.ErrTransient) || !errors.Is(err, tt.cause) {
				t.Fatalf("err = %v, want permanent wrapping %v", err, tt.cause)
			}
			if e.StatusCode != tt.status || e.Attempts != 1 {
				t.Errorf("status %d after %d attempts, want %d after 1", e.StatusCode, e.Attempts, tt.status)
			}
			if n := s.Stats("payments").Requests - before; n != 1 {
				t.Errorf("provider saw %d requests, want 1", n)
			}
			if n := rec.attemptCount() - attemptsBefore; n != 1 {
				t.Errorf("%d attempts, want 1", n)
			}
			if pay.BreakerState() != providers.BreakerClosed {
				t.Errorf("breaker %s after a permanent error, want closed", pay.BreakerState())
			}
		})
	}
}

func TestGetCheckNotFound(t *testing.T) {
	_, srv := newSim(t, sim.Config{})
	kyc := must[*providers.KYC](t)(providers.NewKYC(cfgFor(srv, "kyc", fastPolicy(nil))))
	_, err := kyc.GetCheck(context.Background(), "chk_nope")
	if !errors.Is(err, providers.ErrPermanent) || !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("err = %v, want permanent ErrNotFound", err)
	}
}

// TestResponseLost is the ambiguous case: the provider performs the effect
// and the answer is lost. The retry with the same idempotency key gets the
// first answer replayed, and the ledger shows exactly one effect.
func TestResponseLost(t *testing.T) {
	for _, fault := range []sim.Fault{sim.FaultLostReset, sim.FaultLost504} {
		t.Run(string(fault), func(t *testing.T) {
			s, srv := newSim(t, sim.Config{})
			rec := &recorder{}
			pay := must[*providers.Payments](t)(providers.NewPayments(cfgFor(srv, "payments", fastPolicy(rec))))
			if err := s.SetProvider("payments", sim.ProviderConfig{Script: []sim.Fault{fault}}); err != nil {
				t.Fatal(err)
			}
			acc, err := pay.CreateBillingAccount(context.Background(), billing("c1", 0))
			if err != nil {
				t.Fatal(err)
			}
			if rec.attemptCount() != 2 {
				t.Errorf("attempts = %d, want 2", rec.attemptCount())
			}
			l := s.Ledger()
			if c := l.Customers["c1"]; c.BillingAccounts != 1 || c.Subscriptions != 1 {
				t.Errorf("ledger = %+v, want exactly one account and subscription", c)
			}
			if l.DuplicatesPrevented != 1 || l.DuplicateEffects != 0 {
				t.Errorf("prevented %d, duplicates %d; want 1 and 0", l.DuplicatesPrevented, l.DuplicateEffects)
			}
			if acc.AccountID != "acct_000001" {
				t.Errorf("account %q, want the first one created, acct_000001", acc.AccountID)
			}
		})
	}
}

// TestInFlightConflict checks that a second request with the key of one
// still in flight gets a transient ErrInFlight, and succeeds with the same
// answer once the first is done.
func TestInFlightConflict(t *testing.T) {
	ctx := context.Background()
	s, srv := newSim(t, sim.Config{})
	p := fastPolicy(nil)
	p.MaxAttempts = 1
	pay := must[*providers.Payments](t)(providers.NewPayments(cfgFor(srv, "payments", p)))

	release := s.Hold("payments")
	first := make(chan providers.BillingAccount, 1)
	go func() {
		acc, err := pay.CreateBillingAccount(ctx, billing("c1", 0))
		if err != nil {
			t.Error(err)
		}
		first <- acc
	}()
	waitFor(t, func() bool { return s.Stats("payments").Held == 1 })

	_, err := pay.CreateBillingAccount(ctx, billing("c1", 0))
	if !errors.Is(err, providers.ErrTransient) || !errors.Is(err, providers.ErrInFlight) {
		t.Fatalf("err = %v, want transient ErrInFlight", err)
	}
	release()
	acc := <-first
	again, err := pay.CreateBillingAccount(ctx, billing("c1", 0))
	if err != nil || again != acc {
		t.Fatalf("after release: %+v, %v; want %+v", again, err, acc)
	}
	if n := s.Ledger().Customers["c1"].BillingAccounts; n != 1 {
		t.Fatalf("billing accounts = %d, want 1", n)
	}
}

// TestTimeout holds the provider's answer past the per-attempt timeout.
func TestTimeout(t *testing.T) {
	s, srv := newSim(t, sim.Config{})
	p := fastPolicy(nil)
	p.Timeout = 50 * time.Millisecond
	p.MaxAttempts = 2
	prov := must[*providers.Provisioning](t)(providers.NewProvisioning(cfgFor(srv, "provisioning", p)))
	release := s.Hold("provisioning")
	defer release()

	_, err := prov.CreateTenant(context.Background(), providers.TenantRequest{CustomerID: "c1", IdempotencyKey: "k"})
	var e *providers.Error
	if !errors.As(err, &e) || !errors.Is(err, providers.ErrTransient) || !errors.Is(err, providers.ErrTimeout) || e.Attempts != 2 {
		t.Fatalf("err = %v, want transient ErrTimeout after 2 attempts", err)
	}
	release()
	// Once the abandoned attempts have ended (releasing their key, or
	// storing their answer), the next call succeeds with one effect.
	waitFor(t, func() bool { return s.Stats("provisioning").InFlight == 0 })
	p.Timeout = 5 * time.Second
	prov = must[*providers.Provisioning](t)(providers.NewProvisioning(cfgFor(srv, "provisioning", p)))
	if _, err := prov.CreateTenant(context.Background(), providers.TenantRequest{CustomerID: "c1", IdempotencyKey: "k"}); err != nil {
		t.Fatal(err)
	}
	if n := s.Ledger().Customers["c1"].Tenants; n != 1 {
		t.Fatalf("tenants = %d, want 1", n)
	}
}

// TestCallerCancel checks that a call whose ctx ends is not retried, and
// is not held against the provider's breaker.
func TestCallerCancel(t *testing.T) {
	s, srv := newSim(t, sim.Config{})
	p := fastPolicy(nil)
	p.Breaker.FailureThreshold = 1
	crm := must[*providers.CRM](t)(providers.NewCRM(cfgFor(srv, "crm", p)))
	release := s.Hold("crm")
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Not waitFor: t.Fatal must not be called from this goroutine.
		for s.Stats("crm").Held != 1 {
			time.Sleep(2 * time.Millisecond)
		}
		cancel()
	}()
	_, err := crm.UpsertAccount(ctx, providers.CRMAccount{ExternalID: "c1", IdempotencyKey: "k"})
	var e *providers.Error
	if !errors.As(err, &e) || !errors.Is(err, context.Canceled) || e.Attempts != 1 {
		t.Fatalf("err = %v, want context.Canceled after 1 attempt", err)
	}
	if st := crm.BreakerState(); st != providers.BreakerClosed {
		t.Fatalf("breaker %s, want closed", st)
	}
}

// TestBreaker opens the breaker with consecutive transient failures, checks
// that an open breaker fails fast without reaching the provider, and that
// it half-opens after its timeout and closes on a successful probe.
func TestBreaker(t *testing.T) {
	ctx := context.Background()
	s, srv := newSim(t, sim.Config{})
	rec := &recorder{}
	p := fastPolicy(rec)
	p.MaxAttempts = 1
	p.Breaker = providers.BreakerPolicy{FailureThreshold: 3, OpenTimeout: 50 * time.Millisecond}
	mail := must[*providers.Email](t)(providers.NewEmail(cfgFor(srv, "email", p)))
	send := func(i int) error {
		_, err := mail.SendWelcome(ctx, providers.WelcomeEmail{CustomerID: fmt.Sprint("c", i), To: "a@b.example", IdempotencyKey: fmt.Sprint("k", i)})
		return err
	}
	if err := s.SetProvider("email", sim.ProviderConfig{TransientRate: 1, TransientKinds: []sim.Fault{sim.Fault503}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := send(i); !errors.Is(err, providers.ErrUnavailable) {
			t.Fatalf("call %d: %v, want ErrUnavailable", i, err)
		}
	}
	if st := mail.BreakerState(); st != providers.BreakerOpen && st != providers.BreakerHalfOpen {
		t.Fatalf("breaker %s after 3 failures, want open", st)
	}
	// While open (50ms is far longer than the next call, and even if it
	// half-opened the probe would fail and reopen), the provider sees nothing.
	before := s.Stats("email").Requests
	err := send(3)
	if errors.Is(err, providers.ErrCircuitOpen) {
		if !errors.Is(err, providers.ErrTransient) {
			t.Fatalf("open breaker error %v is not transient", err)
		}
		if n := s.Stats("email").Requests; n != before {
			t.Fatalf("open breaker let %d requests through", n-before)
		}
	}

	if err := s.SetProvider("email", sim.ProviderConfig{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return mail.BreakerState() == providers.BreakerHalfOpen })
	if err := send(4); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if st := mail.BreakerState(); st != providers.BreakerClosed {
		t.Fatalf("breaker %s after a successful probe, want closed", st)
	}
	want := [][2]providers.BreakerState{
		{providers.BreakerClosed, providers.BreakerClosed},
		{providers.BreakerClosed, providers.BreakerOpen},
	}
	got := rec.states()
	if len(got) < 4 || got[0] != want[0] || got[1] != want[1] || got[len(got)-2] != [2]providers.BreakerState{providers.BreakerOpen, providers.BreakerHalfOpen} ||
		got[len(got)-1] != [2]providers.BreakerState{providers.BreakerHalfOpen, providers.BreakerClosed} {
		t.Fatalf("transitions %v, want closed→open … open→half-open→closed", got)
	}
}

// TestBreakerOpenFailsFast opens a breaker with a long timeout and checks
// the fail-fast error deterministically.
func TestBreakerOpenFailsFast(t *testing.T) {
	s, srv := newSim(t, sim.Config{})
	p := fastPolicy(nil)
	p.MaxAttempts = 5
	p.Breaker = providers.BreakerPolicy{FailureThreshold: 2, OpenTimeout: time.Hour}
	kyc := must[*providers.KYC](t)(providers.NewKYC(cfgFor(srv, "kyc", p)))
	if err := s.SetProvider("kyc", sim.ProviderConfig{TransientRate: 1, TransientKinds: []sim.Fault{sim.Fault503}}); err != nil {
		t.Fatal(err)
	}
	_, err := kyc.GetCheck(context.Background(), "chk_1")
	var e *providers.Error
	// Two failures open the breaker; the third attempt is refused locally
	// and ends the call rather than spinning against an open breaker.
	if !errors.As(err, &e) || !errors.Is(err, providers.ErrCircuitOpen) || !errors.Is(err, providers.ErrTransient) || e.Attempts != 3 {
		t.Fatalf("err = %v, want transient ErrCircuitOpen on attempt 3", err)
	}
	if n := s.Stats("kyc").Requests; n != 2 {
		t.Fatalf("provider saw %d requests, want 2", n)
	}
	if kyc.BreakerState() != providers.BreakerOpen {
		t.Fatalf("breaker %s, want open", kyc.BreakerState())
	}
}

// TestBulkhead holds MaxConcurrent calls at the provider and checks that
// the next one fails fast (MaxWait 0) without reaching it, or waits for a
// slot (MaxWait > 0).
func TestBulkhead(t *testing.T) {
	for _, wait := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprint("max wait ", wait), func(t *testing.T) {
			ctx := context.Background()
			s, srv := newSim(t, sim.Config{})
			p := fastPolicy(nil)
			p.MaxAttempts = 1
			p.Bulkhead = providers.BulkheadPolicy{MaxConcurrent: 2, MaxWait: wait}
			prov := must[*providers.Provisioning](t)(providers.NewProvisioning(cfgFor(srv, "provisioning", p)))
			create := func(i int) error {
				_, err := prov.CreateTenant(ctx, providers.TenantRequest{CustomerID: fmt.Sprint("c", i), IdempotencyKey: fmt.Sprint("k", i)})
				return err
			}
			release := s.Hold("provisioning")
			var wg sync.WaitGroup
			for i := range 2 {
				wg.Go(func() {
					if err := create(i); err != nil {
						t.Error(err)
					}
				})
			}
			waitFor(t, func() bool { return s.Stats("provisioning").Held == 2 })
			if wait == 0 {
				err := create(2)
				if !errors.Is(err, providers.ErrBulkheadFull) || !errors.Is(err, providers.ErrTransient) {
					t.Fatalf("err = %v, want transient ErrBulkheadFull", err)
				}
				if n := s.Stats("provisioning").Requests; n != 2 {
					t.Fatalf("provider saw %d requests, want 2", n)
				}
				release()
			} else {
				wg.Go(func() {
					if err := create(2); err != nil {
						t.Error(err)
					}
				})
				release()
			}
			wg.Wait()
			if m := s.Stats("provisioning").MaxInFlight; m > 2 {
				t.Fatalf("provider saw %d requests at once, want at most 2", m)
			}
		})
	}
}

// waitFor polls cond until it holds; the bound only stops a broken test.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestConcurrentCallsKeepTheirConnections: calls as concurrent as the
// bulkhead allows reuse their connections afterwards instead of opening
// new ones (the default transport keeps two idle per host).
func TestConcurrentCallsKeepTheirConnections(t *testing.T) {
	ctx := context.Background()
	s, err := sim.New(sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/sim/", http.StripPrefix("/sim", s))
	srv := httptest.NewUnstartedServer(mux)
	var opened atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	const concurrent = 8
	p := fastPolicy(nil)
	p.MaxAttempts = 1
	p.Bulkhead = providers.BulkheadPolicy{MaxConcurrent: concurrent, MaxWait: time.Minute}
	prov := must[*providers.Provisioning](t)(providers.NewProvisioning(cfgFor(srv, "provisioning", p)))
	for wave := range 3 {
		release := s.Hold("provisioning")
		var wg sync.WaitGroup
		for i := range concurrent {
			wg.Go(func() {
				id := fmt.Sprintf("c%d-%d", wave, i)
				if _, err := prov.CreateTenant(ctx, providers.TenantRequest{CustomerID: id, IdempotencyKey: id}); err != nil {
					t.Error(err)
				}
			})
		}
		waitFor(t, func() bool { return s.Stats("provisioning").Held == concurrent })
		release()
		wg.Wait()
	}
	if n := opened.Load(); n > concurrent {
		t.Fatalf("%d connections opened for 3 waves of %d concurrent calls, want at most %d", n, concurrent, concurrent)
	}
}
