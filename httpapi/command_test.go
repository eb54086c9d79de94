package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/providers"
)

const (
	clientKey   = "client-secret-0123456789"
	client2Key  = "client2-secret-0123456789"
	operatorKey = "operator-secret-0123456789"
	providerKey = "provider-secret-0123456789"
	hookSecret  = "whsec_test_0123456789"
)

type commandEnv struct {
	t        *testing.T
	store    *postgres.Store
	commands *commands.Handler
	srv      *httptest.Server
}

func newCommandEnv(t *testing.T) *commandEnv {
	t.Helper()
	ctx := context.Background()
	store, err := postgres.Open(ctx, pgtest.NewMigratedDatabase(t), postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	commands, err := commands.New(commands.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.NewCommandAPI(httpapi.CommandConfig{Commands: commands, Store: store, WebhookSecret: hookSecret})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := httpapi.ParseAPIKeys("client:shop:" + clientKey + ",client:other:" + client2Key + ",operator:ada:" + operatorKey + ",provider:kyc:" + providerKey)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	auth := httpapi.NewAuthenticator(httpapi.AuthConfig{Keys: keys, RatePerSecond: 1000, Burst: 1000})
	srv := httptest.NewServer(httpapi.Validating(t, auth.Middleware(mux)))
	t.Cleanup(srv.Close)
	return &commandEnv{t: t, store: store, commands: commands, srv: srv}
}

type req struct {
	method, path, key, body, contentType string
	headers                              map[string]string
}

func (e *commandEnv) do(r req) (*http.Response, []byte) {
	e.t.Helper()
	hr, err := http.NewRequest(r.method, e.srv.URL+r.path, strings.NewReader(r.body))
	if err != nil {
		e.t.Fatal(err)
	}
	if r.key != "" {
		hr.Header.Set("Authorization", "Bearer "+r.key)
	}
	ct := r.contentType
	if ct == "" {
		ct = "application/json"
	}
	if ct != "-" {
		hr.Header.Set("Content-Type", ct)
	}
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// eventCount counts every committed event. It asks the table, not
// ReadAll: ReadAll holds back events until every older transaction of the
// cluster has ended, and other test packages run transactions meanwhile.
func (e *commandEnv) eventCount() int {
	e.t.Helper()
	var n int
	if err := e.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func signupBody(email string) string {
	return fmt.Sprintf(`{"email":%q,"company":"Acme GmbH","contact_name":"Grace Hopper","country":"DE","plan":"growth"}`, email)
}

func (e *commandEnv) signUp(email string) (id string) {
	e.t.Helper()
	resp, body := e.do(req{method: "POST", path: "/v1/customers", key: clientKey, body: signupBody(email), headers: map[string]string{"Idempotency-Key": "k-" + email}})
	if resp.StatusCode != http.StatusAccepted {
		e.t.Fatalf("signup: %d %s", resp.StatusCode, body)
	}
	var out struct{ ID string }
	_ = json.Unmarshal(body, &out)
	return out.ID
}

func problemType(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q for %d %s", ct, resp.StatusCode, body)
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Status != resp.StatusCode || p.Title == "" {
		t.Fatalf("bad problem body %s (%v)", body, err)
	}
	return strings.TrimPrefix(p.Type, "https://onboard.dev/problems/")
}

func TestSignupAcceptedAndReplayed(t *testing.T) {
	e := newCommandEnv(t)
	r := req{method: "POST", path: "/v1/customers", key: clientKey, body: signupBody("ada@example.com"), headers: map[string]string{"Idempotency-Key": "signup-1"}}
	resp1, body1 := e.do(r)
	if resp1.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp1.StatusCode, body1)
	}
	var out struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Position int64  `json:"position"`
	}
	// The signup requests verification in its own append.
	if err := json.Unmarshal(body1, &out); err != nil || out.State != "verifying" || out.Position <= 0 {
		t.Fatalf("body %s", body1)
	}
	resp2, body2 := e.do(r)
	if resp2.StatusCode != http.StatusAccepted || !bytes.Equal(body1, body2) || resp2.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s, want byte-identical %s", resp2.StatusCode, body2, body1)
	}
	if n := e.eventCount(); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
	// The events record who signed up and under which key.
	id := uuid.MustParse(out.ID)
	envs, err := e.store.ReadStream(context.Background(), commands.StreamID(id), 1)
	if err != nil || len(envs) != 2 || envs[0].Type != domain.TypeSignedUp || envs[1].Type != domain.TypeStepRequested {
		t.Fatalf("events %+v (%v)", envs, err)
	}
	for _, env := range envs {
		if env.Metadata.Actor != "client:shop" || env.Metadata.IdempotencyKey != "signup-1" {
			t.Fatalf("metadata %+v", env.Metadata)
		}
	}
	// Same email, new key: 409 naming the existing customer.
	resp3, body3 := e.do(req{method: "POST", path: "/v1/customers", key: clientKey, body: signupBody("ADA@example.com"), headers: map[string]string{"Idempotency-Key": "signup-2"}})
	if resp3.StatusCode != http.StatusConflict || problemType(t, resp3, body3) != "email-taken" || !strings.Contains(string(body3), out.ID) {
		t.Fatalf("duplicate email: %d %s", resp3.StatusCode, body3)
	}
}

