package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/operator"
	"github.com/onboard/onboard/projections"
)

// operatorServer serves the operator API over the query environment, every
// response checked against openapi.yaml.
func (e *queryEnv) operatorServer(t *testing.T) (*httptest.Server, *operator.Bulks) {
	t.Helper()
	cmds, err := commands.New(commands.Config{Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	bulks, err := operator.NewBulks(operator.BulkConfig{Pool: e.store.Pool(), Commands: cmds, Records: e.store, Reads: e.proj, Rate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return time.Now().Add(48 * time.Hour) }
	mux := http.NewServeMux()
	NewOperatorAPI(OperatorConfig{Bulks: bulks, Reads: e.proj,
		Explainer: operator.Explainer{Events: e.store},
		Stuck:     operator.Detector{Reads: e.proj, Deadlines: operator.DefaultDeadlines(operator.Policy{}), Now: later}}).Register(mux)
	srv := httptest.NewServer(Validating(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.Header.Get("X-Test-Principal"); p != "" {
			role, name, _ := strings.Cut(p, ":")
			r = r.WithContext(withPrincipal(r.Context(), Principal{Name: name, Role: Role(role)}))
		}
		mux.ServeHTTP(w, r)
	})))
	t.Cleanup(srv.Close)
	return srv, bulks
}

// post sends body as principal with an optional Idempotency-Key.
func post(t *testing.T, srv *httptest.Server, principal, path, key, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-Principal", principal)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: %d %q", path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// TestOperatorAPIKeepsTheContract calls every operator route on seeded
// journeys, with good and bad requests, and each answer is checked against
// openapi.yaml by the server's wrapper.
func TestOperatorAPIKeepsTheContract(t *testing.T) {
	e := newQueryEnv(t, 60)
	e.run(t)
	e.catchUp(t)
	srv, bulks := e.operatorServer(t)

	code, groups := get(t, srv, queryOperator, "/v1/operator/queue/groups")
	if code != http.StatusOK {
		t.Fatalf("groups: %d %v", code, groups)
	}
	// Cancel the customers of a state that has some.
	f, err := e.proj.Funnel(t.Context(), projections.FunnelQuery{})
	if err != nil {
		t.Fatal(err)
	}
	state := ""
	for _, s := range []string{"paused", "verifying", "provisioning", "pending", "verified"} {
		if f.States[s] > 0 {
			state = s
			break
		}
	}
	if state == "" {
		t.Fatalf("the seed left nobody in flight: %v", f.States)
	}
	code, dry := post(t, srv, queryOperator, "/v1/operator/bulk", "", `{"action":"cancel","filter":{"state":"`+state+`"},"dry_run":true}`)
	if code != http.StatusOK || dry["count"].(float64) != float64(f.States[state]) {
		t.Fatalf("dry run of %d %s: %d %v", f.States[state], state, code, dry)
	}
	for _, bad := range []struct {
		key, body string
		status    int
	}{
		{"", `{"action":"retry","filter":{"state":"paused"},"reason":"x"}`, http.StatusBadRequest},
		{"k", `{"action":"explode","filter":{"state":"paused"},"reason":"x"}`, http.StatusUnprocessableEntity},
		{"k", `{"action":"retry","filter":{},"reason":"x"}`, http.StatusUnprocessableEntity},
		{"k", `{"action":"retry","filter":{"state":"active"},"reason":"x"}`, http.StatusUnprocessableEntity},
		{"k", `{"action":"retry","filter":{"provider":"acme"},"reason":"x"}`, http.StatusUnprocessableEntity},
		{"k", `{"action":"retry","filter":{"state":"paused"}}`, http.StatusUnprocessableEntity},
		{"k", `{"action":"retry","filter":{"state":"paused"},"reason":"x","extra":1}`, http.StatusBadRequest},
	} {
		if code, body := post(t, srv, queryOperator, "/v1/operator/bulk", bad.key, bad.body); code != bad.status {
			t.Errorf("%s: %d %v, want %d", bad.body, code, body, bad.status)
		}
	}
	req := `{"action":"cancel","filter":{"state":"` + state + `"},"reason":"contract test"}`
	code, op := post(t, srv, queryOperator, "/v1/operator/bulk", "bulk-1", req)
	if code != http.StatusAccepted || op["total"] != dry["count"] {
		t.Fatalf("bulk: %d %v", code, op)
	}
	if code, again := post(t, srv, queryOperator, "/v1/operator/bulk", "bulk-1", req); code != http.StatusAccepted || again["id"] != op["id"] {
		t.Errorf("the same bulk again: %d %v", code, again)
	}
	if code, other := post(t, srv, queryOperator, "/v1/operator/bulk", "bulk-1", strings.Replace(req, "contract", "other", 1)); code != http.StatusUnprocessableEntity {
		t.Errorf("the key with another body: %d %v", code, other)
	}
	id := op["id"].(string)
	if code, got := get(t, srv, queryOperator, "/v1/operator/bulk/"+id); code != http.StatusOK || got["id"] != id {
		t.Errorf("bulk progress: %d %v", code, got)
	}
	// Executed, with its failures listed (a customer moved on meanwhile
	// would be one).
	ctx := t.Context()
	go func() { _ = bulks.Run(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for {
		_, got := get(t, srv, queryOperator, "/v1/operator/bulk/"+id)
		if got["status"] == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bulk not done: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for path, want := range map[string]int{
		"/v1/operator/bulk":                              http.StatusOK,
		"/v1/operator/bulk?limit=2":                      http.StatusOK,
		"/v1/operator/bulk?limit=0":                      http.StatusBadRequest,
		"/v1/operator/bulk/" + uuid.NewString():          http.StatusNotFound,
		"/v1/operator/bulk/nope":                         http.StatusBadRequest,
		"/v1/operator/stuck":                             http.StatusOK,
		"/v1/operator/stuck?x=1":                         http.StatusBadRequest,
		"/v1/operator/dead-letters":                      http.StatusOK,
		"/v1/operator/dead-letters?status=x":             http.StatusBadRequest,
		"/v1/customers/" + uuid.NewString() + "/explain": http.StatusNotFound,
		"/v1/customers/nope/explain":                     http.StatusBadRequest,
	} {
		if code, body := get(t, srv, queryOperator, path); code != want {
			t.Errorf("GET %s: %d %v, want %d", path, code, body, want)
		}
	}
	_, stuck := get(t, srv, queryOperator, "/v1/operator/stuck")
	if len(stuck["items"].([]any)) == 0 {
		t.Error("two days later, nobody in flight is stuck")
	}
	for _, cid := range e.ids[:20] {
		if code, x := get(t, srv, queryOperator, "/v1/customers/"+cid.String()+"/explain"); code != http.StatusOK || x["diagnosis"] == "" {
			t.Errorf("explain %s: %d %v", cid, code, x)
		}
	}
	if code, body := post(t, srv, queryOperator, "/v1/operator/dead-letters/7/redrive", "", ""); code != http.StatusNotFound {
		t.Errorf("redrive without dead letters: %d %v", code, body)
	}
	if code, body := get(t, srv, queryShop, "/v1/operator/stuck"); code != http.StatusForbidden {
		t.Errorf("a client's stuck list: %d %v", code, body)
	}
}
