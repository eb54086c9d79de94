package main

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/internal/pgtest"
)

func TestServeConfigInboxRetention(t *testing.T) {
	withMasterKey(t)
	t.Setenv("ONBOARD_INBOX_RETENTION", "72h")
	cfg, err := loadServeConfig("127.0.0.1:0", "projector")
	if err != nil || cfg.inboxRetention != 72*time.Hour {
		t.Fatalf("72h: retention %v, err %v", cfg.inboxRetention, err)
	}
	for _, bad := range []string{"soon", "10m", "-5h"} {
		t.Setenv("ONBOARD_INBOX_RETENTION", bad)
		if _, err := loadServeConfig("127.0.0.1:0", "projector"); err == nil || !strings.Contains(err.Error(), "ONBOARD_INBOX_RETENTION") {
			t.Errorf("%q: err %v, want one naming ONBOARD_INBOX_RETENTION", bad, err)
		}
	}
}

func TestServeConfigProjectorPace(t *testing.T) {
	withMasterKey(t)
	cfg, err := loadServeConfig("127.0.0.1:0", "projector")
	if err != nil || cfg.projectorPace != nil {
		t.Fatalf("unset: pace %v, err %v; want the default", cfg.projectorPace, err)
	}
	for _, c := range []struct {
		value string
		want  time.Duration
	}{{"250ms", 250 * time.Millisecond}, {"0", 0}} {
		t.Setenv("ONBOARD_PROJECTOR_PACE", c.value)
		cfg, err := loadServeConfig("127.0.0.1:0", "projector")
		if err != nil || cfg.projectorPace == nil || *cfg.projectorPace != c.want {
			t.Errorf("%s: pace %v, err %v", c.value, cfg.projectorPace, err)
		}
	}
	for _, bad := range []string{"fast", "-1s", "2m"} {
		t.Setenv("ONBOARD_PROJECTOR_PACE", bad)
		if _, err := loadServeConfig("127.0.0.1:0", "projector"); err == nil || !strings.Contains(err.Error(), "ONBOARD_PROJECTOR_PACE") {
			t.Errorf("%q: err %v, want one naming ONBOARD_PROJECTOR_PACE", bad, err)
		}
	}
}

func TestServeConfigWorkerTuning(t *testing.T) {
	withMasterKey(t)
	t.Setenv("ONBOARD_RETRY_BASE_DELAY", "20ms")
	t.Setenv("ONBOARD_RETRY_MAX_DELAY", "500ms")
	t.Setenv("ONBOARD_KYC_DEADLINE", "2s")
	t.Setenv("ONBOARD_KYC_POLLS", "2")
	t.Setenv("ONBOARD_SUPPORT_EMAIL", "help@example.com")
	cfg, err := loadServeConfig("127.0.0.1:0", "projector")
	if err != nil {
		t.Fatal(err)
	}
	pc := cfg.process
	if pc.BaseDelay != 20*time.Millisecond || pc.MaxDelay != 500*time.Millisecond || pc.VerificationDeadline != 2*time.Second ||
		pc.VerificationPolls != 2 || pc.SupportEmail != "help@example.com" {
		t.Errorf("process config %+v", pc)
	}
	t.Setenv("ONBOARD_RETRY_BASE_DELAY", "1m")
	t.Setenv("ONBOARD_KYC_DEADLINE", "soon")
	t.Setenv("ONBOARD_KYC_POLLS", "0")
	t.Setenv("ONBOARD_SUPPORT_EMAIL", "nobody")
	_, err = loadServeConfig("127.0.0.1:0", "projector")
	for _, want := range []string{"ONBOARD_RETRY_MAX_DELAY", "ONBOARD_KYC_DEADLINE", "ONBOARD_KYC_POLLS", "ONBOARD_SUPPORT_EMAIL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestServeConfigOutages(t *testing.T) {
	withMasterKey(t)
	t.Setenv("ONBOARD_RESUME_RATE", "2.5")
	t.Setenv("ONBOARD_OUTAGE_PROBE_EVERY", "3s")
	cfg, err := loadServeConfig("127.0.0.1:0", "projector")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.outages.ResumeRate != 2.5 || cfg.outages.ProbeEvery != 3*time.Second {
		t.Errorf("outage config %+v", cfg.outages)
	}
	for _, bad := range [][2]string{{"0", "10ms"}, {"fast", "soon"}} {
		t.Setenv("ONBOARD_RESUME_RATE", bad[0])
		t.Setenv("ONBOARD_OUTAGE_PROBE_EVERY", bad[1])
		_, err := loadServeConfig("127.0.0.1:0", "projector")
		for _, want := range []string{"ONBOARD_RESUME_RATE", "ONBOARD_OUTAGE_PROBE_EVERY"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%q: error %v does not name %s", bad, err, want)
			}
		}
	}
}

