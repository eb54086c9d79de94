package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/internal/bench"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
	"github.com/onboard/onboard/schema"
)

// benchEndToEnd runs the whole pipeline of `onboard dev` in this process
// (command API, relay, embedded JetStream, process managers, projectors,
// the simulator over HTTP with zero provider latency and a 1ms KYC
// verdict) on a fresh database, and drives Sizes.Customers onboardings per
// concurrency level through the API: each of c clients signs a customer up
// and waits for its onboarding to complete before the next. The latency is
// from sending the signup to seeing the customer's completion event
// published by the relay. Then it measures the live heap, at once and
// after Sizes.Idle.
func benchEndToEnd(ctx context.Context, env *bench.Env) ([]bench.Result, error) {
	srv, cleanup, err := startBenchNATS()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	rig, err := startE2E(ctx, env, embeddedNATS(srv))
	if err != nil {
		return nil, err
	}
	defer rig.close()
	// The first onboardings create the consumers' state and warm the
	// pools (each new connection plans each statement afresh a few times
	// before it settles on a generic plan); they are not measured: the
	// figures are the steady state's.
	top := slices.Max(env.Sizes().E2EConcurrency)
	warmup := min(2*top, env.Sizes().Customers)
	if _, _, err := rig.drive(ctx, min(warmup, top), warmup); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	var results []bench.Result
	for _, c := range env.Sizes().E2EConcurrency {
		level, err := measureEndToEnd(ctx, env, rig, c)
		if err != nil {
			return nil, err
		}
		results = append(results, level...)
	}
	onboarded := int64(warmup + len(env.Sizes().E2EConcurrency)*env.Sizes().Customers)
	heap, err := heapRows(ctx, env, onboarded)
	if err != nil {
		return nil, err
	}
	return append(results, heap...), nil
}

// e2ePrefix begins the names of the end-to-end figure's rows: "e2e", or
// "e2e w=N" with N worker roles.
func e2ePrefix(env *bench.Env) string {
	if n := env.Sizes().Workers; n > 0 {
		return fmt.Sprintf("e2e w=%d", n)
	}
	return "e2e"
}

// e2eRig is the pipeline the end-to-end figure drives, in this process on
// a fresh database, with the client and the completion watcher that drive
// and time it.
type e2eRig struct {
	base    string   // of the API and the simulator
	workers []string // the bases of the worker roles' health and metrics, with Sizes.Workers
	client  *http.Client
	w       *completionWatcher
	stops   []func() // run in reverse order by close
}

// startE2E starts the roles of onboard dev (see startRoles) on NATS at
// natsURL and a fresh database, with the simulator mounted under /sim/ of
// the API's listener.
func startE2E(ctx context.Context, env *bench.Env, n e2eNATS) (rig *e2eRig, err error) {
	dbURL, err := env.NewDatabase(ctx, "e2e")
	if err != nil {
		return nil, err
	}
	if err := schema.Migrate(ctx, dbURL); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rig = &e2eRig{base: "http://" + ln.Addr().String(), client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: slices.Max(env.Sizes().E2EConcurrency), IdleConnTimeout: time.Minute}}}
	defer func() {
		if err != nil {
			rig.close()
		}
	}()
	s, err := sim.New(sim.Config{Seed: 1, KYC: sim.KYCConfig{CallbackURL: rig.base + "/v1/webhooks/kyc", WebhookSecret: devWebhookSecret,
		Delay: sim.Latency{Max: sim.Duration(time.Millisecond)}}})
	if err != nil {
		ln.Close()
		return nil, err
	}
	rig.stops = append(rig.stops, s.Close)
	cfg, err := e2eRunConfig(env, ln, dbURL, n.url, s)
	if err != nil {
		ln.Close()
		return nil, err
	}
	cfg.natsAuth = n.auth
	if err := rig.startRoles(ctx, env, cfg); err != nil {
		return nil, err
	}
	w, err := watchCompletions(ctx, dbURL, n.admin)
	if err != nil {
		return nil, err
	}
	rig.stops = append(rig.stops, w.close)
	rig.w = w
	return rig, nil
}

