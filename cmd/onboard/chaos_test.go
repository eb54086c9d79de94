package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

// role is one restartable role of the pipeline, as if it were a process
// of its own: it shares only Postgres, NATS and the simulator.
type role struct {
	t      *testing.T
	name   string
	cfg    runConfig
	log    *slog.Logger
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

func (r *role) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func(done chan error) { done <- run(ctx, r.cfg, r.log) }(r.done)
}

func (r *role) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Logf("%s stopped with %v", r.name, err)
		}
	case <-time.After(45 * time.Second):
		r.t.Errorf("%s did not stop within 45s", r.name)
	}
}

func (r *role) restart() { r.stop(); r.start() }

// child is a role run as a real `onboard serve` process, which the chaos
// kills with SIGKILL: unlike a cancelled role it gets no chance to roll
// back, release its advisory lock or drain NATS; the kernel just closes
// its sockets mid-batch.
type child struct {
	t    *testing.T
	name string
	bin  string
	args []string
	env  []string
	mu   sync.Mutex
	proc *childProc
	// exits counts the processes that ended without being killed; errLines
	// the ERROR lines they logged (only the first few are shown).
	exits, errLines atomic.Int64
}

type childProc struct {
	cmd    *exec.Cmd
	killed atomic.Bool
	exited chan struct{}
}

func (c *child) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd := exec.Command(c.bin, c.args...)
	cmd.Env = c.env
	cmd.Stderr = &childLog{c: c}
	// A grandchild never holds the pipe, but don't let a stuck copy hang
	// the test if one ever does.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		c.t.Errorf("start %s: %v", c.name, err)
		return
	}
	p := &childProc{cmd: cmd, exited: make(chan struct{})}
	c.proc = p
	go func() {
		defer close(p.exited)
		err := cmd.Wait()
		if !p.killed.Load() {
			c.exits.Add(1)
			c.t.Logf("%s exited on its own: %v", c.name, err)
		}
	}()
}

// kill sends SIGKILL and waits until the process is gone (the Wait above
// has reaped it and copied the rest of its stderr).
func (c *child) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.proc
	if p == nil {
		return
	}
	c.proc = nil
	p.killed.Store(true)
	_ = p.cmd.Process.Kill() // fails only if it has exited already
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		c.t.Errorf("%s (pid %d) still running 30s after SIGKILL", c.name, p.cmd.Process.Pid)
	}
}

func (c *child) restart() { c.kill(); c.start() }

// childLog passes a child's stderr to the test output, keeping it small:
// the JSON log lines below ERROR are dropped and only the first few ERROR
// lines are shown (the rest counted), while anything else (the exit
// message, a panic, a race report) goes through whole.
type childLog struct {
	c   *child
	buf []byte
}

const childErrLinesShown = 5

func (w *childLog) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := w.buf[:i+1]
		w.buf = w.buf[i+1:]
		if bytes.HasPrefix(line, []byte("{")) {
			if !bytes.Contains(line, []byte(`"level":"ERROR"`)) || w.c.errLines.Add(1) > childErrLinesShown {
				continue
			}
		}
		_, _ = io.WriteString(w.c.t.Output(), w.c.name+": "+string(line))
	}
}