func TestConcurrentSignupsWithOneKey(t *testing.T) {
	e := newCommandEnv(t)
	var wg sync.WaitGroup
	statuses := make(chan int, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := e.do(req{method: "POST", path: "/v1/customers", key: clientKey, body: signupBody("race@example.com"), headers: map[string]string{"Idempotency-Key": "same-key"}})
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusAccepted && s != http.StatusConflict {
			t.Errorf("status %d, want 202 or 409", s)
		}
	}
	if n := e.eventCount(); n != 2 {
		t.Fatalf("%d events, want exactly one customer's two", n)
	}
}

func TestBadRequestsAppendNothing(t *testing.T) {
	e := newCommandEnv(t)
	existing := e.signUp("first@example.com")
	// Reuse of a key with another body needs a first use.
	e.do(req{method: "POST", path: "/v1/customers", key: clientKey, body: signupBody("keyed@example.com"), headers: map[string]string{"Idempotency-Key": "used-key"}})
	before := e.eventCount()
	idem := func(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }
	valid := signupBody("new@example.com")
	tests := []struct {
		name    string
		r       req
		status  int
		problem string
	}{
		{"oversize body", req{method: "POST", path: "/v1/customers", key: clientKey, body: `{"email":"` + strings.Repeat("a", 2<<20) + `"}`, headers: idem("a1")}, 413, "payload-too-large"},
		{"wrong content type", req{method: "POST", path: "/v1/customers", key: clientKey, body: valid, contentType: "text/plain", headers: idem("a2")}, 415, "unsupported-media-type"},
		{"no content type", req{method: "POST", path: "/v1/customers", key: clientKey, body: valid, contentType: "-", headers: idem("a3")}, 415, "unsupported-media-type"},
		{"malformed json", req{method: "POST", path: "/v1/customers", key: clientKey, body: `{"email":`, headers: idem("a4")}, 400, "malformed-request"},
		{"duplicate keys", req{method: "POST", path: "/v1/customers", key: clientKey, body: `{"email":"a@example.com","email":"b@example.com","company":"C","contact_name":"N","country":"DE","plan":"growth"}`, headers: idem("a5")}, 400, "malformed-request"},
		{"unknown field", req{method: "POST", path: "/v1/customers", key: clientKey, body: `{"email":"u@example.com","company":"C","contact_name":"N","country":"DE","plan":"growth","admin":true}`, headers: idem("a6")}, 400, "malformed-request"},
		{"trailing data", req{method: "POST", path: "/v1/customers", key: clientKey, body: valid + `{}`, headers: idem("a7")}, 400, "malformed-request"},
		{"empty body", req{method: "POST", path: "/v1/customers", key: clientKey, body: ``, headers: idem("a8")}, 400, "malformed-request"},
		{"missing field", req{method: "POST", path: "/v1/customers", key: clientKey, body: `{"email":"m@example.com","company":"C","contact_name":"N","country":"DE"}`, headers: idem("a9")}, 422, "validation"},
		{"wrong type", req{method: "POST", path: "/v1/customers", key: clientKey, body: `{"email":42,"company":"C","contact_name":"N","country":"DE","plan":"growth"}`, headers: idem("a10")}, 400, "malformed-request"},
		{"array body", req{method: "POST", path: "/v1/customers", key: clientKey, body: `[]`, headers: idem("a11")}, 400, "malformed-request"},
		{"bad email", req{method: "POST", path: "/v1/customers", key: clientKey, body: signupBody("not-an-email"), headers: idem("a12")}, 422, "validation"},
		{"bad country", req{method: "POST", path: "/v1/customers", key: clientKey, body: `{"email":"c@example.com","company":"C","contact_name":"N","country":"ZZ","plan":"growth"}`, headers: idem("a13")}, 422, "validation"},
		{"bad plan", req{method: "POST", path: "/v1/customers", key: clientKey, body: `{"email":"p@example.com","company":"C","contact_name":"N","country":"DE","plan":"gold"}`, headers: idem("a14")}, 422, "validation"},
		{"over-long company", req{method: "POST", path: "/v1/customers", key: clientKey, body: `{"email":"l@example.com","company":"` + strings.Repeat("x", 201) + `","contact_name":"N","country":"DE","plan":"growth"}`, headers: idem("a15")}, 422, "validation"},
		{"invalid utf-8", req{method: "POST", path: "/v1/customers", key: clientKey, body: "{\"email\":\"u\xff@example.com\",\"company\":\"C\",\"contact_name\":\"N\",\"country\":\"DE\",\"plan\":\"growth\"}", headers: idem("a16")}, 400, "malformed-request"},
		{"missing idempotency key", req{method: "POST", path: "/v1/customers", key: clientKey, body: valid}, 400, "idempotency-key"},
		{"oversized idempotency key", req{method: "POST", path: "/v1/customers", key: clientKey, body: valid, headers: idem(strings.Repeat("k", 256))}, 400, "idempotency-key"},
		{"idempotency key with spaces", req{method: "POST", path: "/v1/customers", key: clientKey, body: valid, headers: idem("a b")}, 400, "idempotency-key"},
		{"reused idempotency key", req{method: "POST", path: "/v1/customers", key: clientKey, body: signupBody("other@example.com"), headers: idem("used-key")}, 422, "idempotency-key-reused"},
		{"duplicate email", req{method: "POST", path: "/v1/customers", key: clientKey, body: signupBody("first@example.com"), headers: idem("a17")}, 409, "email-taken"},
		{"no api key", req{method: "POST", path: "/v1/customers", body: valid, headers: idem("a18")}, 401, "unauthorized"},
		{"unknown api key", req{method: "POST", path: "/v1/customers", key: "nope-nope-nope-nope", body: valid, headers: idem("a19")}, 401, "unauthorized"},
		{"provider key cannot sign up", req{method: "POST", path: "/v1/customers", key: providerKey, body: valid, headers: idem("a20")}, 403, "forbidden"},
		{"client cannot cancel", req{method: "POST", path: "/v1/customers/" + existing + "/cancel", key: clientKey, body: `{"reason":"x"}`}, 403, "forbidden"},
		{"unknown customer", req{method: "POST", path: "/v1/customers/" + uuid.NewString() + "/cancel", key: operatorKey, body: `{"reason":"x"}`}, 404, "not-found"},
		{"malformed customer id", req{method: "POST", path: "/v1/customers/not-a-uuid/cancel", key: operatorKey, body: `{"reason":"x"}`}, 400, "malformed-request"},
		{"stale If-Match", req{method: "POST", path: "/v1/customers/" + existing + "/cancel", key: operatorKey, body: `{"reason":"x"}`, headers: map[string]string{"If-Match": `"7"`}}, 412, "precondition-failed"},
		{"malformed If-Match", req{method: "POST", path: "/v1/customers/" + existing + "/cancel", key: operatorKey, body: `{"reason":"x"}`, headers: map[string]string{"If-Match": "abc"}}, 400, "malformed-request"},
		{"retry in the wrong state", req{method: "POST", path: "/v1/customers/" + existing + "/retry", key: operatorKey, body: `{}`}, 409, "invalid-state"},
		{"cancel without reason", req{method: "POST", path: "/v1/customers/" + existing + "/cancel", key: operatorKey, body: `{}`}, 422, "validation"},
		{"bad webhook signature", req{method: "POST", path: "/v1/webhooks/kyc", body: `{"id":"evt_1","type":"check.completed","check_id":"c","customer_id":"` + existing + `","status":"approved"}`, headers: map[string]string{providers.HeaderWebhookSignature: "t=1,v1=00"}}, 401, "unauthorized"},
		{"stale webhook", req{method: "POST", path: "/v1/webhooks/kyc", body: `{"id":"evt_2","type":"check.completed","check_id":"c","customer_id":"` + existing + `","status":"approved"}`,
			headers: map[string]string{providers.HeaderWebhookSignature: providers.SignWebhook(hookSecret, time.Now().Add(-time.Hour), []byte(`{"id":"evt_2","type":"check.completed","check_id":"c","customer_id":"`+existing+`","status":"approved"}`))}}, 401, "unauthorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do(tc.r)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := problemType(t, resp, body); got != tc.problem {
				t.Fatalf("problem %q, want %q: %s", got, tc.problem, body)
			}
		})
	}
	if after := e.eventCount(); after != before {
		t.Fatalf("bad requests appended %d events", after-before)
	}
}