// e2eNATS is the NATS server the bench's pipeline uses: its URL, the
// credentials onboard dev's roles connect with, and an admin connection
// for the completion watcher (no role may subscribe to event subjects).
type e2eNATS struct {
	url   string
	auth  messaging.ClientAuth
	admin func(name string) (*nats.Conn, error)
}

// embeddedNATS is srv as the bench's NATS server.
func embeddedNATS(srv *messaging.Server) e2eNATS {
	return e2eNATS{url: srv.ClientURL(), auth: srv.Credentials(messaging.DevUser),
		admin: func(name string) (*nats.Conn, error) { return srv.Connect(name) }}
}

// startRoles runs the roles of cfg in one runner, or, with Sizes.Workers,
// all but the worker there and each of that many worker roles in a runner
// of its own, with its own pool and NATS connection (run opens them, as
// in a worker process) and a listener for its health checks.
func (r *e2eRig) startRoles(ctx context.Context, env *bench.Env, cfg runConfig) error {
	workers := env.Sizes().Workers
	if workers > 0 {
		cfg.roles = slices.DeleteFunc(slices.Clone(cfg.roles), func(role string) bool { return role == "worker" })
	}
	stop, err := startPipeline(ctx, env, cfg, r.base)
	if err != nil {
		return err
	}
	r.stops = append(r.stops, stop)
	for i := range workers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		wc := cfg
		wc.roles, wc.addr, wc.listener, wc.public = []string{"worker"}, ln.Addr().String(), ln, nil
		base := "http://" + ln.Addr().String()
		stop, err := startPipeline(ctx, env, wc, base)
		if err != nil {
			return fmt.Errorf("worker %d: %w", i+1, err)
		}
		r.stops, r.workers = append(r.stops, stop), append(r.workers, base)
	}
	return nil
}

// drive runs n onboardings from c clients (see driveOnboardings).
func (r *e2eRig) drive(ctx context.Context, c, n int) ([]time.Duration, time.Duration, error) {
	return driveOnboardings(ctx, r.client, r.base, r.w, c, n)
}

// close stops what startE2E started, the last first.
func (r *e2eRig) close() {
	for _, stop := range slices.Backward(r.stops) {
		stop()
	}
	r.client.CloseIdleConnections()
}

// heapRows measures the live heap (bench.LiveHeap) of this process at the
// end of the run and again after Sizes.Idle of the pipeline idling: the
// pipeline's with the embedded NATS server, the simulator and the bench's
// own client and watcher. onboarded is how many onboardings ran.
func heapRows(ctx context.Context, env *bench.Env, onboarded int64) ([]bench.Result, error) {
	measure := func(when string) bench.Result {
		held := bench.HeapInUse()
		live := bench.LiveHeap()
		env.Progressf("e2e: heap %s: %.1f MB allocated, %.1f MB of it live", when, bench.MB(held), bench.MB(live))
		return bench.NewValue(e2ePrefix(env)+" live heap "+when, "MB", bench.MB(live), onboarded, bench.Goal{})
	}
	rows := []bench.Result{measure("after the run")}
	idle := env.Sizes().Idle
	if idle <= 0 {
		return rows, nil
	}
	env.Progressf("e2e: idle for %s", idle)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(idle):
	}
	return append(rows, measure(fmt.Sprintf("after %s idle", idle))), nil
}