func TestServeConfigBreakerOpenTimeout(t *testing.T) {
	withMasterKey(t)
	t.Setenv("SIM_URL", "http://127.0.0.1:1/sim")
	t.Setenv("ONBOARD_BREAKER_OPEN_TIMEOUT", "200ms")
	cfg, err := loadServeConfig("127.0.0.1:0", "worker")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range cfg.providers {
		if p.Policy.Breaker.OpenTimeout != 200*time.Millisecond {
			t.Errorf("provider %s: breaker open timeout %v, want 200ms", providerNames[i], p.Policy.Breaker.OpenTimeout)
		}
	}
	t.Setenv("ONBOARD_BREAKER_OPEN_TIMEOUT", "1ms")
	if _, err := loadServeConfig("127.0.0.1:0", "worker"); err == nil || !strings.Contains(err.Error(), "ONBOARD_BREAKER_OPEN_TIMEOUT") {
		t.Errorf("1ms: err %v, want one naming ONBOARD_BREAKER_OPEN_TIMEOUT", err)
	}
}

func TestServeConfigProviderRetries(t *testing.T) {
	withMasterKey(t)
	t.Setenv("SIM_URL", "http://127.0.0.1:1/sim")
	t.Setenv("ONBOARD_PROVIDER_RETRY_BASE_DELAY", "5ms")
	t.Setenv("ONBOARD_PROVIDER_RETRY_MAX_DELAY", "50ms")
	t.Setenv("ONBOARD_PROVIDER_MAX_RETRY_AFTER", "100ms")
	cfg, err := loadServeConfig("127.0.0.1:0", "worker")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range cfg.providers {
		if p.Policy.BaseDelay != 5*time.Millisecond || p.Policy.MaxDelay != 50*time.Millisecond || p.Policy.MaxRetryAfter != 100*time.Millisecond {
			t.Errorf("provider %s: policy %+v", providerNames[i], p.Policy)
		}
	}
	t.Setenv("ONBOARD_PROVIDER_RETRY_BASE_DELAY", "soon")
	if _, err := loadServeConfig("127.0.0.1:0", "worker"); err == nil || !strings.Contains(err.Error(), "ONBOARD_PROVIDER_RETRY_BASE_DELAY") {
		t.Errorf("soon: err %v, want one naming ONBOARD_PROVIDER_RETRY_BASE_DELAY", err)
	}
	t.Setenv("ONBOARD_PROVIDER_RETRY_BASE_DELAY", "1s")
	if _, err := loadServeConfig("127.0.0.1:0", "worker"); err == nil || !strings.Contains(err.Error(), "max delay must not be below base delay") {
		t.Errorf("base above max: err %v", err)
	}
}

