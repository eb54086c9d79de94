package process_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

const sagaSecret = "whsec_saga_0123456789"

// saga is the whole pipeline minus NATS: the Postgres event store, the
// command API receiving the simulator's webhooks over HTTP, the simulator
// behind the real provider clients, and the process managers fed by the
// store's catch-up subscription.
type saga struct {
	t       *testing.T
	store   *postgres.Store
	cmds    *commands.Handler
	sim     *sim.Simulator
	clients providers.Clients
	pm      *process.Manager
	timers  *process.Timers
	pauses  sync.Map // step → count
	stop    func()
}

func newSaga(t *testing.T, cfg sim.Config) *saga {
	t.Helper()
	cmds, store, keys := newEncryptingCommands(t)
	api, err := httpapi.NewCommandAPI(httpapi.CommandConfig{Commands: cmds, Store: store, WebhookSecret: sagaSecret})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Start()
	t.Cleanup(srv.Close)

	cfg.KYC.CallbackURL = srv.URL + "/v1/webhooks/kyc"
	cfg.KYC.WebhookSecret = sagaSecret
	if cfg.KYC.Delay.Max == 0 {
		cfg.KYC.Delay = sim.Latency{Min: sim.Duration(time.Millisecond), Max: sim.Duration(20 * time.Millisecond)}
	}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	mux.Handle("/sim/", http.StripPrefix("/sim", s))

	policy := providers.Policy{Timeout: 2 * time.Second, BaseDelay: 2 * time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxRetryAfter: 50 * time.Millisecond,
		Breaker: providers.BreakerPolicy{OpenTimeout: 100 * time.Millisecond}}
	conf := func(p string) providers.Config {
		return providers.Config{BaseURL: srv.URL + "/sim/" + p, Policy: policy}
	}
	clients, err := providers.NewClients(conf("kyc"), conf("payments"), conf("provisioning"), conf("crm"), conf("email"))
	if err != nil {
		t.Fatal(err)
	}
	timers := process.NewTimers(store.Pool())
	sg := &saga{t: t, store: store, cmds: cmds, sim: s, clients: clients, timers: timers}
	sg.pm, err = process.New(process.Config{
		Commands: cmds, Providers: process.ProvidersOf(clients), Timers: timers, Keys: keys,
		MaxAttempts: map[domain.Step]int{domain.StepBilling: 10, domain.StepTenant: 10, domain.StepCRM: 10, domain.StepWelcome: 10, domain.StepVerification: 10},
		BaseDelay:   5 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
		VerificationDeadline: 500 * time.Millisecond, VerificationPolls: 2,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		OnPause: func(step domain.Step, _ domain.ErrorClass) {
			n, _ := sg.pauses.LoadOrStore(step, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sg.start()
	t.Cleanup(func() { sg.stop() })
	return sg
}

// start runs the worker: the process managers and their timers.
func (sg *saga) start() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = sg.pm.Run(ctx, process.RunConfig{Name: "process-managers", Pool: sg.store.Pool(), Source: sg.store, Workers: 16})
	}()
	go func() {
		defer wg.Done()
		_ = sg.pm.RunTimers(ctx, 100*time.Millisecond)
	}()
	sg.stop = func() { cancel(); wg.Wait() }
}

func (sg *saga) signUp(n int) []uuid.UUID {
	sg.t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		res, err := sg.cmds.SignUp(context.Background(), domain.SignupDetails{
			Email: fmt.Sprintf("c%d-%s@example.com", i, uuid.NewString()[:8]), Company: fmt.Sprintf("Company %d", i),
			ContactName: "Contact", Country: "NL", Plan: domain.PlanStarter,
		}, commands.Meta{Actor: "client:test"})
		if err != nil {
			sg.t.Fatal(err)
		}
		ids[i] = res.CustomerID
	}
	return ids
}

// settle waits until every customer is in one of the states, and returns
// the customers by state.
func (sg *saga) settle(ids []uuid.UUID, timeout time.Duration, states ...domain.State) map[domain.State][]uuid.UUID {
	sg.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		by := map[domain.State][]uuid.UUID{}
		settled := true
		for _, id := range ids {
			c, err := sg.cmds.Load(context.Background(), id)
			if err != nil {
				sg.t.Fatal(err)
			}
			ok := false
			for _, s := range states {
				ok = ok || c.State() == s
			}
			// A paused customer must have nothing in flight.
			settled = settled && ok
			by[c.State()] = append(by[c.State()], id)
		}
		if settled {
			return by
		}
		if time.Now().After(deadline) {
			counts := map[domain.State]int{}
			for s, l := range by {
				counts[s] = len(l)
			}
			for state, l := range by {
				if state == domain.StateActive || len(l) == 0 {
					continue
				}
				envs, _ := sg.store.ReadStream(context.Background(), commands.StreamID(l[0]), 1)
				for _, e := range envs {
					sg.t.Logf("stuck %s v%d pos %d tx %d %s %s", l[0], e.Version, e.Position, e.TransactionID, e.Type, e.Data)
				}
			}
			sg.t.Fatalf("customers did not settle in %v: %v", timeout, counts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (sg *saga) assertOneOfEach(ids []uuid.UUID) {
	sg.t.Helper()
	l := sg.sim.Ledger()
	if l.DuplicateEffects != 0 {
		sg.t.Errorf("ledger shows %d duplicate effects", l.DuplicateEffects)
	}
	for _, id := range ids {
		e := l.Customers[id.String()]
		if e.BillingAccounts != 1 || e.Subscriptions != 1 || e.Tenants != 1 || e.CRMRecords != 1 || e.EmailsByType["welcome"] != 1 {
			sg.t.Errorf("customer %s effects %+v, want one of each", id, e)
		}
	}
}

func TestSagaHappyPath(t *testing.T) {
	sg := newSaga(t, sim.Config{Seed: 1})
	ids := sg.signUp(200)
	by := sg.settle(ids, 120*time.Second, domain.StateActive)
	if len(by[domain.StateActive]) != 200 {
		t.Fatalf("active: %d", len(by[domain.StateActive]))
	}
	sg.assertOneOfEach(ids)
}

func TestSagaFlakyProviders(t *testing.T) {
	flaky := sim.ProviderConfig{TransientRate: 0.3, TransientKinds: []sim.Fault{sim.Fault503, sim.Fault429, sim.FaultReset},
		RetryAfter: sim.Duration(10 * time.Millisecond), LostResponseRate: 0.05}
	cfg := sim.Config{Seed: 2, Providers: map[string]sim.ProviderConfig{}}
	for _, p := range []string{"kyc", "payments", "provisioning", "crm", "email"} {
		cfg.Providers[p] = flaky
	}
	sg := newSaga(t, cfg)
	ids := sg.signUp(200)
	by := sg.settle(ids, 180*time.Second, domain.StateActive)
	if len(by[domain.StateActive]) != 200 {
		t.Fatalf("active: %d", len(by[domain.StateActive]))
	}
	sg.assertOneOfEach(ids)
}

func TestSagaPauseRetryAndCancel(t *testing.T) {
	sg := newSaga(t, sim.Config{Seed: 3, Providers: map[string]sim.ProviderConfig{"provisioning": {PermanentRate: 1}}})
	ids := sg.signUp(20)
	by := sg.settle(ids, 60*time.Second, domain.StatePaused)
	// The alert is the reaction to the pause, so it may come just after.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n, _ := sg.pauses.Load(domain.StepTenant)
		if n != nil && n.(*atomic.Int64).Load() == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant pause alerts: %v, want 20", n)
		}
	}
	sg.assertPausedAt(by[domain.StatePaused], domain.StepTenant)
	// The outage ends: operators retry half and cancel the other half.
	if err := sg.sim.SetProvider("provisioning", sim.ProviderConfig{}); err != nil {
		t.Fatal(err)
	}
	retried, cancelled := ids[:10], ids[10:]
	sg.operatorRetry(retried, "outage over")
	for _, id := range cancelled {
		if _, err := sg.cmds.Execute(context.Background(), id, nil, commands.Meta{Actor: "operator:ada"}, func(c *domain.Customer) error { return c.Cancel("operator:ada", "customer withdrew") }); err != nil {
			t.Fatal(err)
		}
	}
	sg.settle(retried, 60*time.Second, domain.StateActive)
	sg.settle(cancelled, 60*time.Second, domain.StateCancelled)
	sg.assertOneOfEach(retried)
	l := sg.sim.Ledger()
	for _, id := range cancelled {
		e := l.Customers[id.String()]
		if e.BillingAccounts != 1 || e.ClosedAccounts != 1 || e.Tenants-e.DeletedTenants != 0 {
			t.Errorf("cancelled %s: effects %+v, want the billing account closed and no tenant left", id, e)
		}
	}
}

// TestSagaErasedWhilePaused: customers erased while paused at the tenant
// step are cancelled first, their billing account is closed as on any
// cancel, the CRM and the email provider are asked to delete what they
// hold, and the answers are recorded once each.
func TestSagaErasedWhilePaused(t *testing.T) {
	sg := newSaga(t, sim.Config{Seed: 4, Providers: map[string]sim.ProviderConfig{"provisioning": {PermanentRate: 1}}})
	ids := sg.signUp(4)
	sg.settle(ids, 60*time.Second, domain.StatePaused)
	// The provider takes calls again, so that the tenant's compensation
	// (a delete, refused too while it refuses everything) can run.
	if err := sg.sim.SetProvider("provisioning", sim.ProviderConfig{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := sg.cmds.Erase(context.Background(), id, "operator:ada", "DSR-7", commands.Meta{Actor: "operator:ada"}); err != nil {
			t.Fatal(err)
		}
	}
	sg.settle(ids, 60*time.Second, domain.StateCancelled)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		done := 0
		for _, id := range ids {
			c, err := commands.LoadCustomer(context.Background(), sg.store, id)
			if err != nil {
				t.Fatal(err)
			}
			if c.ProviderDataDeleted(process.ErasureCRM) && c.ProviderDataDeleted(process.ErasureEmail) {
				done++
			}
		}
		if done == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d customers have both provider deletions recorded", done, len(ids))
		}
	}
	l := sg.sim.Ledger()
	for _, id := range ids {
		e := l.Customers[id.String()]
		if e.BillingAccounts != 1 || e.ClosedAccounts != 1 || !e.EmailSuppressed || e.CRMRecords != 0 {
			t.Errorf("erased %s: effects %+v, want the billing account closed and the email suppressed", id, e)
		}
		c, err := commands.LoadCustomer(context.Background(), sg.store, id)
		if err != nil {
			t.Fatal(err)
		}
		if d := c.Details(); !c.Erased() || d.Email != domain.Erased {
			t.Errorf("erased %s: details %+v", id, d)
		}
	}
}

func TestSagaBillingDeclinedThenRetried(t *testing.T) {
	sg := newSaga(t, sim.Config{Seed: 4, Providers: map[string]sim.ProviderConfig{"payments": {PermanentRate: 1}}})
	ids := sg.signUp(10)
	sg.settle(ids, 60*time.Second, domain.StatePaused)
	if err := sg.sim.SetProvider("payments", sim.ProviderConfig{}); err != nil {
		t.Fatal(err)
	}
	sg.operatorRetry(ids, "card updated")
	sg.settle(ids, 60*time.Second, domain.StateActive)
	sg.assertOneOfEach(ids)
}

// The welcome email is sent but its answer lost, then the provider is down
// until the attempts run out and the customer pauses. The operator's retry
// must not send a second email: the provider may have done the work, so the
// retry keeps the idempotency key, and the provider answers with what it did.
func TestSagaRetryAfterLostAnswerDoesNotRepeatTheEffect(t *testing.T) {
	sg := newSaga(t, sim.Config{Seed: 6, Providers: map[string]sim.ProviderConfig{"email": {Script: []sim.Fault{sim.FaultLostReset}, Outage: sim.Outage{Down: true}}}})
	ids := sg.signUp(1)
	sg.settle(ids, 60*time.Second, domain.StatePaused)
	sg.assertPausedAt(ids, domain.StepWelcome)
	if err := sg.sim.SetProvider("email", sim.ProviderConfig{}); err != nil {
		t.Fatal(err)
	}
	// The operator retries once the email client's breaker, opened by the
	// outage, has had its OpenTimeout and lets a probe through.
	deadline := time.Now().Add(10 * time.Second)
	for sg.clients.Email.BreakerState() == providers.BreakerOpen {
		if time.Now().After(deadline) {
			t.Fatal("the email client's breaker stayed open for 10s after the outage")
		}
		time.Sleep(10 * time.Millisecond)
	}
	sg.operatorRetry(ids, "outage over")
	sg.settle(ids, 60*time.Second, domain.StateActive)
	sg.assertOneOfEach(ids)
}

func TestSagaKYCSilentPausesAfterDeadline(t *testing.T) {
	sg := newSaga(t, sim.Config{Seed: 5, KYC: sim.KYCConfig{Silent: 1}})
	ids := sg.signUp(5)
	sg.settle(ids, 60*time.Second, domain.StatePaused)
	sg.assertPausedAt(ids, domain.StepVerification)
}

// assertPausedAt fails unless each customer is paused at step.
func (sg *saga) assertPausedAt(ids []uuid.UUID, step domain.Step) {
	sg.t.Helper()
	for _, id := range ids {
		c, _ := sg.cmds.Load(context.Background(), id)
		if c.PausedStep() != step {
			sg.t.Fatalf("customer %s paused at %q, want %s", id, c.PausedStep(), step)
		}
	}
}

// operatorRetry has an operator retry each paused customer's step.
func (sg *saga) operatorRetry(ids []uuid.UUID, reason string) {
	sg.t.Helper()
	for _, id := range ids {
		if _, err := sg.cmds.Execute(context.Background(), id, nil, commands.Meta{Actor: "operator:ada"}, func(c *domain.Customer) error { return c.RetryStep("operator:ada", reason) }); err != nil {
			sg.t.Fatal(err)
		}
	}
}

// waitSupportNotified waits until support has been told of each rejected
// customer: the reaction to the rejection, which may come after settle.
func (sg *saga) waitSupportNotified(ids []uuid.UUID) {
	sg.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		for {
			c, _ := sg.cmds.Load(context.Background(), id)
			if c.Snapshot().SupportNotified {
				break
			}
			if time.Now().After(deadline) {
				sg.t.Fatalf("support not notified for %s", id)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func TestSagaRejectedNotifiesSupport(t *testing.T) {
	sg := newSaga(t, sim.Config{Seed: 6, KYC: sim.KYCConfig{Reject: 1}})
	ids := sg.signUp(5)
	sg.settle(ids, 60*time.Second, domain.StateRejected)
	sg.waitSupportNotified(ids)
	for _, id := range ids {
		if e := sg.sim.Ledger().Customers[id.String()]; e.EmailsByType["support_rejected"] != 1 || e.BillingAccounts != 0 {
			t.Fatalf("rejected customer effects %+v", e)
		}
	}
}

// TestSagaRejectedSupportEmailRefused: a mailer that refuses the support
// email for good (stored under its key, so every retry would be refused)
// turns into an operator alert instead of a retry loop that never ends.
func TestSagaRejectedSupportEmailRefused(t *testing.T) {
	sg := newSaga(t, sim.Config{Seed: 8, KYC: sim.KYCConfig{Reject: 1}, Providers: map[string]sim.ProviderConfig{"email": {PermanentRate: 1}}})
	ids := sg.signUp(3)
	sg.settle(ids, 60*time.Second, domain.StateRejected)
	sg.waitSupportNotified(ids)
	for _, id := range ids {
		envs, err := sg.store.ReadStream(context.Background(), commands.StreamID(id), 1)
		if err != nil {
			t.Fatal(err)
		}
		last, err := domain.DecodeEvent(envs[len(envs)-1].Type, envs[len(envs)-1].Data)
		if err != nil {
			t.Fatal(err)
		}
		n, ok := last.(domain.SupportNotified)
		if !ok || n.Channel != process.ChannelOperatorAlert || !strings.Contains(n.Reason, "refused") {
			t.Fatalf("last event %#v, want support notified by %s", last, process.ChannelOperatorAlert)
		}
	}
}

// TestSagaSurvivesWorkerCrashes kills the worker five times at random
// points of a 200-customer run with flaky providers.
func TestSagaSurvivesWorkerCrashes(t *testing.T) {
	flaky := sim.ProviderConfig{TransientRate: 0.1, TransientKinds: []sim.Fault{sim.Fault503, sim.FaultReset}, LostResponseRate: 0.05}
	cfg := sim.Config{Seed: 7, Providers: map[string]sim.ProviderConfig{"payments": flaky, "provisioning": flaky, "crm": flaky, "email": flaky}}
	sg := newSaga(t, cfg)
	ids := sg.signUp(200)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 5; i++ {
		time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
		sg.stop()
		sg.start()
	}
	by := sg.settle(ids, 180*time.Second, domain.StateActive)
	if len(by[domain.StateActive]) != 200 {
		t.Fatalf("active: %d", len(by[domain.StateActive]))
	}
	sg.assertOneOfEach(ids)
}
