package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// recordingMux keeps what the Register functions register.
type recordingMux map[string]http.Handler

func (m recordingMux) Handle(pattern string, h http.Handler) {
	if _, dup := m[pattern]; dup {
		panic("registered twice: " + pattern)
	}
	m[pattern] = h
}

// servedByHTTPAPI registers every route of the package, as the binary does
// (cmd/onboard adds GET /metrics). The handlers need no configuration to
// be registered.
func servedByHTTPAPI() recordingMux {
	mux := recordingMux{}
	(&CommandAPI{}).Register(mux)
	(&QueryAPI{}).Register(mux)
	(&OperatorAPI{}).Register(mux)
	RegisterConsole(mux)
	Health{}.Register(mux)
	RegisterOpenAPI(mux)
	return mux
}

// requestPath fills a pattern's wildcards with plausible values.
func requestPath(path string) string {
	return strings.NewReplacer("{id}", uuid.NewString(), "{file...}", "app.js", "{$}", "").Replace(path)
}

// TestEveryServedRouteHasARule: the routes registered are exactly the
// rules of Routes, and a handler registered without a principal in its
// request answers 401 (403 for a role its rule does not name): it never
// falls back to an anonymous caller.
func TestEveryServedRouteHasARule(t *testing.T) {
	served := servedByHTTPAPI()
	var got, want []string
	for p := range served {
		got = append(got, p)
	}
	got = append(got, "GET /metrics") // cmd/onboard's
	for _, r := range Routes {
		want = append(want, r.Pattern())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("served routes and Routes differ:\nserved %v\nrules  %v", got, want)
	}

	for _, rule := range Routes {
		h, ok := served[rule.Pattern()]
		if !ok || rule.Public != "" {
			continue
		}
		t.Run(rule.Pattern(), func(t *testing.T) {
			call := func(p *Principal) *httptest.ResponseRecorder {
				req := httptest.NewRequest(rule.Method, requestPath(rule.Path), strings.NewReader(`{"reason":"x"}`))
				req.Header.Set("Content-Type", "application/json")
				if p != nil {
					req = req.WithContext(withPrincipal(req.Context(), *p))
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec
			}
			if rec := call(nil); rec.Code != http.StatusUnauthorized || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("without a principal: %d %s, want 401", rec.Code, rec.Body)
			}
			for _, role := range []Role{RoleClient, RoleOperator, RoleProvider} {
				if rule.Allows(role) {
					continue
				}
				if rec := call(&Principal{Name: "x", Role: role}); rec.Code != http.StatusForbidden {
					t.Errorf("as %s: %d %s, want 403", role, rec.Code, rec.Body)
				}
			}
		})
	}
}

// TestAuthorizationOfEveryRoute walks every route with each role's key
// and with none, through the auth middleware and the route's rule as the
// binary composes them: no key gets 401 unless the route is public, a
// role the rule does not name 403, and every other call reaches the
// handler with its principal.
func TestAuthorizationOfEveryRoute(t *testing.T) {
	keys, err := ParseAPIKeys("client:shop:client-secret-0123456789,operator:ada:operator-secret-0123456789,provider:kyc:provider-secret-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[Role]string{RoleClient: "client-secret-0123456789", RoleOperator: "operator-secret-0123456789", RoleProvider: "provider-secret-0123456789"}
	mux := http.NewServeMux()
	for _, rule := range Routes {
		handle(mux, rule.Pattern(), func(w http.ResponseWriter, r *http.Request) {
			p, _ := principalFrom(r.Context())
			writeJSON(w, http.StatusOK, map[string]string{"reached": rule.Pattern(), "role": string(p.Role)})
		})
	}
	srv := httptest.NewServer(NewAuthenticator(AuthConfig{Keys: keys, RatePerSecond: 1000, Burst: 1000}).Middleware(mux))
	defer srv.Close()
	call := func(method, path string, role Role) (int, map[string]string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if role != "" {
			req.Header.Set("Authorization", "Bearer "+secrets[role])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}

	for _, rule := range Routes {
		for _, role := range []Role{"", RoleClient, RoleOperator, RoleProvider} {
			name := string(role)
			if name == "" {
				name = "none"
			}
			t.Run(rule.Pattern()+"/"+name, func(t *testing.T) {
				want := http.StatusOK
				switch {
				case rule.Public != "":
				case role == "":
					want = http.StatusUnauthorized
				case !rule.Allows(role):
					want = http.StatusForbidden
				}
				code, body := call(rule.Method, requestPath(rule.Path), role)
				if code != want {
					t.Fatalf("%d %v, want %d", code, body, want)
				}
				if want == http.StatusOK && (body["reached"] != rule.Pattern() || rule.Public == "" && body["role"] != string(role)) {
					t.Fatalf("reached %v, want %s as %q", body, rule.Pattern(), role)
				}
			})
		}
	}

	// A route nobody serves tells nothing without a key.
	if code, body := call(http.MethodGet, "/v1/secret", ""); code != http.StatusUnauthorized {
		t.Errorf("unknown route without a key: %d %v, want 401", code, body)
	}
	if code, body := call(http.MethodGet, "/v1/secret", RoleClient); code != http.StatusNotFound {
		t.Errorf("unknown route with a key: %d %v, want 404", code, body)
	}
}
