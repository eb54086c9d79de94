package sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

// testAdminKey is the admin key of the simulators start starts, unless
// their config names another.
const testAdminKey = "sim-admin-key-for-tests"

func start(t *testing.T, cfg sim.Config) (*sim.Simulator, string) {
	t.Helper()
	if cfg.AdminKey == "" {
		cfg.AdminKey = testAdminKey
	}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/sim/", http.StripPrefix("/sim", s))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	return s, srv.URL + "/sim"
}

type reply struct {
	status   int
	body     []byte
	replayed bool
}

func do(t *testing.T, method, url, key, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set(providers.HeaderIdempotencyKey, key)
	}
	return send(t, req)
}

// admin calls an admin endpoint with the admin key of start.
func admin(t *testing.T, method, url, body string) reply {
	t.Helper()
	return adminWith(t, testAdminKey, method, url, body)
}

func adminWith(t *testing.T, adminKey, method, url, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if adminKey != "" {
		req.Header.Set("Authorization", "Bearer "+adminKey)
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) reply {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: res.StatusCode, body: b, replayed: res.Header.Get(providers.HeaderIdempotentReplayed) == "true"}
}

const account = `{"customer_id":"c1","plan":"pro"}`

func TestIdempotencySemantics(t *testing.T) {
	t.Run("same key and body replays the first answer byte for byte", func(t *testing.T) {
		s, base := start(t, sim.Config{})
		first := do(t, "POST", base+"/payments/accounts", "k1", account)
		second := do(t, "POST", base+"/payments/accounts", "k1", account)
		if first.status != 201 || second.status != 201 || !bytes.Equal(first.body, second.body) || first.replayed || !second.replayed {
			t.Fatalf("first %d %s, second %d %s (replayed %v)", first.status, first.body, second.status, second.body, second.replayed)
		}
		l := s.Ledger()
		if l.Customers["c1"].BillingAccounts != 1 || l.DuplicatesPrevented != 1 || l.DuplicatesPreventedByProvider["payments"] != 1 {
			t.Fatalf("ledger %+v", l)
		}
	})
	t.Run("same key and another body is 422", func(t *testing.T) {
		_, base := start(t, sim.Config{})
		do(t, "POST", base+"/payments/accounts", "k1", account)
		r := do(t, "POST", base+"/payments/accounts", "k1", `{"customer_id":"c1","plan":"basic"}`)
		if r.status != 422 || !strings.Contains(string(r.body), providers.CodeIdempotencyMismatch) {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("same key on another endpoint is 422", func(t *testing.T) {
		_, base := start(t, sim.Config{})
		do(t, "POST", base+"/payments/accounts", "k1", account)
		if r := do(t, "POST", base+"/payments/customers/c1/close", "k1", ""); r.status != 422 {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("same key in flight is 409", func(t *testing.T) {
		s, base := start(t, sim.Config{})
		release := s.Hold("payments")
		var wg sync.WaitGroup
		var first reply
		wg.Go(func() {
			req, _ := http.NewRequest("POST", base+"/payments/accounts", strings.NewReader(account))
			req.Header.Set(providers.HeaderIdempotencyKey, "k1")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			first.status = res.StatusCode
		})
		for s.Stats("payments").Held != 1 {
			time.Sleep(2 * time.Millisecond)
		}
		r := do(t, "POST", base+"/payments/accounts", "k1", account)
		release()
		wg.Wait()
		if r.status != 409 || !strings.Contains(string(r.body), providers.CodeIdempotencyInFlight) || first.status != 201 {
			t.Fatalf("second %d %s, first %d", r.status, r.body, first.status)
		}
	})
	t.Run("transient faults do not consume the key", func(t *testing.T) {
		s, base := start(t, sim.Config{Providers: map[string]sim.ProviderConfig{"payments": {Script: []sim.Fault{sim.Fault503}}}})
		if r := do(t, "POST", base+"/payments/accounts", "k1", account); r.status != 503 {
			t.Fatalf("got %d", r.status)
		}
		if r := do(t, "POST", base+"/payments/accounts", "k1", account); r.status != 201 || r.replayed {
			t.Fatalf("got %d (replayed %v)", r.status, r.replayed)
		}
		if n := s.Ledger().Customers["c1"].BillingAccounts; n != 1 {
			t.Fatalf("accounts %d", n)
		}
	})
	t.Run("a decline is stored under the key", func(t *testing.T) {
		_, base := start(t, sim.Config{Providers: map[string]sim.ProviderConfig{"payments": {Script: []sim.Fault{sim.Fault402}}}})
		first := do(t, "POST", base+"/payments/accounts", "k1", account)
		second := do(t, "POST", base+"/payments/accounts", "k1", account)
		if first.status != 402 || second.status != 402 || !second.replayed {
			t.Fatalf("got %d then %d", first.status, second.status)
		}
	})
}

// TestLedgerShowsDuplicates checks that effects taken twice for one
// customer — no key, or different keys — are counted as duplicates.
func TestLedgerShowsDuplicates(t *testing.T) {
	s, base := start(t, sim.Config{})
	do(t, "POST", base+"/payments/accounts", "", account)
	do(t, "POST", base+"/payments/accounts", "", account)
	do(t, "POST", base+"/provisioning/tenants", "a", `{"customer_id":"c1"}`)
	do(t, "POST", base+"/provisioning/tenants", "b", `{"customer_id":"c1"}`)
	do(t, "POST", base+"/email/messages", "m1", `{"customer_id":"c1","to":"x@y.example","template":"welcome"}`)
	do(t, "POST", base+"/email/messages", "m2", `{"customer_id":"c1","to":"s@y.example","template":"support"}`)
	do(t, "PUT", base+"/crm/accounts/c1", "p1", `{}`)
	do(t, "PUT", base+"/crm/accounts/c1", "p2", `{"stage":"active"}`)
	do(t, "POST", base+"/payments/accounts", "", `{"customer_id":"c2","plan":"pro"}`)

	r := do(t, "GET", base+"/ledger", "", "")
	var l sim.Ledger
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatal(err)
	}
	c1 := l.Customers["c1"]
	if c1.BillingAccounts != 2 || c1.Subscriptions != 2 || c1.Tenants != 2 || c1.CRMRecords != 1 || c1.CRMUpdates != 1 || c1.Emails != 2 {
		t.Fatalf("c1 %+v", c1)
	}
	// 1 extra account + 1 extra subscription + 1 extra tenant; the CRM
	// upsert and the two templates are not duplicates.
	if c1.Duplicates != 3 || l.Customers["c2"].Duplicates != 0 || l.DuplicateEffects != 3 {
		t.Fatalf("duplicates: c1 %d, c2 %d, total %d; want 3, 0, 3", c1.Duplicates, l.Customers["c2"].Duplicates, l.DuplicateEffects)
	}
	if l.Totals.BillingAccounts != 3 {
		t.Fatalf("totals %+v", l.Totals)
	}
	if got := s.Ledger(); got.DuplicateEffects != 3 {
		t.Fatalf("Ledger() disagrees with GET /ledger: %+v", got)
	}
}

func TestAdminConfig(t *testing.T) {
	s, base := start(t, sim.Config{Seed: 5})
	cfg := `{"seed":9,"providers":{"crm":{"latency":{"min":"0s","max":"0s"},"transient_rate":0.25,"lost_response_mode":"504","outage":{"down":false}}},
		"kyc":{"callback_url":"http://127.0.0.1:9/hook","approve":0.8,"reject":0.1,"silent":0.1,"delay":{"min":"10ms","max":"1s"}}}`
	if r := admin(t, "PUT", base+"/admin/config", cfg); r.status != 200 {
		t.Fatalf("PUT config: %d %s", r.status, r.body)
	}
	got := s.Config()
	if got.Seed != 9 || got.Providers["crm"].TransientRate != 0.25 || got.KYC.Delay.Max != sim.Duration(time.Second) || got.KYC.Silent != 0.1 {
		t.Fatalf("config %+v", got)
	}
	if r := admin(t, "PUT", base+"/admin/config/providers/email", `{"permanent_rate":0.5,"outage":{"until":"2030-01-01T00:00:00Z"}}`); r.status != 200 {
		t.Fatalf("PUT provider: %d %s", r.status, r.body)
	}
	r := admin(t, "GET", base+"/admin/config/providers/email", "")
	var p sim.ProviderConfig
	if err := json.Unmarshal(r.body, &p); err != nil || p.PermanentRate != 0.5 || p.Outage.Until.Year() != 2030 {
		t.Fatalf("GET provider: %s, %v", r.body, err)
	}
	for _, bad := range []struct{ path, body string }{
		{"/admin/config/providers/email", `{"transient_rate":2}`},
		{"/admin/config/providers/bank", `{}`},
		{"/admin/config/providers/crm", `{"script":["boom"]}`},
		{"/admin/config", `{"providers":{"crm":{"transient_kinds":["402"]}}}`},
		{"/admin/config", `{"kyc":{"approve":-1}}`},
	} {
		if r := admin(t, "PUT", base+bad.path, bad.body); r.status != 422 {
			t.Errorf("PUT %s %s: %d, want 422", bad.path, bad.body, r.status)
		}
	}
	if r := admin(t, "PUT", base+"/admin/config", `{"seed":`); r.status != 400 {
		t.Errorf("malformed JSON: %d, want 400", r.status)
	}
	if r := admin(t, "GET", base+"/admin/stats", ""); r.status != 200 {
		t.Errorf("stats: %d", r.status)
	}
}

// TestAdminConfigMerges: a PUT of /admin/config changes the fields it names
// and nothing else. A PUT naming only providers used to reset the KYC
// callback and secret, so that no verdict reached the pipeline any more.
func TestAdminConfigMerges(t *testing.T) {
	s, base := start(t, sim.Config{Seed: 7,
		Providers: map[string]sim.ProviderConfig{
			"crm":   {Latency: sim.Latency{Min: sim.Duration(time.Millisecond), Max: sim.Duration(2 * time.Millisecond)}, PermanentRate: 0.1},
			"email": {TransientRate: 0.3},
		},
		KYC: sim.KYCConfig{CallbackURL: "http://127.0.0.1:9/v1/webhooks/kyc", WebhookSecret: "whsec_merge_test", Approve: 0.5, Reject: 0.5},
	})
	if r := admin(t, "PUT", base+"/admin/config", `{"providers":{"crm":{"transient_rate":0.25},"payments":{"outage":{"down":true}}}}`); r.status != 200 {
		t.Fatalf("PUT config: %d %s", r.status, r.body)
	}
	got := s.Config()
	if got.KYC.CallbackURL != "http://127.0.0.1:9/v1/webhooks/kyc" || got.KYC.WebhookSecret != "whsec_merge_test" || got.KYC.Reject != 0.5 {
		t.Errorf("kyc %+v: a PUT naming only providers changed it", got.KYC)
	}
	if got.Seed != 7 {
		t.Errorf("seed %d, want 7 kept", got.Seed)
	}
	crm := got.Providers["crm"]
	if crm.TransientRate != 0.25 || crm.PermanentRate != 0.1 || crm.Latency.Max != sim.Duration(2*time.Millisecond) {
		t.Errorf("crm %+v: want transient_rate 0.25 set, permanent_rate and latency kept", crm)
	}
	if got.Providers["email"].TransientRate != 0.3 || !got.Providers["payments"].Outage.Down {
		t.Errorf("providers %+v: want email kept and payments down", got.Providers)
	}

	if r := admin(t, "PUT", base+"/admin/config", `{"kyc":{"delay":{"max":"1s"}}}`); r.status != 200 {
		t.Fatalf("PUT kyc: %d %s", r.status, r.body)
	}
	if k := s.Config().KYC; k.CallbackURL == "" || k.Delay.Max != sim.Duration(time.Second) || k.Approve != 0.5 {
		t.Errorf("kyc %+v: want delay.max set and the rest kept", k)
	}

	// A rejected PUT changes nothing, not even the fields that were valid.
	if r := admin(t, "PUT", base+"/admin/config", `{"seed":99,"providers":{"crm":{"transient_rate":3}}}`); r.status != 422 {
		t.Fatalf("invalid PUT: %d %s", r.status, r.body)
	}
	if r := admin(t, "PUT", base+"/admin/config", `{"providers":{"crm":{"transient_rate":"high"}}}`); r.status != 400 {
		t.Fatalf("ill-typed PUT: %d %s", r.status, r.body)
	}
	if got := s.Config(); got.Seed != 7 || got.Providers["crm"].TransientRate != 0.25 {
		t.Errorf("a rejected PUT changed the config: %+v", got)
	}

	// The per-provider endpoint replaces: what it does not name is reset.
	if r := admin(t, "PUT", base+"/admin/config/providers/crm", `{"transient_rate":0.5}`); r.status != 200 {
		t.Fatalf("PUT provider: %d %s", r.status, r.body)
	}
	if crm := s.Config().Providers["crm"]; crm.TransientRate != 0.5 || crm.PermanentRate != 0 || crm.Latency.Max != 0 {
		t.Errorf("crm %+v after PUT providers/crm: want only transient_rate", crm)
	}
	if s.Config().KYC.CallbackURL == "" {
		t.Error("PUT providers/crm reset the KYC callback")
	}
}

// TestAdminKey: the admin endpoints answer only to the admin key, and not
// at all without one; the provider endpoints and the ledger need none.
func TestAdminKey(t *testing.T) {
	routes := []struct{ method, path, body string }{
		{"GET", "/admin/config", ""},
		{"PUT", "/admin/config", `{"seed":3}`},
		{"GET", "/admin/config/providers/crm", ""},
		{"PUT", "/admin/config/providers/crm", `{}`},
		{"GET", "/admin/stats", ""},
		{"POST", "/admin/reset", ""},
	}
	_, keyed := start(t, sim.Config{AdminKey: "the-right-key"})
	s, err := sim.New(sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/sim/", http.StripPrefix("/sim", s))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); s.Close() })
	keyless := srv.URL + "/sim"

	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			for _, c := range []struct {
				name, base, key string
				want            int
			}{
				{"no key sent", keyed, "", http.StatusUnauthorized},
				{"wrong key", keyed, "the-wrong-key", http.StatusUnauthorized},
				{"a prefix of the key", keyed, "the-right", http.StatusUnauthorized},
				{"no key configured", keyless, "", http.StatusForbidden},
				{"no key configured, one sent", keyless, "anything", http.StatusForbidden},
			} {
				if r := adminWith(t, c.key, rt.method, c.base+rt.path, rt.body); r.status != c.want {
					t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.want)
				}
			}
			if r := adminWith(t, "the-right-key", rt.method, keyed+rt.path, rt.body); r.status >= 300 {
				t.Errorf("right key: %d %s", r.status, r.body)
			}
		})
	}
	if got := s.Config().Seed; got != 0 {
		t.Errorf("an unauthenticated PUT changed the seed to %d", got)
	}
	// The key is not part of the configuration the endpoint shows.
	if r := adminWith(t, "the-right-key", "GET", keyed+"/admin/config", ""); strings.Contains(string(r.body), "the-right-key") {
		t.Errorf("GET /admin/config shows the admin key: %s", r.body)
	}
	for _, base := range []string{keyed, keyless} {
		if r := do(t, "POST", base+"/payments/accounts", "k1", account); r.status != 201 {
			t.Errorf("provider endpoint without a key: %d %s", r.status, r.body)
		}
		if r := do(t, "GET", base+"/ledger", "", ""); r.status != 200 {
			t.Errorf("ledger without a key: %d %s", r.status, r.body)
		}
	}
}

// TestSeededReproducible runs the same sequence of requests against two
// simulators with the same seed and checks they inject the same faults.
func TestSeededReproducible(t *testing.T) {
	run := func(seed uint64) string {
		cfg := sim.Config{Seed: seed, Providers: map[string]sim.ProviderConfig{
			"email": {TransientRate: 0.3, TransientKinds: []sim.Fault{sim.Fault503, sim.Fault429}, PermanentRate: 0.2, LostResponseRate: 0.2, LostResponseMode: "504"},
		}}
		_, base := start(t, cfg)
		var b strings.Builder
		for i := range 60 {
			r := do(t, "POST", base+"/email/messages", "", `{"customer_id":"c`+string(rune('a'+i%26))+`","to":"x@y.example","template":"welcome"}`)
			b.WriteString(http.StatusText(r.status)[:3])
		}
		return b.String()
	}
	a, b, c := run(42), run(42), run(43)
	if a != b {
		t.Fatalf("same seed, different runs:\n%s\n%s", a, b)
	}
	if a == c {
		t.Fatalf("different seeds gave the same run %s", a)
	}
}

func TestReset(t *testing.T) {
	s, base := start(t, sim.Config{})
	do(t, "POST", base+"/payments/accounts", "k1", account)
	if r := admin(t, "POST", base+"/admin/reset", ""); r.status != 204 {
		t.Fatalf("reset: %d", r.status)
	}
	if l := s.Ledger(); len(l.Customers) != 0 {
		t.Fatalf("ledger after reset %+v", l)
	}
	if r := do(t, "POST", base+"/payments/accounts", "k1", account); r.replayed {
		t.Fatal("idempotency record survived the reset")
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	if _, err := sim.New(sim.Config{Providers: map[string]sim.ProviderConfig{"payments": {LostResponseRate: -1}}}); err == nil {
		t.Fatal("New accepted a negative rate")
	}
}

// TestDocExampleConfig keeps the example in doc.go valid.
func TestDocExampleConfig(t *testing.T) {
	_, base := start(t, sim.Config{})
	example := `{"seed": 42, "providers": {"payments": {"latency": {"min": "5ms", "max": "50ms"},
		"transient_rate": 0.1, "transient_kinds": ["503", "429", "reset", "timeout"], "retry_after": "1s",
		"permanent_rate": 0.02, "lost_response_rate": 0.05, "lost_response_mode": "reset",
		"outage": {"down": false, "until": "2026-11-25T15:00:00Z"}, "script": ["503", "lost", "ok"]}},
		"kyc": {"callback_url": "http://127.0.0.1:8080/v1/webhooks/kyc", "webhook_secret": "whsec_dev",
		"approve": 0.8, "reject": 0.15, "silent": 0.05, "delay": {"min": "100ms", "max": "2s"},
		"duplicate_rate": 0.1, "delivery_attempts": 5}}`
	if r := admin(t, "PUT", base+"/admin/config", example); r.status != 200 {
		t.Fatalf("PUT example: %d %s", r.status, r.body)
	}
}

// TestStatsCountMutatingRequests: reads (a check's status) count as
// requests but not as mutating ones.
func TestStatsCountMutatingRequests(t *testing.T) {
	s, base := start(t, sim.Config{Seed: 1})
	do(t, "POST", base+"/email/messages", "m1", `{"customer_id":"c1","to":"x@y.example","template":"welcome"}`)
	do(t, "GET", base+"/kyc/checks/chk_unknown", "", "")
	if st := s.Stats("email"); st.Requests != 1 || st.Mutating != 1 {
		t.Errorf("email stats %+v, want 1 request, 1 mutating", st)
	}
	if st := s.Stats("kyc"); st.Requests != 1 || st.Mutating != 0 {
		t.Errorf("kyc stats %+v, want 1 request, 0 mutating", st)
	}
}

// Verdicts delivered one after another share a connection to the
// receiver: each answer is read to its end, so the connection is kept.
func TestWebhooksKeepTheirConnection(t *testing.T) {
	var (
		mu     sync.Mutex
		opened int
	)
	receiver := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"c","state":"billing","version":3,"position":42}`))
	}))
	receiver.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			opened++
			mu.Unlock()
		}
	}
	receiver.Start()
	t.Cleanup(receiver.Close)

	s, base := start(t, sim.Config{KYC: sim.KYCConfig{CallbackURL: receiver.URL + "/v1/webhooks/kyc", WebhookSecret: "whsec_test"}})
	const checks = 20
	for i := range checks {
		r := do(t, "POST", base+"/kyc/checks", fmt.Sprintf("k%d", i), fmt.Sprintf(`{"customer_id":"c%d","email":"a@b.example","company":"Acme","country":"DE"}`, i))
		if r.status != http.StatusCreated && r.status != http.StatusAccepted {
			t.Fatalf("start check: %d %s", r.status, r.body)
		}
		// Delivered counts a verdict once its answer is read and closed,
		// and so its connection is back in the pool.
		for deadline := time.Now().Add(10 * time.Second); s.Ledger().Webhooks.Delivered <= i; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("verdict %d was not delivered", i)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if opened > 2 {
		t.Fatalf("%d verdicts delivered one at a time opened %d connections, want 1 (2 at most)", checks, opened)
	}
}