// e2eRunConfig is the configuration of `onboard dev` for the bench: every
// role on ln, with NATS at natsURL and the simulator s mounted under /sim/.
func e2eRunConfig(env *bench.Env, ln net.Listener, dbURL, natsURL string, s http.Handler) (runConfig, error) {
	base := "http://" + ln.Addr().String()
	// One key per client: the API limits each key's rate (a tenant's
	// protection, not the pipeline's throughput), and the clients stand
	// for many tenants.
	var spec []string
	for i := range slices.Max(env.Sizes().E2EConcurrency) {
		spec = append(spec, fmt.Sprintf("client:bench-client-%d:%s", i, benchClientKey(i)))
	}
	keys, err := httpapi.ParseAPIKeys(strings.Join(spec, ","))
	if err != nil {
		return runConfig{}, err
	}
	var provs [5]providers.Config
	for i, name := range providerNames {
		provs[i] = providers.Config{BaseURL: base + "/sim/" + name}
	}
	// The relay seals the log, as onboard dev's does, with a key of the
	// run, unless the run measures the pipeline without sealing.
	var sealKey ed25519.PrivateKey
	if !env.Sizes().Unsealed {
		if _, sealKey, err = ed25519.GenerateKey(nil); err != nil {
			return runConfig{}, err
		}
	}
	// Personal data is encrypted under a master key of the run, unless the
	// run measures the pipeline without encryption.
	var masterKey []byte
	if !env.Sizes().Plaintext {
		masterKey = make([]byte, postgres.MasterKeySize)
		if _, err := rand.Read(masterKey); err != nil {
			return runConfig{}, err
		}
	}
	return runConfig{
		addr: ln.Addr().String(), listener: ln, roles: knownRoles, databaseURL: dbURL, natsURL: natsURL,
		apiKeys: keys, webhookSecret: devWebhookSecret, providers: provs, sealKey: sealKey, masterKey: masterKey,
		process: process.Config{BaseDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond, VerificationDeadline: 30 * time.Second},
		public:  func(mux *http.ServeMux) { mux.Handle("/sim/", http.StripPrefix("/sim", s)) },
	}, nil
}

// startPipeline runs the pipeline of cfg in this process and waits until
// it is ready at base. stop stops it, waiting for it at most 30s.
func startPipeline(ctx context.Context, env *bench.Env, cfg runConfig, base string) (stop func(), err error) {
	log := slog.New(slog.NewTextHandler(env.ProgressWriter(), &slog.HandlerOptions{Level: slog.LevelError}))
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(pctx, cfg, log) }()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			// Its databases are dropped WITH (FORCE) all the same.
			env.Progressf("e2e: the pipeline did not stop within 30s; going on")
		}
	}
	if err := waitPipeline(ctx, base, done); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// measureEndToEnd drives Sizes.Customers onboardings from c clients and
// returns the level's rows: the rate, the latencies, and what an
// onboarding costs in CPU and context switches.
func measureEndToEnd(ctx context.Context, env *bench.Env, rig *e2eRig, c int) ([]bench.Result, error) {
	n, w := env.Sizes().Customers, rig.w
	env.Progressf("e2e: %d onboardings at concurrency %d", n, c)
	since := time.Now()
	cpu0, cpuErr := bench.SampleCPU(ctx, w.store.Pool())
	latencies, elapsed, err := rig.drive(ctx, c, n)
	if err != nil {
		return nil, fmt.Errorf("concurrency %d: %w", c, err)
	}
	cpu1, err := bench.SampleCPU(ctx, w.store.Pool())
	cpuErr = errors.Join(cpuErr, err)
	slices.Sort(latencies)
	reportStoreLatencies(ctx, env, w.store.Pool(), since)
	p50 := bench.Percentile(latencies, 0.50).Seconds() * 1000
	p99 := bench.Percentile(latencies, 0.99).Seconds() * 1000
	// No goal for the rate or the latencies: they move with the machine's
	// pace. Compare code by the CPU and switch rows, in alternating runs.
	level := fmt.Sprintf("%s c=%d", e2ePrefix(env), c)
	results := []bench.Result{
		bench.NewResult(level, "onboardings/s", int64(n), elapsed, 0, "", bench.Goal{}),
		bench.NewValue(level+" p50 signup-to-active", "ms", p50, int64(n), bench.Goal{}),
		bench.NewValue(level+" p99 signup-to-active", "ms", p99, int64(n), bench.Goal{}),
	}
	if cpuErr != nil {
		env.Progressf("e2e: CPU per onboarding not measured: %v", cpuErr)
		return results, nil
	}
	return append(results, costRows(level, n, cpu0, cpu1)...), nil
}

// reportStoreLatencies writes to the progress the pipeline's latencies
// since since as the event store recorded them, and where they go.
func reportStoreLatencies(ctx context.Context, env *bench.Env, pool *pgxpool.Pool, since time.Time) {
	if inStore, err := storeLatencies(ctx, pool, since); err == nil {
		env.Progressf("e2e: in the event store, signed_up to onboarding_completed p50 %.1f ms, p99 %.1f ms", inStore[0], inStore[1])
	}
	if hops, err := storeHops(ctx, pool, since); err == nil {
		env.Progressf("e2e: time from each event to the next of its customer, mean/p99 (count), where the mean is 0.5 ms or more: %s", hops)
	}
}

