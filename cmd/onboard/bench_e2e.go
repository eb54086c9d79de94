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

	"github.com/onboard/onboard/domain"
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
// published by the relay.
func benchEndToEnd(ctx context.Context, env *bench.Env) ([]bench.Result, error) {
	dbURL, err := env.NewDatabase(ctx, "e2e")
	if err != nil {
		return nil, err
	}
	if err := schema.Migrate(ctx, dbURL); err != nil {
		return nil, err
	}
	srv, cleanup, err := startBenchNATS()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	s, err := sim.New(sim.Config{Seed: 1, KYC: sim.KYCConfig{CallbackURL: base + "/v1/webhooks/kyc", WebhookSecret: devWebhookSecret,
		Delay: sim.Latency{Max: sim.Duration(time.Millisecond)}}})
	if err != nil {
		ln.Close()
		return nil, err
	}
	defer s.Close()
	cfg, err := e2eRunConfig(env, ln, dbURL, srv.ClientURL(), s)
	if err != nil {
		ln.Close()
		return nil, err
	}
	stop, err := startPipeline(ctx, env, cfg, base)
	if err != nil {
		return nil, err
	}
	defer stop()

	w, err := watchCompletions(ctx, dbURL, srv.ClientURL())
	if err != nil {
		return nil, err
	}
	defer w.close()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: slices.Max(env.Sizes().E2EConcurrency), IdleConnTimeout: time.Minute}}
	// The first onboardings create the consumers' state and warm the
	// pools (each new connection plans each statement afresh a few times
	// before it settles on a generic plan); they are not measured: the
	// figures are the steady state's.
	top := slices.Max(env.Sizes().E2EConcurrency)
	warmup := min(2*top, env.Sizes().Customers)
	if _, _, err := driveOnboardings(ctx, client, base, w, min(warmup, top), warmup); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	var results []bench.Result
	for _, c := range env.Sizes().E2EConcurrency {
		level, err := measureEndToEnd(ctx, env, client, base, w, c)
		if err != nil {
			return nil, err
		}
		results = append(results, level...)
	}
	return results, nil
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
	// The relay seals the log, as onboard dev's does, with a key of the run.
	_, sealKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		return runConfig{}, err
	}
	// Personal data is sealed under a master key of the run, unless the
	// run measures the pipeline without sealing.
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
func measureEndToEnd(ctx context.Context, env *bench.Env, client *http.Client, base string, w *completionWatcher, c int) ([]bench.Result, error) {
	n := env.Sizes().Customers
	env.Progressf("e2e: %d onboardings at concurrency %d", n, c)
	since := time.Now()
	cpu0, cpuErr := bench.SampleCPU(ctx, w.store.Pool())
	latencies, elapsed, err := driveOnboardings(ctx, client, base, w, c, n)
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
	results := []bench.Result{
		bench.NewResult(fmt.Sprintf("e2e c=%d", c), "onboardings/s", int64(n), elapsed, 0, "", bench.Goal{}),
		bench.NewValue(fmt.Sprintf("e2e c=%d p50 signup-to-active", c), "ms", p50, int64(n), bench.Goal{}),
		bench.NewValue(fmt.Sprintf("e2e c=%d p99 signup-to-active", c), "ms", p99, int64(n), bench.Goal{}),
	}
	if cpuErr != nil {
		env.Progressf("e2e: CPU per onboarding not measured: %v", cpuErr)
		return results, nil
	}
	return append(results, costRows(c, n, cpu0, cpu1)...), nil
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
// onboardings at concurrency c, of this process and, when it runs on
// this host, of Postgres.
func costRows(c, n int, cpu0, cpu1 bench.CPU) []bench.Result {
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
	results = append(results, bench.NewValue(fmt.Sprintf("e2e c=%d CPU/onboarding, onboard", c), "ms", per(self), int64(n), bench.Goal{}))
	if local {
		results = append(results, bench.NewValue(fmt.Sprintf("e2e c=%d CPU/onboarding, Postgres", c), "ms", per(pg), int64(n), bench.Goal{}))
	}
	results = append(results, bench.NewValue(fmt.Sprintf("e2e c=%d switches/onboarding, onboard", c), "switches", perSw(selfSw), int64(n), bench.Goal{}))
	if local {
		results = append(results, bench.NewValue(fmt.Sprintf("e2e c=%d switches/onboarding, Postgres", c), "switches", perSw(pgSw), int64(n), bench.Goal{}))
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

// completionWatcher follows the published events and tells waiters when their
// customer's onboarding completed, or that it ended otherwise (rejected,
// paused, cancelled).
type completionWatcher struct {
	store *bench.Store
	nc    *nats.Conn

	mu      sync.Mutex
	ended   map[uuid.UUID]completion
	waiters map[uuid.UUID]chan completion
}

type completion struct {
	at        time.Time
	eventType string
}

// watchCompletions opens the store the figures are read from and follows
// the customers' ending events as the relay publishes them, on plain NATS
// subscriptions: the watcher, which is no part of the pipeline, then
// costs the database nothing while it measures (a subscription to the
// event store read every event again), and it sees a completion when the
// pipeline's own consumers can, a few milliseconds after its commit.
func watchCompletions(ctx context.Context, dbURL, natsURL string) (*completionWatcher, error) {
	store, err := bench.OpenStore(ctx, dbURL, 4)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(natsURL, nats.Name("onboard bench watcher"))
	if err != nil {
		store.Close()
		return nil, err
	}
	w := &completionWatcher{store: store, nc: nc, ended: map[uuid.UUID]completion{}, waiters: map[uuid.UUID]chan completion{}}
	stream := messaging.StreamConfig{SubjectPrefix: messaging.DefaultSubjectPrefix} // run's subjects
	for _, typ := range []string{domain.TypeOnboardingCompleted, domain.TypeVerificationRejected, domain.TypePaused, domain.TypeCancelled} {
		if _, err := nc.Subscribe(stream.EventTypeFilter(typ), func(m *nats.Msg) {
			id, err := uuid.Parse(strings.TrimPrefix(m.Header.Get(messaging.HeaderStreamID), "customer-"))
			if err != nil {
				return // not a customer stream
			}
			w.notify(id, completion{at: time.Now(), eventType: typ})
		}); err != nil {
			w.close()
			return nil, err
		}
	}
	if err := nc.Flush(); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func (w *completionWatcher) notify(id uuid.UUID, c completion) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.waiters[id]; ok {
		delete(w.waiters, id)
		ch <- c
		return
	}
	w.ended[id] = c
}

// wait returns when the customer's onboarding completed, or an error when
// it ended otherwise or took longer than timeout.
func (w *completionWatcher) wait(ctx context.Context, id uuid.UUID, timeout time.Duration) (time.Time, error) {
	w.mu.Lock()
	c, ok := w.ended[id]
	var ch chan completion
	if ok {
		delete(w.ended, id)
	} else {
		ch = make(chan completion, 1)
		w.waiters[id] = ch
	}
	w.mu.Unlock()
	if !ok {
		select {
		case c = <-ch:
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(timeout):
			return time.Time{}, fmt.Errorf("customer %s: onboarding not complete after %s", id, timeout)
		}
	}
	if c.eventType != domain.TypeOnboardingCompleted {
		return time.Time{}, fmt.Errorf("customer %s ended with %s instead of completing", id, c.eventType)
	}
	return c.at, nil
}

func (w *completionWatcher) close() {
	w.nc.Close()
	w.store.Close()
}

// storeLatencies returns p50 and p99 in milliseconds of the time from the
// signup (since since) to the completion of each customer as the event
// store recorded them: the pipeline's own latency, without the API's and
// the watcher's.
func storeLatencies(ctx context.Context, pool *pgxpool.Pool, since time.Time) ([2]float64, error) {
	var out [2]float64
	err := pool.QueryRow(ctx, `SELECT
			coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), 0), coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), 0)
		FROM (SELECT extract(epoch FROM c.recorded_at - s.recorded_at) * 1000 AS ms
			FROM events s JOIN events c ON c.stream_id = s.stream_id AND c.type = $2
			WHERE s.type = $1 AND s.recorded_at >= $3) l`, domain.TypeSignedUp, domain.TypeOnboardingCompleted, since).Scan(&out[0], &out[1])
	return out, err
}

// storeHops returns the mean time from each customer event (since since)
// to the next, per type of the next, as recorded by the event store: where
// the latency of an onboarding goes.
func storeHops(ctx context.Context, pool *pgxpool.Pool, since time.Time) (string, error) {
	rows, err := pool.Query(ctx, `SELECT prev, type, avg(gap_ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY gap_ms), count(*) FROM (
			SELECT type, lag(type) OVER w AS prev, extract(epoch FROM recorded_at - lag(recorded_at) OVER w) * 1000 AS gap_ms
			FROM events WHERE stream_type = 'customer' AND recorded_at >= $1
			WINDOW w AS (PARTITION BY stream_id ORDER BY version)) g
		WHERE gap_ms IS NOT NULL GROUP BY prev, type HAVING avg(gap_ms) >= 0.5 ORDER BY avg(gap_ms) DESC`, since)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var parts []string
	short := func(t string) string { return strings.TrimSuffix(strings.TrimPrefix(t, "customer."), ".v1") }
	for rows.Next() {
		var (
			prev, typ string
			avg, p99  float64
			n         int64
		)
		if err := rows.Scan(&prev, &typ, &avg, &p99, &n); err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s→%s %.0f/%.0f ms (%d)", short(prev), short(typ), avg, p99, n))
	}
	return strings.Join(parts, ", "), rows.Err()
}
