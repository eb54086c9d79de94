package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/providers/sim"
)

func TestSecretEnv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, value, file, want, err string
	}{
		{name: "neither"},
		{name: "the variable", value: "plain", want: "plain"},
		{name: "the file, without its line break", file: file, want: "from-a-file"},
		{name: "both", value: "plain", file: file, err: "TEST_SECRET and TEST_SECRET_FILE are both set"},
		{name: "a missing file", file: filepath.Join(dir, "missing"), err: "TEST_SECRET_FILE: open"},
		{name: "an empty file", file: empty, err: "is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TEST_SECRET", tt.value)
			t.Setenv("TEST_SECRET_FILE", tt.file)
			got, err := secretEnv("TEST_SECRET")
			if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("secretEnv = %q, %v; want %q, %q", got, err, tt.want, tt.err)
			}
		})
	}
}

// secretsInFiles writes each secret to a file of dir and points
// <VAR>_FILE at it, as a Docker or Kubernetes secret would be mounted.
func secretsInFiles(t *testing.T, secrets map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for name, value := range secrets {
		path := filepath.Join(dir, strings.ToLower(name))
		if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv(name, "")
		t.Setenv(name+"_FILE", path)
	}
}

// TestSecretsFromFilesNeverLogged configures every secret of `onboard
// serve` through <VAR>_FILE, runs every role at debug level through
// signups, a KYC webhook, bad keys, forged webhooks and operator calls, and
// checks that no log line holds any of the secrets.
func TestSecretsFromFilesNeverLogged(t *testing.T) {
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
	_, sealKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const (
		clientKey   = "client-canary-secret-7f3a9c"
		operatorKey = "operator-canary-secret-2b8d1e"
		webhook     = "whsec-canary-secret-5e6f7a8b"
		dbPassword  = "db-canary-password-9c0d1e"
	)
	secrets := map[string]string{
		// Postgres here trusts local connections: the password is
		// configured, and would show wherever the URL were logged.
		"DATABASE_URL":       strings.Replace(dbURL, "postgres@", "postgres:"+dbPassword+"@", 1),
		"ONBOARD_API_KEYS":   "client:canary:" + clientKey + ",operator:canary-op:" + operatorKey,
		"KYC_WEBHOOK_SECRET": webhook,
		"ONBOARD_SEAL_KEY":   eventstore.EncodeSealKey(sealKey),
		"ONBOARD_MASTER_KEY": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
		"NATS_PASSWORD":      ns.Credentials(messaging.DevUser).Password,
	}
	t.Setenv("NATS_USER", messaging.DevUser)
	for _, p := range providerNames {
		secrets[strings.ToUpper(p)+"_API_KEY"] = p + "-provider-canary-key-4d5e6f"
	}
	secretsInFiles(t, secrets)
	s, err := sim.New(sim.Config{Seed: 3, KYC: sim.KYCConfig{CallbackURL: base + "/v1/webhooks/kyc", WebhookSecret: webhook,
		Approve: 1, Delay: sim.Latency{Max: sim.Duration(20 * time.Millisecond)}},
		Providers: map[string]sim.ProviderConfig{"crm": {TransientRate: 0.5, TransientKinds: []sim.Fault{sim.Fault503}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	simSrv := httptest.NewServer(http.StripPrefix("/sim", s))
	t.Cleanup(simSrv.Close)
	t.Setenv("NATS_URL", ns.ClientURL())
	t.Setenv("SIM_URL", simSrv.URL+"/sim")
	t.Setenv("ONBOARD_RETRY_BASE_DELAY", "10ms")
	t.Setenv("ONBOARD_RETRY_MAX_DELAY", "200ms")
	cfg, err := loadServeConfig("127.0.0.1:0", strings.Join(knownRoles, ","))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.webhookSecret != webhook || len(cfg.apiKeys) != 2 || cfg.providers[1].APIKey != secrets["PAYMENTS_API_KEY"] {
		t.Fatalf("the secrets were not read from their files: %+v", cfg)
	}
	cfg.listener = ln
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := &role{t: t, name: "all roles", cfg: cfg, log: log}
	r.start()
	t.Cleanup(r.stop)
	waitReady(t, base, true)

	status, body := call(t, "POST", base+"/v1/customers", clientKey,
		`{"email":"secrets@canary.example","company":"Canary","contact_name":"C","country":"IT","plan":"growth"}`, "Idempotency-Key", "canary-1")
	if status != http.StatusAccepted {
		t.Fatalf("signup: %d %s", status, body)
	}
	var out struct{ ID string }
	_ = json.Unmarshal(body, &out)
	// Refusals are logged by nobody with the secret that was tried or
	// the one it should have been.
	call(t, "GET", base+"/v1/customers/"+out.ID, clientKey+"x", "")
	call(t, "GET", base+"/v1/stats/funnel", clientKey, "")
	call(t, "POST", base+"/v1/webhooks/kyc", "", `{"check_id":"x","verdict":"approved"}`, "X-Signature", "t=1,v1=00")
	waitFor(t, 60*time.Second, "customer active", func() (bool, string) {
		_, body := call(t, "GET", base+"/v1/customers/"+out.ID, operatorKey, "")
		return strings.Contains(string(body), `"state":"active"`), string(body)
	})
	call(t, "POST", base+"/v1/customers/"+out.ID+"/cancel", operatorKey, `{"reason":"done"}`)
	call(t, "GET", base+"/metrics", "", "")

	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines := 0
	for sc.Scan() {
		lines++
		for name, secret := range secrets {
			if strings.Contains(sc.Text(), secret) || (name == "DATABASE_URL" && strings.Contains(sc.Text(), dbPassword)) {
				t.Errorf("a log line holds %s: %s", name, sc.Text())
			}
		}
	}
	if lines < 10 {
		t.Fatalf("only %d log lines: the run logged too little to tell", lines)
	}
	t.Logf("%d log lines, none with any of the %d secrets", lines, len(secrets))
}