// costRows are the CPU time and context switches per onboarding of n
// onboardings of the level named level, of this process and, when it runs
// on this host, of Postgres.
func costRows(level string, n int, cpu0, cpu1 bench.CPU) []bench.Result {
	// What an onboarding costs the machine: with every core busy, the
	// rate cannot exceed the cores' time over this.
	self, pg, local := cpu1.Since(cpu0)
	per := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(n) }
	// And the context switches behind much of it on a machine whose
	// hypervisor makes them dear: a count that does not move with the
	// machine's pace, to compare code by.
	selfSw, pgSw, _ := cpu1.SwitchesSince(cpu0)
	perSw := func(k int64) float64 { return float64(k) / float64(n) }
	var results []bench.Result
	results = append(results, bench.NewValue(level+" CPU/onboarding, onboard", "ms", per(self), int64(n), bench.Goal{}))
	if local {
		results = append(results, bench.NewValue(level+" CPU/onboarding, Postgres", "ms", per(pg), int64(n), bench.Goal{}))
	}
	results = append(results, bench.NewValue(level+" switches/onboarding, onboard", "switches", perSw(selfSw), int64(n), bench.Goal{}))
	if local {
		results = append(results, bench.NewValue(level+" switches/onboarding, Postgres", "switches", perSw(pgSw), int64(n), bench.Goal{}))
	}
	return results
}

// waitPipeline waits until the pipeline answers ready with NATS connected,
// or fails when it stops.
func waitPipeline(ctx context.Context, base string, done <-chan error) error {
	readyClient := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := readyClient.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"nats":"ok"`) {
				return nil
			}
		}
		select {
		case err := <-done:
			return fmt.Errorf("the pipeline stopped while starting: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the pipeline was not ready within a minute")
		}
	}
}

// driveOnboardings runs n onboardings from c clients, each signing up a
// customer and waiting for its completion before the next, and returns
// their latencies and the wall time of the whole.
func driveOnboardings(ctx context.Context, client *http.Client, base string, w *completionWatcher, c, n int) ([]time.Duration, time.Duration, error) {
	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, n)
		first     error
		wg        sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	run := uuid.NewString()[:8]
	start := time.Now()
	for g := range c {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				lat, err := onboardOne(ctx, client, base, w, benchClientKey(g), fmt.Sprintf("%s-%d-%d", run, c, i))
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel()
					return
				}
				latencies = append(latencies, lat)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return latencies, time.Since(start), first
}

// benchClientKey is the API key of the bench's client i.
func benchClientKey(i int) string { return fmt.Sprintf("bench-client-key-%04d", i) }

// onboardOne signs one customer up with apiKey and waits until its
// onboarding is complete. A signup the rate limiter refuses is sent again
// (same Idempotency-Key) after its Retry-After, within the latency.
func onboardOne(ctx context.Context, client *http.Client, base string, w *completionWatcher, apiKey, key string) (time.Duration, error) {
	body := fmt.Sprintf(`{"email":"bench-%s@example.com","company":"Bench %s","contact_name":"Bench Client","country":"DE","plan":"growth"}`, key, key)
	start := time.Now()
	var (
		resp *http.Response
		out  []byte
	)
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/customers", bytes.NewReader([]byte(body)))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Idempotency-Key", "bench-"+key)
		req.Header.Set("Content-Type", "application/json")
		if resp, err = client.Do(req); err != nil {
			return 0, fmt.Errorf("signup: %w", err)
		}
		out, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("signup: %w", err)
		}
		if resp.StatusCode != http.StatusTooManyRequests || attempt == 100 {
			break
		}
		wait := 20 * time.Millisecond
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			wait = time.Duration(secs) * time.Second
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		}
	}
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("signup: %s: %s", resp.Status, out)
	}
	var signed struct {
		ID uuid.UUID `json:"id"`
	}
	if err := json.Unmarshal(out, &signed); err != nil {
		return 0, fmt.Errorf("signup answer %s: %w", out, err)
	}
	end, err := w.wait(ctx, signed.ID, time.Minute)
	if err != nil {
		return 0, err
	}
	return end.Sub(start), nil
}
