package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/internal/pgserver"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/projections"
	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
	"github.com/onboard/onboard/schema"
)

// supervised is a role restarted whenever it stops on its own, as a
// service manager (compose's restart: unless-stopped) restarts a process
// that exits while its database is down.
type supervised struct {
	t      *testing.T
	name   string
	cfg    runConfig
	log    *slog.Logger
	exits  atomic.Int64
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *supervised) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		for ctx.Err() == nil {
			err := run(ctx, r.cfg, r.log)
			if ctx.Err() != nil {
				return
			}
			r.exits.Add(1)
			r.t.Logf("%s stopped on its own (%v); restarting it", r.name, err)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}(r.done)
}

func (r *supervised) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(45 * time.Second):
		r.t.Errorf("%s did not stop within 45s", r.name)
	}
}

// crashRig is the pipeline of the crash test on a Postgres server of its
// own.
type crashRig struct {
	t      *testing.T
	pg     *pgserver.Server
	dbURL  string
	base   string
	sim    *sim.Simulator
	simURL string
	store  *postgres.Store
	roles  map[string]*supervised
	// resent counts signups sent again with their key after no answer.
	resent atomic.Int64
}

// newCrashRig starts a private Postgres (initdb and pg_ctl from the
// installed binaries, on a free port, in a temporary directory), an
// embedded NATS, the simulator over HTTP, and each role of the pipeline
// under a supervisor.
func newCrashRig(t *testing.T) *crashRig {
	t.Helper()
	bin, err := pgserver.FindInstalled(context.Background(), 0)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg, err := pgserver.Start(ctx, pgserver.Config{DataDir: reachableTempDir(t), Binaries: bin, Ephemeral: true,
		Settings: map[string]string{"max_connections": "200"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	r := &crashRig{t: t, pg: pg, dbURL: pg.URL("onboard"), roles: map[string]*supervised{}}
	if err := schema.EnsureDatabase(ctx, r.dbURL); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, r.dbURL); err != nil {
		t.Fatal(err)
	}
	ns, err := messaging.StartEmbedded(messaging.EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	r.startSim(t)
	r.startRoles(t, ns)
	r.store, err = postgres.Open(ctx, r.dbURL, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.store.Close)
	waitReady(t, r.base, false)
	return r
}

// startSim starts the simulator with slow enough providers that a crash
// finds steps in flight, and a few transient faults; KYC approves all.
func (r *crashRig) startSim(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.base = "http://" + ln.Addr().String()
	ln.Close() // the api role listens there, again after each restart
	p := sim.ProviderConfig{Latency: sim.Latency{Min: sim.Duration(20 * time.Millisecond), Max: sim.Duration(120 * time.Millisecond)},
		TransientRate: 0.05, TransientKinds: []sim.Fault{sim.Fault503}}
	cfg := sim.Config{Seed: 28, Providers: map[string]sim.ProviderConfig{}, KYC: sim.KYCConfig{
		CallbackURL: r.base + "/v1/webhooks/kyc", WebhookSecret: devWebhookSecret, Approve: 1,
		Delay: sim.Latency{Min: sim.Duration(50 * time.Millisecond), Max: sim.Duration(300 * time.Millisecond)}}}
	for _, name := range providerNames {
		cfg.Providers[name] = p
	}
	if r.sim, err = sim.New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.sim.Close)
	srv := httptest.NewServer(http.StripPrefix("/sim", r.sim))
	t.Cleanup(srv.Close)
	r.simURL = srv.URL
}

// startRoles starts the api (command and query), worker, relay and
// projector roles, each under a supervisor, as the chaos soak runs them.
func (r *crashRig) startRoles(t *testing.T, ns *messaging.Server) {
	keys, _ := httpapi.ParseAPIKeys("client:crash:" + devClientKey + ",operator:crash-operator:" + devOperatorKey)
	var provs [5]providers.Config
	for i, name := range providerNames {
		provs[i] = providers.Config{BaseURL: r.simURL + "/sim/" + name, Policy: providers.Policy{
			BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond, MaxRetryAfter: 100 * time.Millisecond,
			Breaker: providers.BreakerPolicy{OpenTimeout: 200 * time.Millisecond}}}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	common := runConfig{addr: "127.0.0.1:0", databaseURL: r.dbURL, natsURL: ns.ClientURL(), apiKeys: keys, webhookSecret: devWebhookSecret,
		providers: provs, process: process.Config{BaseDelay: 20 * time.Millisecond, MaxDelay: 500 * time.Millisecond,
			VerificationDeadline: 5 * time.Second, VerificationPolls: 3}}
	for _, name := range []string{"api", "worker", "relay", "projector"} {
		cfg := common
		cfg.roles = []string{name}
		cfg.natsAuth = ns.Credentials(messaging.DevUser)
		if name == "worker" || name == "relay" {
			cfg.natsAuth = ns.Credentials(name) // each role's own permissions
		}
		if name == "api" {
			cfg.roles, cfg.addr = []string{"command", "query"}, strings.TrimPrefix(r.base, "http://")
		}
		role := &supervised{t: t, name: name, cfg: cfg, log: log}
		role.start()
		t.Cleanup(role.stop)
		r.roles[name] = role
	}
}

// crash stops Postgres as a crash would (no checkpoint, every session cut)
// and starts it again on the same data and port after a moment down.
func (r *crashRig) crash(when string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := r.pg.Crash(ctx); err != nil {
		r.t.Errorf("crash %s: %v", when, err)
		return
	}
	time.Sleep(time.Second)
	port := r.pg.Port()
	if err := r.pg.Restart(ctx); err != nil {
		r.t.Errorf("crash %s: %v", when, err)
		return
	}
	if r.pg.Port() != port {
		r.t.Errorf("Postgres came back on port %d, not %d", r.pg.Port(), port)
	}
	r.t.Logf("crash %s: pg_ctl stop -m immediate, restarted", when)
}

// signUp signs customers first..first+n-1 up, 4 at a time, each with its
// own Idempotency-Key; one that gets no answer (Postgres down, the api
// role restarting) is sent again with the same key and body until it is
// accepted. answered is called after each acceptance.
func (r *crashRig) signUp(first, n int, answered func()) []uuid.UUID {
	ids := make([]uuid.UUID, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			body := fmt.Sprintf(`{"email":"crash%d@example.com","company":"Crash %d","contact_name":"Ada","country":"DE","plan":"starter"}`, first+i, first+i)
			deadline := time.Now().Add(3 * time.Minute)
			for attempt := 0; ; attempt++ {
				if attempt > 0 {
					r.resent.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
				status, out := post(client, r.base+"/v1/customers", body, fmt.Sprintf("crash-%d", first+i))
				if status == http.StatusAccepted {
					var resp struct{ ID string }
					_ = json.Unmarshal(out, &resp)
					ids[i] = uuid.MustParse(resp.ID)
					answered()
					return
				}
				if time.Now().After(deadline) {
					r.t.Errorf("signup %d: no 202 within 3 minutes; last %d %s", first+i, status, out)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	return ids
}

// post sends a signup; status 0 means no answer.
func post(client *http.Client, url, body, key string) (int, []byte) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+devClientKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// inFlightSteps counts customers whose last event requests a provider
// step: their provider call is under way.
func (r *crashRig) inFlightSteps() int {
	var n int
	_ = r.store.Pool().QueryRow(context.Background(), `
SELECT count(*) FROM (SELECT DISTINCT ON (stream_id) type FROM events WHERE stream_type = 'customer'
	ORDER BY stream_id, version DESC) last WHERE type = $1`, domain.TypeStepRequested).Scan(&n)
	return n
}

// TestPostgresCrash crashes the pipeline's Postgres three times
// (pg_ctl stop -m immediate): during signups, during provider steps and
// during the projectors' catch-up. After each it restarts the server; the
// roles reconnect (or their supervisor restarts them) and clients re-send
// unanswered signups with the same Idempotency-Key. Then it checks the
// chaos soak's invariants: no duplicate effect, no lost customer or event,
// none stuck, read models equal to a replay, and an audit log that
// verifies. crashBatch sets its size (-tags soak: larger).
func TestPostgresCrash(t *testing.T) {
	r := newCrashRig(t)
	n := crashBatch

	// 1. During signups: once a third of the first batch is answered.
	var answered atomic.Int64
	crashed := make(chan struct{})
	go func() {
		defer close(crashed)
		for answered.Load() < int64(n/3) {
			time.Sleep(10 * time.Millisecond)
		}
		r.crash(fmt.Sprintf("during signups (%d of %d answered)", answered.Load(), n))
	}()
	ids := r.signUp(0, n, func() { answered.Add(1) })
	<-crashed

	// 2. During provider steps: a second batch, and the crash once calls
	// to the providers are under way.
	ids = append(ids, r.signUp(n, n, func() {})...)
	waitFor(t, 2*time.Minute, "provider steps under way", func() (bool, string) {
		k := r.inFlightSteps()
		return k >= max(1, n/10), fmt.Sprintf("%d in flight", k)
	})
	r.crash(fmt.Sprintf("during provider steps (%d customers' calls in flight)", r.inFlightSteps()))

	// 3. During the projectors' catch-up: a third batch while the projector
	// is stopped, then the crash just after it starts catching up.
	r.roles["projector"].stop()
	ids = append(ids, r.signUp(2*n, n, func() {})...)
	waitFor(t, 2*time.Minute, "the third batch through its first steps", func() (bool, string) {
		k := r.inFlightSteps()
		return k < n/2, fmt.Sprintf("%d in flight", k)
	})
	r.roles["projector"].start()
	time.Sleep(50 * time.Millisecond)
	r.crash(fmt.Sprintf("during projection catch-up (customers projection %s)", r.projectionLag()))

	r.settle(t, ids)
	checkInvariants(t, r.store, r.sim, ids, crashSettle)
	for name, role := range r.roles {
		t.Logf("role %s stopped on its own %d times", name, role.exits.Load())
	}
	t.Logf("customers: %d; signups re-sent with their key: %d", len(ids), r.resent.Load())
}

// projectionLag says how far the customers projection is behind the head.
func (r *crashRig) projectionLag() string {
	ctx := context.Background()
	proj, err := projections.New(projections.Config{Pool: r.store.Pool(), Source: r.store})
	if err != nil {
		return err.Error()
	}
	cp, err := proj.Checkpoint(ctx, projections.Customers)
	head, err2 := r.store.Head(ctx)
	if err != nil || err2 != nil {
		return fmt.Sprint(err, err2)
	}
	return fmt.Sprintf("at %v, head %v", cp, head)
}

// settle waits until every customer is active, an operator retrying any
// that paused (a step whose attempts ran out while Postgres was down).
func (r *crashRig) settle(t *testing.T, ids []uuid.UUID) {
	settled := func(c *domain.Customer) bool {
		return c.State() == domain.StateActive || c.State() == domain.StatePaused
	}
	waitSettled(t, r.store, ids, settled, crashSettle)
	retried := 0
	for _, id := range ids {
		if loadRetry(t, r.store, id).State() == domain.StatePaused {
			retried++
			if status, out := call(t, "POST", r.base+"/v1/customers/"+id.String()+"/retry", devOperatorKey, `{"reason":"after the crash"}`); status != http.StatusAccepted {
				t.Errorf("retry %s: %d %s", id, status, out)
			}
		}
	}
	final := waitSettled(t, r.store, ids, func(c *domain.Customer) bool { return c.State() == domain.StateActive }, crashSettle)
	t.Logf("final states: %v (operator retries: %d)", final, retried)
}