// TestServeConfigErrorsOnePerLine runs `onboard serve` with a bad
// configuration as main does: it fails before connecting to anything, and
// names every problem on a line of its own.
func TestServeConfigErrorsOnePerLine(t *testing.T) {
	for _, k := range []string{"ONBOARD_API_KEYS", "KYC_WEBHOOK_SECRET", "ONBOARD_MASTER_KEY", "ONBOARD_MASTER_KEY_FILE", "NATS_URL", "SIM_URL", "KYC_URL", "PAYMENTS_URL", "PROVISIONING_URL", "CRM_URL", "EMAIL_URL"} {
		t.Setenv(k, "")
	}
	t.Setenv("ONBOARD_KYC_POLLS", "0")
	_, stderr, failed := runOnboard(t, "serve", "--roles", "command,worker,relay,bogus", "--addr", "nowhere")
	if !failed {
		t.Fatal("serve started with a bad configuration")
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	want := []string{`--roles: unknown role "bogus"`, "ONBOARD_API_KEYS:", "KYC_WEBHOOK_SECRET:", "ONBOARD_MASTER_KEY:", "KYC_URL:", "EMAIL_URL:",
		"NATS_URL:", "ONBOARD_KYC_POLLS:", "--addr:"}
	for _, w := range want {
		n := 0
		for _, line := range lines {
			if strings.HasPrefix(line, "onboard: "+w) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d lines start with %q, want 1:\n%s", n, "onboard: "+w, stderr)
		}
	}
	for _, line := range lines {
		if !strings.HasPrefix(line, "onboard: ") {
			t.Errorf("line %q: want \"onboard: <problem>\"", line)
		}
	}
	if len(lines) < len(want) {
		t.Errorf("%d lines for at least %d problems:\n%s", len(lines), len(want), stderr)
	}
}

func TestServeConfigAPIRateAndMetricsAddr(t *testing.T) {
	withMasterKey(t)
	t.Setenv("ONBOARD_API_KEYS", "client:a:client-secret-0123456789")
	t.Setenv("ONBOARD_API_RATE", "2.5")
	t.Setenv("ONBOARD_API_BURST", "7")
	t.Setenv("ONBOARD_METRICS_ADDR", "127.0.0.1:9100")
	cfg, err := loadServeConfig("127.0.0.1:0", "query")
	if err != nil || cfg.apiRate != 2.5 || cfg.apiBurst != 7 || cfg.metricsAddr != "127.0.0.1:9100" {
		t.Fatalf("rate %v, burst %d, metrics %q, err %v", cfg.apiRate, cfg.apiBurst, cfg.metricsAddr, err)
	}
	t.Setenv("ONBOARD_API_RATE", "0")
	t.Setenv("ONBOARD_API_BURST", "many")
	t.Setenv("ONBOARD_METRICS_ADDR", "9100")
	_, err = loadServeConfig("127.0.0.1:0", "query")
	for _, want := range []string{"ONBOARD_API_RATE", "ONBOARD_API_BURST", "ONBOARD_METRICS_ADDR"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v, want one naming %s", err, want)
		}
	}
}

// TestMetricsOnTheirOwnAddress: with a metrics address, /metrics is
// served there and no longer beside the API.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := httpapi.ParseAPIKeys("client:a:" + devClientKey)
	r := &role{t: t, name: "query", log: slog.New(slog.DiscardHandler), cfg: runConfig{addr: "127.0.0.1:0", roles: []string{"query"},
		databaseURL: pgtest.NewMigratedDatabase(t), apiKeys: keys, listener: ln, metricsListener: mln}}
	r.start()
	t.Cleanup(r.stop)
	base := "http://" + ln.Addr().String()
	waitReady(t, base, false)
	if status, _ := call(t, "GET", base+"/metrics", "", ""); status != http.StatusNotFound {
		t.Errorf("GET /metrics beside the API: %d, want 404", status)
	}
	status, body := call(t, "GET", "http://"+mln.Addr().String()+"/metrics", "", "")
	if status != http.StatusOK || !strings.Contains(string(body), "onboard_projection_lag_events") {
		t.Errorf("GET /metrics on the metrics address: %d %.200s", status, body)
	}
}

// withMasterKey sets a master key of the personal data for the test.
func withMasterKey(t *testing.T) {
	t.Helper()
	t.Setenv("ONBOARD_MASTER_KEY", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))
	t.Setenv("ONBOARD_MASTER_KEY_FILE", "")
}

// TestServeConfigMasterKey: every role but the relay needs the master key,
// from the variable or a file, and a malformed one is named.
func TestServeConfigMasterKey(t *testing.T) {
	t.Setenv("ONBOARD_MASTER_KEY", "")
	t.Setenv("ONBOARD_MASTER_KEY_FILE", "")
	t.Setenv("NATS_URL", "nats://127.0.0.1:4222")
	if _, err := loadServeConfig("127.0.0.1:0", "relay"); err != nil {
		t.Errorf("relay without a master key: %v", err)
	}
	if _, err := loadServeConfig("127.0.0.1:0", "projector"); err == nil || !strings.Contains(err.Error(), "ONBOARD_MASTER_KEY:") {
		t.Errorf("projector without a master key: %v", err)
	}
	t.Setenv("ONBOARD_MASTER_KEY", "c2hvcnQ=")
	if _, err := loadServeConfig("127.0.0.1:0", "projector"); err == nil || !strings.Contains(err.Error(), "ONBOARD_MASTER_KEY: want the base64 of 32") {
		t.Errorf("short master key: %v", err)
	}
	t.Setenv("ONBOARD_MASTER_KEY", "")
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ONBOARD_MASTER_KEY_FILE", path)
	cfg, err := loadServeConfig("127.0.0.1:0", "projector")
	if err != nil || !bytes.Equal(cfg.masterKey, bytes.Repeat([]byte{2}, 32)) {
		t.Errorf("key file: %x, %v", cfg.masterKey, err)
	}
}