func TestOperatorCommandsAndWebhook(t *testing.T) {
	e := newCommandEnv(t)
	ctx := context.Background()
	id := uuid.MustParse(e.signUp("kyc@example.com"))
	meta := commands.Meta{Actor: "system:verification"}
	if _, err := e.commands.Execute(ctx, id, nil, meta, func(c *domain.Customer) error {
		return c.RecordCheckStarted(1, "chk_1")
	}); err != nil {
		t.Fatal(err)
	}
	// One creation time for every delivery: a provider's replay of an
	// event sends the same body (a second boundary between two calls
	// made the replay another request, refused with 422).
	created := time.Now().Unix()
	hook := func(eventID, status string) req {
		body := fmt.Sprintf(`{"id":%q,"type":"check.completed","created":%d,"check_id":"chk_1","customer_id":%q,"status":%q}`, eventID, created, id, status)
		return req{method: "POST", path: "/v1/webhooks/kyc", body: body, headers: map[string]string{providers.HeaderWebhookSignature: providers.SignWebhook(hookSecret, time.Now(), []byte(body))}}
	}
	resp, body := e.do(hook("evt_ok", "approved"))
	// Approved, and billing requested in the same append.
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"state":"provisioning"`) {
		t.Fatalf("webhook: %d %s, want 200 provisioning", resp.StatusCode, body)
	}
	n := e.eventCount()
	// A replayed webhook is acknowledged and changes nothing.
	if resp, body := e.do(hook("evt_ok", "approved")); resp.StatusCode != http.StatusOK {
		t.Fatalf("replayed webhook: %d %s", resp.StatusCode, body)
	}
	if e.eventCount() != n {
		t.Fatalf("replayed webhook appended events")
	}
	// A late, different verdict is recorded as ignored.
	if resp, body := e.do(hook("evt_late", "rejected")); resp.StatusCode != http.StatusOK {
		t.Fatalf("late webhook: %d %s", resp.StatusCode, body)
	}
	c, err := e.commands.Load(ctx, id)
	if err != nil || c.State() != domain.StateProvisioning || c.Version() != n+1 {
		t.Fatalf("after late webhook: state %v version %d (%v)", c.State(), c.Version(), err)
	}

	// Operator cancel with the right If-Match.
	resp, body = e.do(req{method: "POST", path: "/v1/customers/" + id.String() + "/cancel", key: operatorKey, body: `{"reason":"customer asked"}`, headers: map[string]string{"If-Match": fmt.Sprint(c.Version())}})
	// Billing is in flight: cancelling, until compensation is done.
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(body), `"state":"cancelling"`) {
		t.Fatalf("cancel: %d %s", resp.StatusCode, body)
	}
	envs, _ := e.store.ReadStream(ctx, commands.StreamID(id), 1)
	if last := envs[len(envs)-1]; last.Type != domain.TypeCancellationRequested || last.Metadata.Actor != "operator:ada" || !strings.Contains(string(last.Data), "operator:ada") {
		t.Fatalf("cancel event %s %s by %q", last.Type, last.Data, last.Metadata.Actor)
	}
	// Cancelling again names the state.
	resp, body = e.do(req{method: "POST", path: "/v1/customers/" + id.String() + "/cancel", key: operatorKey, body: `{"reason":"again"}`})
	if resp.StatusCode != http.StatusConflict || problemType(t, resp, body) != "invalid-state" || !strings.Contains(string(body), `"state":"cancelling"`) {
		t.Fatalf("second cancel: %d %s", resp.StatusCode, body)
	}
}

// TestWebhookWaitsForItsCheck: a verdict that overtakes the recording of
// its check waits for it instead of bouncing; one whose check never comes
// is told to retry (409) after a bounded wait.
func TestWebhookWaitsForItsCheck(t *testing.T) {
	e := newCommandEnv(t)
	ctx := context.Background()
	id := uuid.MustParse(e.signUp("early@example.com"))
	meta := commands.Meta{Actor: "system:verification"}
	hook := func(eventID, checkID string) req {
		body := fmt.Sprintf(`{"id":%q,"type":"check.completed","created":%d,"check_id":%q,"customer_id":%q,"status":"approved"}`, eventID, time.Now().Unix(), checkID, id)
		return req{method: "POST", path: "/v1/webhooks/kyc", body: body, headers: map[string]string{providers.HeaderWebhookSignature: providers.SignWebhook(hookSecret, time.Now(), []byte(body))}}
	}
	recorded := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, err := e.commands.Execute(ctx, id, nil, meta, func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk_early") })
		recorded <- err
	}()
	resp, body := e.do(hook("evt_early", "chk_early"))
	if err := <-recorded; err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"state":"provisioning"`) {
		t.Fatalf("early webhook: %d %s, want 200 provisioning once its check was recorded", resp.StatusCode, body)
	}

	id = uuid.MustParse(e.signUp("never@example.com"))
	start := time.Now()
	resp, body = e.do(hook("evt_never", "chk_never"))
	if resp.StatusCode != http.StatusConflict || time.Since(start) < time.Second {
		t.Fatalf("webhook for a check never recorded: %d %s after %v, want 409 after waiting", resp.StatusCode, body, time.Since(start))
	}
}

