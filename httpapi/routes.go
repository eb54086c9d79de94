package httpapi

import (
	"fmt"
	"net/http"
	"slices"
)

// Route is one route the binary serves and who may call it.
type Route struct {
	Method string
	// Path is the net/http pattern's path: /v1/customers/{id}.
	Path string
	// Roles may call the route with their API key. A route without roles
	// is public, and Public says why it needs no key.
	Roles  []Role
	Public string
}

// Pattern is the route's net/http pattern, "GET /v1/customers/{id}".
func (r Route) Pattern() string { return r.Method + " " + r.Path }

// Allows reports whether role may call the route; every role may call a
// public one.
func (r Route) Allows(role Role) bool { return r.Public != "" || slices.Contains(r.Roles, role) }

var (
	clientOrOperator = []Role{RoleClient, RoleOperator}
	operatorOnly     = []Role{RoleOperator}
)

// Routes is the access policy, one rule per route served: the auth
// middleware asks it whether a route needs a key, and every handler is
// registered through it (see handle), so that a route without a rule
// cannot be served. A client reads only the customers it signed up; that
// finer rule is the query API's (queryScope).
var Routes = []Route{
	{Method: http.MethodPost, Path: "/v1/customers", Roles: clientOrOperator},
	{Method: http.MethodPost, Path: "/v1/customers/{id}/retry", Roles: operatorOnly},
	{Method: http.MethodPost, Path: "/v1/customers/{id}/skip", Roles: operatorOnly},
	{Method: http.MethodPost, Path: "/v1/customers/{id}/cancel", Roles: operatorOnly},
	{Method: http.MethodPost, Path: "/v1/customers/{id}/erasure", Roles: operatorOnly},
	{Method: http.MethodPost, Path: "/v1/webhooks/kyc", Public: "signed by the provider with HMAC-SHA256"},

	{Method: http.MethodGet, Path: "/v1/customers", Roles: clientOrOperator},
	{Method: http.MethodGet, Path: "/v1/customers/{id}", Roles: clientOrOperator},
	{Method: http.MethodGet, Path: "/v1/customers/{id}/events", Roles: operatorOnly},
	{Method: http.MethodGet, Path: "/v1/customers/{id}/state", Roles: clientOrOperator},
	{Method: http.MethodGet, Path: "/v1/customers/{id}/personal-data", Roles: operatorOnly},
	{Method: http.MethodGet, Path: "/v1/stats/funnel", Roles: operatorOnly},
	{Method: http.MethodGet, Path: "/v1/stats/providers", Roles: operatorOnly},
	{Method: http.MethodGet, Path: "/v1/operator/queue", Roles: operatorOnly},
	{Method: http.MethodGet, Path: "/v1/operator/queue/groups", Roles: operatorOnly},
	{Method: http.MethodPost, Path: "/v1/operator/bulk", Roles: operatorOnly},
	{Method: http.MethodGet, Path: "/v1/operator/bulk", Roles: operatorOnly},
	{Method: http.MethodGet, Path: "/v1/operator/bulk/{id}", Roles: operatorOnly},
	{Method: http.MethodGet, Path: "/v1/operator/stuck", Roles: operatorOnly},
	{Method: http.MethodGet, Path: "/v1/customers/{id}/explain", Roles: operatorOnly},
	{Method: http.MethodGet, Path: "/v1/operator/dead-letters", Roles: operatorOnly},
	{Method: http.MethodPost, Path: "/v1/operator/dead-letters/{id}/redrive", Roles: operatorOnly},
	{Method: http.MethodGet, Path: "/v1/providers", Roles: operatorOnly},

	{Method: http.MethodGet, Path: "/{$}", Public: "the console page; its API calls carry the operator's key"},
	{Method: http.MethodGet, Path: "/console/{file...}", Public: "the console's scripts and styles"},
	{Method: http.MethodGet, Path: "/openapi.yaml", Public: "the API's contract"},
	{Method: http.MethodGet, Path: "/healthz", Public: "probed by the orchestrator"},
	{Method: http.MethodGet, Path: "/readyz", Public: "probed by the orchestrator"},
	// cmd/onboard serves the metrics handler.
	{Method: http.MethodGet, Path: "/metrics", Public: "scraped by Prometheus"},
}

// routeIndex finds a request's rule by the same matching as the mux that
// serves it: a mux with one entry per rule, whose matched pattern names
// the rule.
var routeIndex = func() *ruleIndex {
	idx := &ruleIndex{mux: http.NewServeMux(), rules: map[string]Route{}}
	for _, r := range Routes {
		idx.mux.Handle(r.Pattern(), http.NotFoundHandler())
		idx.rules[r.Pattern()] = r
	}
	return idx
}()

type ruleIndex struct {
	mux   *http.ServeMux
	rules map[string]Route
}

// ruleOf returns the rule of the route r is for, and false for a request
// that no route serves.
func ruleOf(r *http.Request) (Route, bool) {
	_, pattern := routeIndex.mux.Handler(r)
	rule, ok := routeIndex.rules[pattern]
	return rule, ok
}

// Mux is where routes are registered; *http.ServeMux is one.
type Mux interface {
	Handle(pattern string, handler http.Handler)
}

// handle registers h at pattern behind the pattern's rule: a caller
// without a principal gets 401, one whose role the rule does not name
// 403. The auth middleware in front answers the same; this keeps a handler
// safe when it is served without it. It panics when Routes has no rule
// for pattern: a route is not served without one.
func handle(mux Mux, pattern string, h http.HandlerFunc) {
	rule, ok := routeIndex.rules[pattern]
	if !ok {
		panic(fmt.Sprintf("httpapi: route %q has no rule in Routes", pattern))
	}
	if rule.Public != "" {
		mux.Handle(pattern, h)
		return
	}
	mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := principalFrom(r.Context())
		switch {
		case !ok:
			unauthorized(w, "an API key is required (Authorization: Bearer <key>)")
		case !rule.Allows(p.Role):
			forbidden(w, r, p.Role)
		default:
			h(w, r)
		}
	}))
}

func unauthorized(w http.ResponseWriter, detail string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="onboard"`)
	writeProblem(w, Problem{Type: ProblemUnauthorized, Status: http.StatusUnauthorized, Detail: detail})
}

func forbidden(w http.ResponseWriter, r *http.Request, role Role) {
	writeProblem(w, Problem{Type: ProblemForbidden, Status: http.StatusForbidden,
		Detail: fmt.Sprintf("the %s role may not %s %s", role, r.Method, r.URL.Path)})
}
