package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/operator"
	"github.com/onboard/onboard/projections"
)

// newPersonalEnv serves the command, query and operator APIs over a store
// that encrypts personal data, with the projectors running.
func newPersonalEnv(t *testing.T) *commandEnv {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.NewPool(t, pgtest.NewMigratedDatabase(t), 12)
	store, err := postgres.New(pool, postgres.Config{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	keys, err := postgres.NewKeyStore(pool, bytes.Repeat([]byte{9}, postgres.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := commands.New(commands.Config{Store: store, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.NewCommandAPI(httpapi.CommandConfig{Commands: cmds, Store: store, WebhookSecret: hookSecret})
	if err != nil {
		t.Fatal(err)
	}
	proj, err := projections.New(projections.Config{Pool: pool, Source: store, Keys: keys, RetryDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = proj.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	apiKeys, err := httpapi.ParseAPIKeys("client:shop:" + clientKey + ",operator:ada:" + operatorKey)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	httpapi.NewQueryAPI(httpapi.QueryConfig{Reads: proj, Events: store, Keys: keys, WaitTimeout: 30 * time.Second}).Register(mux)
	bulks, err := operator.NewBulks(operator.BulkConfig{Pool: pool, Commands: cmds, Records: store, Reads: proj, Rate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	httpapi.NewOperatorAPI(httpapi.OperatorConfig{Bulks: bulks, Reads: proj, Explainer: operator.Explainer{Events: store, Keys: keys},
		Stuck: operator.Detector{Reads: proj, Deadlines: operator.DefaultDeadlines(operator.Policy{})}}).Register(mux)
	auth := httpapi.NewAuthenticator(httpapi.AuthConfig{Keys: apiKeys, RatePerSecond: 1000, Burst: 1000})
	srv := httptest.NewServer(httpapi.Validating(t, auth.Middleware(mux)))
	t.Cleanup(srv.Close)
	return &commandEnv{t: t, store: store, commands: cmds, srv: srv}
}

func TestErasureEndpointAndSubjectAccess(t *testing.T) {
	e := newPersonalEnv(t)
	id := e.signUp("grace@example.com")
	path := "/v1/customers/" + id

	resp, body := e.do(req{method: "GET", path: path + "/personal-data", key: operatorKey})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"email":"grace@example.com"`) ||
		!strings.Contains(string(body), `"contact_name":"Grace Hopper"`) || !strings.Contains(string(body), `"erased":false`) {
		t.Fatalf("personal data: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.do(req{method: "GET", path: path + "/personal-data", key: clientKey}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a client read personal data: %d", resp.StatusCode)
	}

	erase := func(key, body string) (*http.Response, []byte) {
		h := map[string]string{}
		if key != "" {
			h["Idempotency-Key"] = key
		}
		return e.do(req{method: "POST", path: path + "/erasure", key: operatorKey, body: body, headers: h})
	}
	if resp, body := erase("", `{"reason":"art. 17"}`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("erasure without Idempotency-Key: %d %s", resp.StatusCode, body)
	}
	if resp, body := erase("erase-1", `{}`); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("erasure without a reason: %d %s", resp.StatusCode, body)
	}
	resp, body = erase("erase-1", `{"reason":"art. 17"}`)
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(body), `"state":"cancelled"`) {
		t.Fatalf("erasure: %d %s", resp.StatusCode, body)
	}
	if again, againBody := erase("erase-1", `{"reason":"art. 17"}`); again.StatusCode != http.StatusAccepted || !bytes.Equal(againBody, body) {
		t.Fatalf("replayed erasure: %d %s", again.StatusCode, againBody)
	}

	resp, body = e.do(req{method: "GET", path: path + "/personal-data", key: operatorKey})
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "grace") || !strings.Contains(string(body), `"erased":true`) ||
		!strings.Contains(string(body), `"email":"[erased]"`) {
		t.Fatalf("personal data after erasure: %d %s", resp.StatusCode, body)
	}
	// Replay and timeline show [erased], never an error.
	for _, p := range []string{path + "/events", path + "/state?version=1"} {
		resp, body := e.do(req{method: "GET", path: p, key: operatorKey})
		if resp.StatusCode != http.StatusOK || strings.Contains(strings.ToLower(string(body)), "grace") || !strings.Contains(string(body), domain.Erased) {
			t.Fatalf("GET %s after erasure: %d %s", p, resp.StatusCode, body)
		}
	}
	// The read model keeps the id and the state, the fields erased.
	var summary map[string]any
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, body := e.do(req{method: "GET", path: path, key: operatorKey})
		if resp.StatusCode == http.StatusOK {
			_ = json.Unmarshal(body, &summary)
			if summary["email"] == domain.Erased {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("read model not scrubbed: %d %s", resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if summary["state"] != "cancelled" || summary["company"] != domain.Erased || summary["contact_name"] != domain.Erased || summary["id"] != id {
		t.Fatalf("read model after erasure: %v", summary)
	}
	// The same email signs up again.
	resp, body = e.do(req{method: "POST", path: "/v1/customers", key: clientKey, body: signupBody("grace@example.com"), headers: map[string]string{"Idempotency-Key": "after-erasure"}})
	if resp.StatusCode != http.StatusAccepted || strings.Contains(string(body), id) {
		t.Fatalf("signup after erasure: %d %s", resp.StatusCode, body)
	}
}

// TestExplainShowsPersonalDataDecryptedThenErased: explain shows the
// customer's events as the timeline does, its personal fields decrypted
// through the key store and [erased] after its erasure, never ciphertext.
func TestExplainShowsPersonalDataDecryptedThenErased(t *testing.T) {
	e := newPersonalEnv(t)
	id := e.signUp("grace@example.com")
	path := "/v1/customers/" + id + "/explain"

	resp, body := e.do(req{method: "GET", path: path, key: operatorKey})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"company":"Acme GmbH"`) ||
		!strings.Contains(string(body), `"email":"grace@example.com"`) || strings.Contains(string(body), "pd1:") {
		t.Fatalf("explain: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(req{method: "POST", path: "/v1/customers/" + id + "/erasure", key: operatorKey, body: `{"reason":"art. 17"}`,
		headers: map[string]string{"Idempotency-Key": "erase-1"}})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("erasure: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(req{method: "GET", path: path, key: operatorKey})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"company":"[erased]"`) ||
		strings.Contains(string(body), "pd1:") || strings.Contains(strings.ToLower(string(body)), "grace") ||
		strings.Contains(string(body), "Acme") {
		t.Fatalf("explain after erasure: %d %s", resp.StatusCode, body)
	}
}