// TestRepeatedCommandRefusedByItsOwnEffectIsReplayed: a repeated cancel
// finds the customer already cancelled; with the same Idempotency-Key it
// gets the first response replayed, not the refusal, and with other
// content under that key a 422.
func TestRepeatedCommandRefusedByItsOwnEffectIsReplayed(t *testing.T) {
	e := newCommandEnv(t)
	id := e.signUp("repeat@example.com")
	cancel := func(reason string) req {
		return req{method: "POST", path: "/v1/customers/" + id + "/cancel", key: operatorKey, body: fmt.Sprintf(`{"reason":%q}`, reason),
			headers: map[string]string{"Idempotency-Key": "cancel-1"}}
	}
	resp1, body1 := e.do(cancel("customer asked"))
	if resp1.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", resp1.StatusCode, body1)
	}
	n := e.eventCount()
	resp2, body2 := e.do(cancel("customer asked"))
	if resp2.StatusCode != http.StatusAccepted || !bytes.Equal(body1, body2) || resp2.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeated cancel: %d %s, want the replay of %s", resp2.StatusCode, body2, body1)
	}
	if resp3, body3 := e.do(cancel("another reason")); resp3.StatusCode != http.StatusUnprocessableEntity || problemType(t, resp3, body3) != "idempotency-key-reused" {
		t.Fatalf("other content under the key: %d %s, want 422", resp3.StatusCode, body3)
	}
	if e.eventCount() != n {
		t.Fatal("a repeated cancel appended events")
	}
}