// buildOnboard builds the onboard binary into a temporary directory,
// without -race even under `go test -race`: it is quicker to build, and
// the child's job is to die, not to be checked.
func buildOnboard(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "onboard")
	// go test puts its own go first on PATH.
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestChaosSoak drives onboardings through the whole pipeline (Postgres,
// NATS JetStream, the simulator over HTTP, every role in its own restartable
// runner) while injecting provider faults, an outage, KYC silences, role
// restarts, a child `onboard serve` process killed with SIGKILL, a NATS
// restart and dropped Postgres connections; then checks the promises: no
// duplicate effect, no lost event, nobody stuck, read models equal to a
// replay, an intact audit log, and bounded provider calls.
// ONBOARD_SOAK_N sets the number of customers (default soakCustomers: 300,
// or 10,000 with -tags soak).
func TestChaosSoak(t *testing.T) {
	n := soakCustomers
	if v, err := strconv.Atoi(os.Getenv("ONBOARD_SOAK_N")); err == nil && v > 0 {
		n = v
	}
	bin := buildOnboard(t)
	ctx := context.Background()
	dbURL := pgtest.NewMigratedDatabase(t)
	ns, err := messaging.StartEmbedded(messaging.EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	faulty := sim.ProviderConfig{TransientRate: 0.2, TransientKinds: []sim.Fault{sim.Fault503, sim.Fault429, sim.FaultReset},
		RetryAfter: sim.Duration(20 * time.Millisecond), LostResponseRate: 0.02, PermanentRate: 0.01}
	simCfg := sim.Config{Seed: 1234, Providers: map[string]sim.ProviderConfig{}, KYC: sim.KYCConfig{
		CallbackURL: base + "/v1/webhooks/kyc", WebhookSecret: devWebhookSecret,
		Approve: 0.9, Reject: 0.05, Silent: 0.05, Delay: sim.Latency{Max: sim.Duration(50 * time.Millisecond)}, DuplicateRate: 0.1,
	}}
	for _, p := range providerNames {
		simCfg.Providers[p] = faulty
	}
	s, err := sim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	simSrv := httptest.NewServer(http.StripPrefix("/sim", s))
	t.Cleanup(simSrv.Close)

	keys, _ := httpapi.ParseAPIKeys("client:soak:" + devClientKey + ",operator:soak-operator:" + devOperatorKey)
	var provs [5]providers.Config
	for i, name := range providerNames {
		provs[i] = providers.Config{BaseURL: simSrv.URL + "/sim/" + name, Policy: providers.Policy{
			BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond, MaxRetryAfter: 100 * time.Millisecond,
			Breaker: providers.BreakerPolicy{OpenTimeout: 200 * time.Millisecond}}}
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError + 4}))
	common := runConfig{addr: "127.0.0.1:0", databaseURL: dbURL, natsURL: ns.ClientURL(), apiKeys: keys, webhookSecret: devWebhookSecret,
		providers: provs, process: process.Config{BaseDelay: 20 * time.Millisecond, MaxDelay: 500 * time.Millisecond,
			VerificationDeadline: 2 * time.Second, VerificationPolls: 2}}
	newRole := func(name string, roles ...string) *role {
		cfg := common
		cfg.roles = roles
		cfg.natsAuth = ns.Credentials(messaging.DevUser)
		if len(roles) == 1 && (roles[0] == "worker" || roles[0] == "relay") {
			cfg.natsAuth = ns.Credentials(roles[0]) // each role's own permissions
		}
		r := &role{t: t, name: name, cfg: cfg, log: log}
		r.start()
		t.Cleanup(r.stop)
		return r
	}
	apiCfg := common
	apiCfg.roles, apiCfg.listener = []string{"command", "query"}, ln
	api := &role{t: t, name: "api", cfg: apiCfg, log: log}
	api.start()
	t.Cleanup(api.stop)
	worker, relay, projector := newRole("worker", "worker"), newRole("relay", "relay"), newRole("projector", "projector")
	// Roles in a process of their own, for SIGKILL (soakChildRoles). A
	// worker there shares the process managers' durable consumers with the
	// one above, so a kill lands in the middle of provider calls; its
	// tuning is the in-process worker's, through the environment.
	proc := &child{t: t, name: "child " + soakChildRoles, bin: bin,
		args: []string{"serve", "--roles", soakChildRoles, "--addr", "127.0.0.1:0"},
		env: append(os.Environ(), "DATABASE_URL="+dbURL, "NATS_URL="+ns.ClientURL(), "NATS_USER="+messaging.DevUser,
			"NATS_PASSWORD="+ns.Credentials(messaging.DevUser).Password, "SIM_URL="+simSrv.URL+"/sim",
			"ONBOARD_RETRY_BASE_DELAY=20ms", "ONBOARD_RETRY_MAX_DELAY=500ms", "ONBOARD_KYC_DEADLINE=2s", "ONBOARD_KYC_POLLS=2",
			// As the in-process worker's: a breaker left open for the default
			// 30 s after the outages would fail the operators' retries at once
			// and pause the customers again.
			"ONBOARD_BREAKER_OPEN_TIMEOUT=200ms",
			// Its clients retry within a call as the in-process ones do;
			// with serve's defaults (up to 2s between attempts) the provider
			// calls came close to 1.3x the logical ones.
			"ONBOARD_PROVIDER_RETRY_BASE_DELAY=5ms", "ONBOARD_PROVIDER_RETRY_MAX_DELAY=50ms", "ONBOARD_PROVIDER_MAX_RETRY_AFTER=100ms",
			"OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=")}
	proc.start()
	t.Cleanup(proc.kill)
	waitReady(t, base, false)

	// Faults while customers sign up.
	chaosCtx, stopChaos := context.WithCancel(ctx)
	var chaosWG sync.WaitGroup
	var actions sync.Map
	chaosWG.Add(1)
	go func() {
		defer chaosWG.Done()
		rng := rand.New(rand.NewPCG(42, 42))
		kinds := []string{"worker", "relay", "projector", "sigkill child", "nats", "postgres", "outage"}
		for i := 0; ; i++ {
			select {
			case <-chaosCtx.Done():
				return
			case <-time.After(time.Duration(200+rng.IntN(400)) * time.Millisecond):
			}
			kind := kinds[i%len(kinds)]
			if kind == "sigkill child" && i/len(kinds)%3 != 0 {
				// Every third round: each kill re-sends the calls the
				// child's worker had in flight (with their keys, so no
				// effect twice), and with 20% transient faults retried
				// the provider calls are already about 1.25× the logical
				// ones, of the 1.3× allowed.
				continue
			}
			switch kind {
			case "worker":
				worker.restart()
			case "relay":
				relay.restart()
			case "projector":
				projector.restart()
			case "sigkill child":
				proc.restart()
			case "nats":
				if err := ns.Restart(); err != nil {
					t.Errorf("restart NATS: %v", err)
				}
			case "postgres":
				terminateBackends(t, dbURL)
			case "outage":
				p := faulty
				p.Outage = sim.Outage{Until: time.Now().Add(time.Second)}
				_ = s.SetProvider(providerNames[1+rng.IntN(4)], p)
			}
			v, _ := actions.LoadOrStore(kind, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
	}()

	ids := make([]string, n)
	var idsMu sync.Mutex
	var signups sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i++ {
		signups.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer signups.Done()
			defer func() { <-sem }()
			body := fmt.Sprintf(`{"email":"soak%d@example.com","company":"Soak %d","contact_name":"Chaos Monkey","country":"FI","plan":"starter"}`, i, i)
			for attempt := 0; ; attempt++ {
				status, out := call(t, "POST", base+"/v1/customers", devClientKey, body, "Idempotency-Key", fmt.Sprintf("soak-%d", i))
				if status == http.StatusAccepted {
					var r struct{ ID string }
					_ = json.Unmarshal(out, &r)
					idsMu.Lock()
					ids[i] = r.ID
					idsMu.Unlock()
					return
				}
				if attempt > 50 {
					t.Errorf("signup %d: %d %s", i, status, out)
					return
				}
				time.Sleep(100 * time.Millisecond) // a dropped connection: the client retries with its key
			}
		}(i)
		time.Sleep(25 * time.Millisecond) // spread the signups over the faults
		if i%20 == 0 && i > 0 {
			// An operator cancels now and then, mid-journey.
			idsMu.Lock()
			victim := ids[rand.IntN(i)]
			idsMu.Unlock()
			if victim != "" {
				call(t, "POST", base+"/v1/customers/"+victim+"/cancel", devOperatorKey, `{"reason":"chaos cancel"}`)
			}
		}
	}
	signups.Wait()
	store, err := postgres.Open(ctx, dbURL, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	uids := make([]uuid.UUID, 0, n)
	for _, id := range ids {
		if id != "" {
			uids = append(uids, uuid.MustParse(id))
		}
	}
	// Faults go on until most customers have been through every step.
	faultsUntil := time.Now().Add(60 * time.Second)
	for time.Now().Before(faultsUntil) {
		done := 0
		for _, id := range uids {
			if c, err := commands.LoadCustomer(ctx, store, id); err == nil && c.State().Terminal() || err == nil && c.State() == domain.StatePaused {
				done++
			}
		}
		if done >= len(uids)*9/10 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	stopChaos()
	chaosWG.Wait()
	actions.Range(func(k, v any) bool {
		t.Logf("chaos: %s ×%d", k, v.(*atomic.Int64).Load())
		return true
	})
	t.Logf("chaos: child exits on its own: %d; its ERROR log lines: %d", proc.exits.Load(), proc.errLines.Load())

	// Faults stop; the outages end. Operators retry whoever is paused.
	clean := sim.ProviderConfig{}
	for _, p := range providerNames {
		_ = s.SetProvider(p, clean)
	}
	cfgNow := s.Config()
	cfgNow.KYC.Silent, cfgNow.KYC.DuplicateRate = 0, 0
	if err := s.SetConfig(cfgNow); err != nil {
		t.Fatal(err)
	}
	settled := func(c *domain.Customer) bool {
		switch c.State() {
		case domain.StateActive, domain.StateCancelled:
			return true
		case domain.StateRejected:
			return c.Snapshot().SupportNotified
		case domain.StatePaused:
			return true
		}
		return false
	}
	waitSettled(t, store, uids, settled, soakSettle)
	retried := 0
	for _, id := range uids {
		c := loadRetry(t, store, id)
		if c.State() == domain.StatePaused {
			retried++
			// The operator's key has a rate limit like any other: a
			// thousand retries at once get 429 and try again, as a
			// client should.
			status, out := call(t, "POST", base+"/v1/customers/"+id.String()+"/retry", devOperatorKey, `{"reason":"outage over"}`)
			for tries := 0; status == http.StatusTooManyRequests && tries < 120; tries++ {
				time.Sleep(time.Second)
				status, out = call(t, "POST", base+"/v1/customers/"+id.String()+"/retry", devOperatorKey, `{"reason":"outage over"}`)
			}
			if status != http.StatusAccepted {
				t.Errorf("retry %s: %d %s", id, status, out)
			}
		}
	}
	final := waitSettled(t, store, uids, func(c *domain.Customer) bool { return c.State() != domain.StatePaused && settled(c) }, soakSettle)
	t.Logf("customers: %d; operator retries after the faults: %d; final states: %v", len(uids), retried, final)

	checkInvariants(t, store, s, uids, soakSettle)

	// 6. Provider calls stay close to the logical calls. Both count the
	// calls that may have an effect: a logical call is one the event log
	// records (a step's attempt, a compensation, a support notification);
	// the reads (polls of a silent KYC check) are neither.
	var calls, logical int
	for _, p := range providerNames {
		st := s.Stats(p)
		calls += st.Mutating
		t.Logf("provider %s: %d requests (%d mutating), %d replays, faults %v", p, st.Requests, st.Mutating, st.Replays, st.Faults)
	}
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM events WHERE type IN ($1, $2, $3, $4)`,
		domain.TypeStepRequested, domain.TypeBillingClosed, domain.TypeTenantDeprovisioned, domain.TypeSupportNotified).Scan(&logical); err != nil {
		t.Fatal(err)
	}
	ratio := float64(calls) / float64(max(logical, 1))
	t.Logf("invariant provider calls / logical calls: %d / %d = %.2f", calls, logical, ratio)
	if ratio > 1.3 {
		t.Errorf("provider calls %.2f× the logical calls, want ≤ 1.3", ratio)
	}
}

// waitSettled polls every customer until ok holds for all, and returns the
// count per state.
func waitSettled(t *testing.T, store *postgres.Store, ids []uuid.UUID, ok func(*domain.Customer) bool, timeout time.Duration) map[domain.State]int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		by := map[domain.State]int{}
		all := true
		for _, id := range ids {
			c, err := commands.LoadCustomer(context.Background(), store, id)
			if err != nil {
				// The chaos terminated this pool's connections too: the
				// next poll gets a fresh one.
				all = false
				by["(unreadable)"]++
				continue
			}
			by[c.State()]++
			all = all && ok(c)
		}
		if all {
			return by
		}
		if time.Now().After(deadline) {
			var dead int
			_ = store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM messaging_dead_letters`).Scan(&dead)
			for _, id := range ids {
				if c, _ := commands.LoadCustomer(context.Background(), store, id); c != nil && !ok(c) {
					envs, _ := store.ReadStream(context.Background(), commands.StreamID(id), 1)
					last := envs[len(envs)-1]
					t.Logf("not settled: %s in %s, last event v%d %s", id, c.State(), last.Version, last.Type)
					rows, err := store.Pool().Query(context.Background(), `SELECT kind, step, attempt, due_at FROM onboard_timers WHERE customer_id = $1`, id)
					if err == nil {
						for rows.Next() {
							var kind, step string
							var attempt int
							var due time.Time
							if rows.Scan(&kind, &step, &attempt, &due) == nil {
								t.Logf("  its timer: %s %s attempt %d due %s", kind, step, attempt, due.Format(time.RFC3339Nano))
							}
						}
						rows.Close()
					}
					break
				}
			}
			t.Fatalf("customers did not settle in %v: %v (dead letters: %d)", timeout, by, dead)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, timeout, detail)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// terminateBackends drops every other connection to the test database, as
// a Postgres restart or a network blip would.
func terminateBackends(t *testing.T, dbURL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := openPool(ctx, dbURL, 1)
	if err != nil {
		t.Logf("terminate backends: %v", err)
		return
	}
	defer pool.Close()
	_, err = pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		t.Logf("terminate backends: %v", err)
	}
}

// loadRetry loads a customer, riding out connections the chaos terminated.
// historyOf lists a customer's events, one a line, for a failure to
// explain itself.
func historyOf(t *testing.T, store *postgres.Store, id uuid.UUID) string {
	t.Helper()
	events, err := store.ReadStream(context.Background(), commands.StreamID(id), 1)
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "\tv%d %s %s %s by %s\n", e.Version, e.RecordedAt.Format("15:04:05.000000"), e.Type, e.Data, e.Metadata.Actor)
	}
	return b.String()
}

func loadRetry(t *testing.T, store *postgres.Store, id uuid.UUID) *domain.Customer {
	t.Helper()
	var err error
	for range 20 {
		var c *domain.Customer
		if c, err = commands.LoadCustomer(context.Background(), store, id); err == nil {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("load %s: %v", id, err)
	return nil
}
