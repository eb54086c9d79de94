package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers/sim"
)

// syncBuffer is a bytes.Buffer safe for the writer and the test reading it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDev runs `onboard dev` in-process against a fresh database and
// returns its base URL.
func startDev(t *testing.T, simCfg sim.Config) string {
	t.Helper()
	return startDevLogging(t, simCfg, nil, slog.LevelError)
}

// startDevLogging is startDev with the logs written to logs at level.
func startDevLogging(t *testing.T, simCfg sim.Config, logs io.Writer, level slog.Level) string {
	t.Helper()
	return startDevWith(t, simCfg, func(o *devOptions) { o.logs, o.logLevel = logs, level })
}

// startDevWith is startDev with options changed by tweak.
func startDevWith(t *testing.T, simCfg sim.Config, tweak func(*devOptions)) string {
	t.Helper()
	t.Setenv("DATABASE_URL", pgtest.NewDatabase(t))
	t.Setenv("NATS_URL", "")
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts := devOptions{addr: "127.0.0.1:0", dataDir: t.TempDir(), stdout: out, logLevel: slog.LevelError, simConfig: &simCfg,
		process: &process.Config{BaseDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond, VerificationDeadline: time.Second}}
	if tweak != nil {
		tweak(&opts)
	}
	go func() { done <- runDev(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dev stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("dev did not stop within 30s")
		}
	})
	re := regexp.MustCompile(`console\s+(http://\S+)/`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base := m[1]
			waitReady(t, base, true)
			return base
		}
		select {
		case err := <-done:
			t.Fatalf("dev stopped: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev did not start:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReady waits until base answers /readyz with 200 (and, with needNATS,
// a connected NATS).
func waitReady(t *testing.T, base string, needNATS bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && (!needNATS || strings.Contains(string(body), `"nats":"ok"`)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func call(t *testing.T, method, url, key, body string, headers ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// TestDevEndToEnd drives the whole pipeline of `onboard dev` over HTTP:
// signups through the command API, the relay to the embedded JetStream, the
// process managers as durable consumers calling the simulator with 20%
// transient failures and 2% lost responses, the projections behind the
// query API, and the simulator's ledger.
func TestDevEndToEnd(t *testing.T) {
	flaky := sim.ProviderConfig{TransientRate: 0.2, TransientKinds: []sim.Fault{sim.Fault503, sim.FaultReset}, LostResponseRate: 0.02}
	base := startDev(t, sim.Config{Seed: 11, KYC: sim.KYCConfig{Delay: sim.Latency{Max: sim.Duration(20 * time.Millisecond)}},
		Providers: map[string]sim.ProviderConfig{"payments": flaky, "provisioning": flaky, "crm": flaky, "email": flaky}})

	const n = 30
	var ids []string
	for i := 0; i < n; i++ {
		status, body := call(t, "POST", base+"/v1/customers", devClientKey,
			fmt.Sprintf(`{"email":"e2e%d@example.com","company":"E2E %d","contact_name":"Tester","country":"SE","plan":"enterprise"}`, i, i),
			"Idempotency-Key", fmt.Sprintf("e2e-%d", i))
		if status != http.StatusAccepted {
			t.Fatalf("signup: %d %s", status, body)
		}
		var out struct{ ID string }
		_ = json.Unmarshal(body, &out)
		ids = append(ids, out.ID)
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, id := range ids {
		for {
			status, body := call(t, "GET", base+"/v1/customers/"+id, devOperatorKey, "")
			var c struct{ State string }
			_ = json.Unmarshal(body, &c)
			if status == http.StatusOK && c.State == "active" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("customer %s not active: %d %s", id, status, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	status, body := call(t, "GET", base+"/sim/ledger", "", "")
	var ledger sim.Ledger
	if err := json.Unmarshal(body, &ledger); status != http.StatusOK || err != nil {
		t.Fatalf("ledger: %d %v", status, err)
	}
	if ledger.DuplicateEffects != 0 {
		t.Errorf("%d duplicate effects", ledger.DuplicateEffects)
	}
	for _, id := range ids {
		e := ledger.Customers[id]
		if e.BillingAccounts != 1 || e.Tenants != 1 || e.CRMRecords != 1 || e.EmailsByType["welcome"] != 1 {
			t.Errorf("customer %s: effects %+v", id, e)
		}
	}
	// A client sees its own customers; the funnel is the operator's.
	if status, body := call(t, "GET", base+"/v1/customers/"+ids[0], devClientKey, ""); status != http.StatusOK {
		t.Errorf("client read: %d %s", status, body)
	}
	if status, _ := call(t, "GET", base+"/v1/stats/funnel", devClientKey, ""); status != http.StatusForbidden {
		t.Errorf("client funnel: %d, want 403", status)
	}
	_, metrics := call(t, "GET", base+"/metrics", "", "")
	for _, want := range []string{`onboard_commands_total{command="sign_up",outcome="ok"} 30`, `onboard_customers{state="active"} 30`, "onboard_relay_events_total", "onboard_external_attempts_total", "go_gc_heap_live_bytes"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if status, page := call(t, "GET", base+"/", "", ""); status != http.StatusOK || !strings.Contains(string(page), "<html") {
		t.Errorf("console: %d", status)
	}
}

// TestDevBanner: the banner names the database it uses (name, host:port,
// never the password) and keeps the shapes that scripts read: the keys,
// the NATS URL, and the simulator's admin endpoints with their key.
func TestDevBanner(t *testing.T) {
	var banner syncBuffer
	var dbName, dbHost string
	startDevWith(t, sim.Config{}, func(o *devOptions) {
		u, err := url.Parse(os.Getenv("DATABASE_URL"))
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), "banner-secret-pw") // trust auth ignores it
		t.Setenv("DATABASE_URL", u.String())
		dbName, dbHost = strings.TrimPrefix(u.Path, "/"), u.Host
		if u.Port() == "" {
			dbHost += ":5432"
		}
		o.stdout = io.MultiWriter(o.stdout, &banner)
	})
	out := banner.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\s+database\s+` + regexp.QuoteMeta(dbName+" at "+dbHost) + `$`),
		regexp.MustCompile(`client key: ` + devClientKey + `\)`),
		regexp.MustCompile(`operator key: ` + devOperatorKey + `\)`),
		regexp.MustCompile(`(?m)^\s+NATS\s+nats://127\.0\.0\.1:\d+$`),
		regexp.MustCompile(`(?m)/sim/admin/config\s.*the operator key`),
	} {
		if !want.MatchString(out) {
			t.Errorf("banner lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "banner-secret-pw") {
		t.Errorf("banner shows the database password:\n%s", out)
	}
}

// TestDevDemoTrickles: the demo's signups arrive one every interval, not
// in a burst, each with the client key and its own idempotency key and
// email.
func TestDevDemoTrickles(t *testing.T) {
	const n, every = 4, 150 * time.Millisecond
	var mu sync.Mutex
	var at []time.Time
	keys, emails := map[string]bool{}, map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Email string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		if r.Method != http.MethodPost || r.URL.Path != "/v1/customers" || r.Header.Get("Authorization") != "Bearer "+devClientKey {
			t.Errorf("%s %s with %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
		}
		keys[r.Header.Get("Idempotency-Key")], emails[body.Email] = true, true
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	start := time.Now()
	driveDemo(context.Background(), srv.URL, n, every, slog.New(slog.DiscardHandler))
	mu.Lock()
	defer mu.Unlock()
	if len(at) != n || len(keys) != n || len(emails) != n {
		t.Fatalf("%d signups, %d idempotency keys, %d emails; want %d each", len(at), len(keys), len(emails), n)
	}
	if first := at[0].Sub(start); first > every/2 {
		t.Errorf("the first signup came after %v, want at once", first)
	}
	for i := 1; i < n; i++ {
		if gap := at[i].Sub(at[i-1]); gap < every/2 {
			t.Errorf("signup %d came %v after the one before, want about %v", i, gap, every)
		}
	}
	if span := at[n-1].Sub(at[0]); span < (n-1)*every*9/10 {
		t.Errorf("%d signups over %v, want about %v", n, span, (n-1)*every)
	}
}

// TestDevDemoRateFlag: a rate out of range fails before dev starts
// anything; were it to start, it would find no database.
func TestDevDemoRateFlag(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	for _, bad := range []string{"0", "-5", "1e9"} {
		_, stderr, failed := runOnboard(t, "dev", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--demo", "5", "--demo-rate", bad)
		if !failed || !strings.Contains(stderr, "--demo-rate") {
			t.Errorf("--demo-rate %s: failed %v, %q; want an error naming --demo-rate", bad, failed, stderr)
		}
	}
	cmd := newDevCmd()
	if err := cmd.ParseFlags([]string{"--demo", "5", "--demo-rate", "12.5"}); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("demo-rate").Value.String(); got != "12.5" {
		t.Errorf("--demo-rate 12.5 parsed as %s", got)
	}
	if def := cmd.Flags().Lookup("demo-rate").DefValue; def != strconv.Itoa(defaultDemoRate) {
		t.Errorf("--demo-rate defaults to %s, want %d", def, defaultDemoRate)
	}
}
