package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

// faultPipeline is the onboarding pipeline for the NATS fault tests: the
// API, one relay and the workers each run as a role of its own (its own
// pool and NATS connection, as separate processes would), with the
// simulator over HTTP, approving every KYC check.
type faultPipeline struct {
	t     *testing.T
	base  string
	sim   *sim.Simulator
	store *postgres.Store
}

func startFaultPipeline(t *testing.T, dbURL, natsURL string, creds *messaging.Server, replicas, workers int) *faultPipeline {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	// Provider latency keeps customers in flight for a few seconds.
	slow := sim.ProviderConfig{Latency: sim.Latency{Min: sim.Duration(20 * time.Millisecond), Max: sim.Duration(120 * time.Millisecond)}}
	simCfg := sim.Config{Seed: 25, Providers: map[string]sim.ProviderConfig{}, KYC: sim.KYCConfig{
		CallbackURL: base + "/v1/webhooks/kyc", WebhookSecret: devWebhookSecret,
		Approve: 1, Delay: sim.Latency{Max: sim.Duration(200 * time.Millisecond)},
	}}
	for _, p := range providerNames {
		simCfg.Providers[p] = slow
	}
	s, err := sim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	simSrv := httptest.NewServer(http.StripPrefix("/sim", s))
	t.Cleanup(simSrv.Close)

	keys, _ := httpapi.ParseAPIKeys("client:fault:" + devClientKey + ",operator:fault-operator:" + devOperatorKey)
	var provs [5]providers.Config
	for i, name := range providerNames {
		provs[i] = providers.Config{BaseURL: simSrv.URL + "/sim/" + name, Policy: providers.Policy{
			BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond, MaxRetryAfter: 100 * time.Millisecond,
			Breaker: providers.BreakerPolicy{OpenTimeout: 200 * time.Millisecond}}}
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: faultLogLevel()}))
	// The relay seals the log, so that its check of the seals on NATS
	// runs through the faults too.
	_, sealKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	common := runConfig{addr: "127.0.0.1:0", databaseURL: dbURL, natsURL: natsURL, natsReplicas: replicas, apiKeys: keys,
		webhookSecret: devWebhookSecret, providers: provs, sealKey: sealKey,
		process: process.Config{BaseDelay: 20 * time.Millisecond, MaxDelay: 500 * time.Millisecond}}
	start := func(name string, listener net.Listener, roles ...string) {
		cfg := common
		cfg.roles, cfg.listener = roles, listener
		cfg.natsAuth = creds.Credentials(messaging.DevUser)
		if len(roles) == 1 && (roles[0] == "worker" || roles[0] == "relay") {
			cfg.natsAuth = creds.Credentials(roles[0]) // each role's own permissions
		}
		r := &role{t: t, name: name, cfg: cfg, log: log}
		r.start()
		t.Cleanup(r.stop)
	}
	start("api", ln, "command", "query")
	start("relay", nil, "relay")
	for i := range workers {
		start("worker-"+strconv.Itoa(i+1), nil, "worker")
	}
	waitReady(t, base, false)
	store, err := postgres.Open(context.Background(), dbURL, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return &faultPipeline{t: t, base: base, sim: s, store: store}
}

// signUp signs up n customers, every apart, eight at a time, and returns
// their ids.
func (p *faultPipeline) signUp(prefix string, n int, every time.Duration) []uuid.UUID {
	ids := make([]uuid.UUID, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			body := fmt.Sprintf(`{"email":"%s%d@example.com","company":"Fault %d","contact_name":"Nat S","country":"FI","plan":"starter"}`, prefix, i, i)
			for attempt := 0; ; attempt++ {
				status, out := call(p.t, "POST", p.base+"/v1/customers", devClientKey, body, "Idempotency-Key", fmt.Sprintf("%s-%d", prefix, i))
				if status == http.StatusAccepted {
					var r struct{ ID string }
					_ = json.Unmarshal(out, &r)
					ids[i] = uuid.MustParse(r.ID)
					return
				}
				if attempt > 50 {
					p.t.Errorf("signup %d: %d %s", i, status, out)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		time.Sleep(every)
	}
	wg.Wait()
	return ids
}

// waitTerminal waits until every customer of ids is in a terminal state
// and returns when that was first seen.
func (p *faultPipeline) waitTerminal(ids []uuid.UUID, timeout time.Duration) time.Time {
	p.t.Helper()
	waitSettled(p.t, p.store, ids, func(c *domain.Customer) bool { return c.State().Terminal() }, timeout)
	return time.Now()
}

// checkEffects asserts the simulator's ledger: no duplicate effect, and
// each active customer of ids has its billing account, tenant, CRM record
// and welcome email exactly once.
func (p *faultPipeline) checkEffects(ids []uuid.UUID) {
	p.t.Helper()
	ledger := p.sim.Ledger()
	p.t.Logf("duplicate effects: %d (prevented by idempotency keys: %d)", ledger.DuplicateEffects, ledger.DuplicatesPrevented)
	if ledger.DuplicateEffects != 0 {
		p.t.Errorf("duplicate effects: %d", ledger.DuplicateEffects)
	}
	for _, id := range ids {
		c := loadRetry(p.t, p.store, id)
		e := ledger.Customers[id.String()]
		if c.State() != domain.StateActive {
			p.t.Errorf("customer %s ended %s, want active", id, c.State())
		} else if e.BillingAccounts != 1 || e.Tenants != 1 || e.CRMRecords != 1 || e.EmailsByType["welcome"] != 1 {
			p.t.Errorf("active %s: effects %+v", id, e)
		}
	}
}

// faultLogLevel is the roles' log level: silent unless ONBOARD_FAULT_LOG
// is set (then warnings and up).
func faultLogLevel() slog.Level {
	if os.Getenv("ONBOARD_FAULT_LOG") != "" {
		return slog.LevelWarn
	}
	return slog.LevelError + 4
}