// TestOperatorCommandWithoutPrincipalIsRefused: the command API served
// without the auth middleware (as a test or a careless wiring would) does
// not run an operator command for an anonymous operator: 401, and nothing
// appended.
func TestOperatorCommandWithoutPrincipalIsRefused(t *testing.T) {
	e := newCommandEnv(t)
	id := e.signUp("anonymous@example.com")
	api, err := httpapi.NewCommandAPI(httpapi.CommandConfig{Commands: e.commands, Store: e.store, WebhookSecret: hookSecret})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	raw := httptest.NewServer(mux)
	defer raw.Close()
	before := e.eventCount()
	for _, action := range []string{"cancel", "retry", "skip"} {
		hr, _ := http.NewRequest(http.MethodPost, raw.URL+"/v1/customers/"+id+"/"+action, strings.NewReader(`{"reason":"nobody asked"}`))
		hr.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || problemType(t, resp, body) != "unauthorized" {
			t.Errorf("%s without a principal: %d %s, want 401", action, resp.StatusCode, body)
		}
	}
	if n := e.eventCount(); n != before {
		t.Fatalf("an anonymous operator command appended %d events", n-before)
	}
}

// TestEmailTakenRevealsOnlyTheCallersCustomer: emails are unique across
// clients, but the 409 names the holder's id only to the client that
// signed it up (and to operators): another client learns that the email
// is taken, never whose it is.
func TestEmailTakenRevealsOnlyTheCallersCustomer(t *testing.T) {
	e := newCommandEnv(t)
	id := e.signUp("held@example.com") // by client:shop
	for _, tt := range []struct {
		name, key string
		reveal    bool
	}{
		{"the same client", clientKey, true},
		{"another client", client2Key, false},
		{"an operator", operatorKey, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(req{method: "POST", path: "/v1/customers", key: tt.key, body: signupBody("HELD@example.com"),
				headers: map[string]string{"Idempotency-Key": "again-" + strings.ReplaceAll(tt.name, " ", "-")}})
			if resp.StatusCode != http.StatusConflict || problemType(t, resp, body) != "email-taken" {
				t.Fatalf("%d %s, want 409 email-taken", resp.StatusCode, body)
			}
			var p map[string]any
			_ = json.Unmarshal(body, &p)
			_, has := p["existing_id"]
			if tt.reveal && p["existing_id"] != id {
				t.Fatalf("%s, want existing_id %s", body, id)
			}
			if !tt.reveal && (has || strings.Contains(string(body), id)) {
				t.Fatalf("%s reveals another client's customer %s", body, id)
			}
		})
	}
}
