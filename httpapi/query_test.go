package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/projections"
	"github.com/onboard/onboard/projections/projectiontest"
)

const (
	queryShop     = "client:shop"
	queryMarket   = "client:market"
	queryOperator = "operator:ada"
)

type queryEnv struct {
	store *postgres.Store
	proj  *projections.Projections
	ids   []uuid.UUID
}

func newQueryEnv(t testing.TB, customers int) *queryEnv {
	t.Helper()
	ctx := context.Background()
	dbURL := pgtest.NewMigratedDatabase(t)
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 12 // projectors hold listening connections
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := postgres.New(pool, postgres.Config{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	p, err := projections.New(projections.Config{Pool: pool, Source: store, RetryDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := &queryEnv{store: store, proj: p}
	if customers > 0 {
		e.ids, err = projectiontest.Seed(ctx, store, projectiontest.Config{Customers: customers, Seed: 11, Actors: []string{queryShop, queryMarket}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// run starts the projectors until the test ends.
func (e *queryEnv) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.proj.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// catchUp waits until the customer summary has applied every stored
// event. It does not wait for Head: the safe horizon is cluster-wide, so a
// long transaction of another test package holds Head back.
func (e *queryEnv) catchUp(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var last eventstore.Cursor
	err := e.store.Pool().QueryRow(ctx, `SELECT transaction_id, position FROM events
		ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&last.TransactionID, &last.Position)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.proj.WaitFor(ctx, projections.Customers, last); err != nil {
		t.Fatal(err)
	}
}

// server serves the query API; the X-Test-Principal header ("role:name")
// stands in for the auth middleware.
func (e *queryEnv) server(t *testing.T, wait time.Duration) *httptest.Server {
	mux := http.NewServeMux()
	NewQueryAPI(QueryConfig{Reads: e.proj, Events: e.store, WaitTimeout: wait}).Register(mux)
	// Every response is also checked against openapi.yaml.
	srv := httptest.NewServer(Validating(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.Header.Get("X-Test-Principal"); p != "" {
			role, name, _ := strings.Cut(p, ":")
			r = r.WithContext(withPrincipal(r.Context(), Principal{Name: name, Role: Role(role)}))
		}
		mux.ServeHTTP(w, r)
	})))
	t.Cleanup(srv.Close)
	return srv
}

// get fetches path as principal ("" for none) and decodes the JSON body.
func get(t *testing.T, srv *httptest.Server, principal, path string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if principal != "" {
		req.Header.Set("X-Test-Principal", principal)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("GET %s: %d, body %q is not a JSON object", path, resp.StatusCode, raw)
	}
	ct := resp.Header.Get("Content-Type")
	if resp.StatusCode >= 400 && ct != "application/problem+json" || resp.StatusCode < 400 && ct != "application/json" {
		t.Errorf("GET %s: %d with Content-Type %q", path, resp.StatusCode, ct)
	}
	return resp.StatusCode, body
}

func problemSuffix(body map[string]any) string {
	typ, _ := body["type"].(string)
	return typ[strings.LastIndex(typ, "/")+1:]
}

func TestQueryCustomer(t *testing.T) {
	e := newQueryEnv(t, 40)
	e.run(t)
	e.catchUp(t)
	srv := e.server(t, time.Second)
	shopID, marketID := e.ids[0], e.ids[1] // Seed signs up round robin

	code, body := get(t, srv, queryOperator, "/v1/customers/"+shopID.String())
	if code != http.StatusOK {
		t.Fatalf("GET customer = %d %v", code, body)
	}
	for _, k := range []string{"id", "email", "company", "state", "step", "version", "created_by", "created_at", "updated_at"} {
		if _, ok := body[k]; !ok {
			t.Errorf("customer JSON lacks %q: %v", k, body)
		}
	}
	if body["id"] != shopID.String() || body["created_by"] != queryShop {
		t.Errorf("customer = %v", body)
	}

	tests := []struct {
		name, principal, path string
		want                  int
		problem               string
	}{
		{"operator", "operator:ada", "/v1/customers/" + marketID.String(), 200, ""},
		{"own client", queryShop, "/v1/customers/" + shopID.String(), 200, ""},
		{"other client's customer", queryShop, "/v1/customers/" + marketID.String(), 404, "not-found"},
		{"unknown id", queryOperator, "/v1/customers/" + uuid.NewString(), 404, "not-found"},
		{"malformed id", queryOperator, "/v1/customers/not-a-uuid", 400, "malformed-request"},
		{"braced id", queryOperator, "/v1/customers/{" + shopID.String() + "}", 400, "malformed-request"},
		{"timeline of unknown", queryOperator, "/v1/customers/" + uuid.NewString() + "/events", 404, "not-found"},
		{"timeline for a client", queryShop, "/v1/customers/" + shopID.String() + "/events", 403, "forbidden"},
		{"no principal", "", "/v1/customers/" + shopID.String(), 401, "unauthorized"},
		{"list without principal", "", "/v1/customers", 401, "unauthorized"},
		{"funnel without principal", "", "/v1/stats/funnel", 401, "unauthorized"},
		{"timeline malformed id", queryOperator, "/v1/customers/x/events", 400, "malformed-request"},
		{"state of unknown", queryOperator, "/v1/customers/" + uuid.NewString() + "/state", 404, "not-found"},
		{"state of other client's", queryShop, "/v1/customers/" + marketID.String() + "/state?version=1", 404, "not-found"},
		{"state bad timestamp", queryOperator, "/v1/customers/" + shopID.String() + "/state?at=yesterday", 400, "malformed-request"},
		{"state bad version", queryOperator, "/v1/customers/" + shopID.String() + "/state?version=0", 400, "malformed-request"},
		{"state both", queryOperator, "/v1/customers/" + shopID.String() + "/state?version=1&at=2026-01-01T00:00:00Z", 400, "malformed-request"},
		{"state before signup", queryOperator, "/v1/customers/" + shopID.String() + "/state?at=2000-01-01T00:00:00Z", 404, "not-found"},
		{"state past the end", queryOperator, "/v1/customers/" + shopID.String() + "/state?version=100000", 404, "not-found"},
		{"funnel for a client", queryShop, "/v1/stats/funnel", 403, "forbidden"},
		{"queue for a client", queryShop, "/v1/operator/queue", 403, "forbidden"},
		{"bad funnel window", queryOperator, "/v1/stats/funnel?window=soon", 400, "malformed-request"},
		{"bad min_position", queryOperator, "/v1/customers/" + shopID.String() + "?min_position=abc", 400, "malformed-request"},
		{"bad min_position cursor", queryOperator, "/v1/customers/" + shopID.String() + "?min_position=1/x", 400, "malformed-request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, srv, tt.principal, tt.path)
			if code != tt.want {
				t.Fatalf("GET %s = %d %v, want %d", tt.path, code, body, tt.want)
			}
			if tt.problem != "" && (problemSuffix(body) != tt.problem || body["status"] != float64(tt.want)) {
				t.Errorf("problem = %v, want type %s", body, tt.problem)
			}
		})
	}
}

func TestQueryListPaginationAndFilters(t *testing.T) {
	e := newQueryEnv(t, 60)
	e.run(t)
	e.catchUp(t)
	srv := e.server(t, time.Second)

	// Page through everything: each customer once, newest first.
	list := func(principal, query string) []map[string]any {
		t.Helper()
		var all []map[string]any
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("pagination does not end")
			}
			q := query + "&limit=7"
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			code, body := get(t, srv, principal, "/v1/customers?"+q)
			if code != http.StatusOK {
				t.Fatalf("list %s = %d %v", q, code, body)
			}
			items, _ := body["items"].([]any)
			if len(items) > 7 {
				t.Fatalf("page of %d items, limit 7", len(items))
			}
			for _, it := range items {
				all = append(all, it.(map[string]any))
			}
			next, _ := body["next_cursor"].(string)
			if next == "" {
				return all
			}
			cursor = next
		}
	}
	all := list(queryOperator, "")
	if len(all) != len(e.ids) {
		t.Fatalf("listed %d customers, seeded %d", len(all), len(e.ids))
	}
	seen := map[string]bool{}
	for i, c := range all {
		id := c["id"].(string)
		if seen[id] {
			t.Fatalf("customer %s listed twice", id)
		}
		seen[id] = true
		if i > 0 && all[i-1]["id"].(string) <= id {
			t.Errorf("not newest first at %d", i)
		}
	}

	// Filters agree with the unfiltered list.
	count := func(pred func(map[string]any) bool) int {
		n := 0
		for _, c := range all {
			if pred(c) {
				n++
			}
		}
		return n
	}
	for _, s := range domain.States() {
		got := list(queryOperator, "state="+string(s))
		if want := count(func(c map[string]any) bool { return c["state"] == string(s) }); len(got) != want {
			t.Errorf("state=%s: %d customers, want %d", s, len(got), want)
		}
	}
	got := list(queryOperator, "state=provisioning&step=tenant")
	if want := count(func(c map[string]any) bool { return c["state"] == "provisioning" && c["step"] == "tenant" }); len(got) != want {
		t.Errorf("state and step: %d, want %d", len(got), want)
	}
	company := all[3]["company"].(string)
	got = list(queryOperator, "q="+url.QueryEscape(strings.ToUpper(company)))
	if len(got) != 1 || got[0]["company"] != company {
		t.Errorf("q=%s found %v", company, got)
	}
	if got := list(queryOperator, "q=%25"); len(got) != 0 { // a literal %, not a wildcard
		t.Errorf("q=%% found %d", len(got))
	}
	shop := list(queryShop, "")
	if want := count(func(c map[string]any) bool { return c["created_by"] == queryShop }); len(shop) != want || want == 0 {
		t.Errorf("client sees %d customers, signed up %d", len(shop), want)
	}

	for _, tt := range []struct {
		query string
		want  int
		items int
	}{
		{"limit=1", 200, 1},
		{"limit=1000", 200, len(e.ids)},
		{"state=&step=&q=&limit=200", 200, len(e.ids)},
		{"cursor=garbage", 400, 0},
		{"cursor=" + encodeQueryCursor(uuid.Nil), 400, 0},
		{"state=flying", 400, 0},
		{"step=teleport", 400, 0},
		{"q=" + strings.Repeat("x", 201), 400, 0},
	} {
		code, body := get(t, srv, queryOperator, "/v1/customers?"+tt.query)
		if code != tt.want {
			t.Errorf("list %s = %d %v, want %d", tt.query, code, body, tt.want)
			continue
		}
		if items, _ := body["items"].([]any); code == 200 && len(items) != tt.items {
			t.Errorf("list %s: %d items, want %d", tt.query, len(items), tt.items)
		}
	}
}

// TestQueryParametersAreNeverSilentlyIgnored: a parameter that is out of
// range, empty where a value is needed, unknown to the route or given twice
// answers 400 with the parameter named in the problem's errors, rather
// than a fallback (limit=0 used to return one item, ?sate=paused every
// customer).
func TestQueryParametersAreNeverSilentlyIgnored(t *testing.T) {
	e := newQueryEnv(t, 3)
	e.run(t)
	e.catchUp(t)
	srv := e.server(t, time.Second)
	id := e.ids[0].String()
	for _, tt := range []struct{ path, param string }{
		{"/v1/customers?limit=0", "limit"},
		{"/v1/customers?limit=-5", "limit"},
		{"/v1/customers?limit=ten", "limit"},
		{"/v1/customers?limit=2.5", "limit"},
		{"/v1/customers?limit=", "limit"},
		{"/v1/customers?limit=5&limit=6", "limit"},
		{"/v1/customers?sate=paused", "sate"},
		{"/v1/customers?state=paused&state=active", "state"},
		{"/v1/customers?cursor=", "cursor"},
		{"/v1/customers?min_position=", "min_position"},
		{"/v1/customers?min_position=-1", "min_position"},
		{"/v1/customers?min_position=5/-1", "min_position"},
		{"/v1/operator/queue?limit=0", "limit"},
		{"/v1/operator/queue?limit=many", "limit"},
		{"/v1/operator/queue?state=paused", "state"},
		{"/v1/customers/" + id + "?limit=5", "limit"},
		{"/v1/customers/" + id + "/events?version=1", "version"},
		{"/v1/customers/" + id + "/state?version=", "version"},
		{"/v1/customers/" + id + "/state?at=", "at"},
		{"/v1/customers/" + id + "/state?version=1&version=2", "version"},
		{"/v1/customers/" + id + "/state?when=2026-01-01T00:00:00Z", "when"},
		{"/v1/stats/funnel?window=", "window"},
		{"/v1/stats/funnel?windw=24h", "windw"},
		{"/v1/stats/providers?limit=5", "limit"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			code, body := get(t, srv, queryOperator, tt.path)
			if code != http.StatusBadRequest || problemSuffix(body) != "malformed-request" {
				t.Fatalf("%d %v, want 400 malformed-request", code, body)
			}
			errs, _ := body["errors"].([]any)
			if len(errs) != 1 {
				t.Fatalf("errors %v, want one naming %s", body["errors"], tt.param)
			}
			if e, _ := errs[0].(map[string]any); e["parameter"] != tt.param || e["detail"] == "" {
				t.Fatalf("errors %v, want one naming %s", body["errors"], tt.param)
			}
		})
	}
	if code, body := get(t, srv, queryOperator, "/v1/customers?%zz"); code != http.StatusBadRequest {
		t.Errorf("a query that does not parse: %d %v, want 400", code, body)
	}
}

func TestQueryTimelineAndTimeTravel(t *testing.T) {
	e := newQueryEnv(t, 30)
	e.run(t)
	e.catchUp(t)
	srv := e.server(t, time.Second)
	ctx := context.Background()
	paused := 0
	for i, id := range e.ids {
		envs, err := e.store.ReadStream(ctx, projections.CustomerStreamID(id), 1)
		if err != nil {
			t.Fatal(err)
		}
		principal := queryOperator
		if i%2 == 0 {
			principal = queryShop // its own customer
		}
		code, body := get(t, srv, queryOperator, "/v1/customers/"+id.String()+"/events")
		if code != http.StatusOK {
			t.Fatalf("timeline = %d %v", code, body)
		}
		events := body["events"].([]any)
		if len(events) != len(envs) {
			t.Fatalf("timeline has %d events, stream %d", len(events), len(envs))
		}
		for j, raw := range events {
			ev := raw.(map[string]any)
			if ev["actor"] == "" || ev["type"] != envs[j].Type || ev["version"] != float64(j+1) {
				t.Errorf("timeline event %d = %v", j, ev)
			}
			if ev["type"] == domain.TypePaused {
				paused++
				if ev["reason"] == nil || ev["reason"] == "" {
					t.Errorf("paused event without reason: %v", ev)
				}
			}
		}

		// Every version replays to what the summary said then; the last to now.
		for _, v := range []int{1, len(envs)} {
			code, body := get(t, srv, principal, fmt.Sprintf("/v1/customers/%s/state?version=%d", id, v))
			if code != http.StatusOK || body["version"] != float64(v) {
				t.Fatalf("state?version=%d = %d %v", v, code, body)
			}
			if v == 1 && body["state"] != "pending" {
				t.Errorf("state at version 1 = %v", body["state"])
			}
		}
		c, err := e.proj.Customer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		code, body = get(t, srv, queryOperator, "/v1/customers/"+id.String()+"/state?at="+envs[len(envs)-1].RecordedAt.Format(time.RFC3339Nano))
		if code != http.StatusOK || body["state"] != c.State || body["step"] != c.Step || body["version"] != float64(c.Version) {
			t.Errorf("state?at=last = %d %v, summary %+v", code, body, c)
		}
		code, body = get(t, srv, queryOperator, "/v1/customers/"+id.String()+"/state?at="+envs[0].RecordedAt.Format(time.RFC3339Nano))
		if code != http.StatusOK || body["version"].(float64) < 1 {
			t.Errorf("state?at=first = %d %v", code, body)
		}
	}
	if paused == 0 {
		t.Log("no paused event in this sample")
	}
}

func TestQueryStatsAndQueue(t *testing.T) {
	e := newQueryEnv(t, 80)
	e.run(t)
	e.catchUp(t)
	srv := e.server(t, time.Second)

	code, funnel := get(t, srv, "operator:ada", "/v1/stats/funnel?window=8760h")
	if code != http.StatusOK {
		t.Fatalf("funnel = %d %v", code, funnel)
	}
	states := funnel["states"].(map[string]any)
	total := 0.0
	for _, n := range states {
		total += n.(float64)
	}
	if total != float64(len(e.ids)) {
		t.Errorf("funnel counts %v customers, seeded %d", total, len(e.ids))
	}
	tta := funnel["time_to_active"].(map[string]any)
	if tta["count"] != states["active"] {
		t.Errorf("time to active counts %v, %v are active", tta["count"], states["active"])
	}

	code, queue := get(t, srv, queryOperator, "/v1/operator/queue?limit=200")
	if code != http.StatusOK {
		t.Fatalf("queue = %d %v", code, queue)
	}
	items := queue["items"].([]any)
	if float64(len(items)) != states["paused"] {
		t.Errorf("queue has %d entries, funnel %v paused", len(items), states["paused"])
	}
	for _, raw := range items {
		it := raw.(map[string]any)
		if it["reason"] == "" || it["step"] == "" || it["since"] == nil {
			t.Errorf("queue entry %v", it)
		}
	}

	code, stats := get(t, srv, queryOperator, "/v1/stats/providers")
	if code != http.StatusOK || len(stats["providers"].([]any)) != len(domain.Steps()) {
		t.Fatalf("providers = %d %v", code, stats)
	}
}

// TestQueryMinPosition: a read with ?min_position= waits for the projection
// and, when it does not catch up in time, says how far behind it is.
func TestQueryMinPosition(t *testing.T) {
	e := newQueryEnv(t, 0)
	ctx := context.Background()
	ids, err := projectiontest.Seed(ctx, e.store, projectiontest.Config{Customers: 3, Seed: 12})
	if err != nil {
		t.Fatal(err)
	}
	envs, err := e.store.ReadStream(ctx, projections.CustomerStreamID(ids[2]), 1)
	if err != nil {
		t.Fatal(err)
	}
	last := envs[len(envs)-1]
	path := fmt.Sprintf("/v1/customers/%s?min_position=%d", ids[2], last.Position)

	// No projector runs: the wait times out with a 504 saying how far.
	short := e.server(t, 50*time.Millisecond)
	code, body := get(t, short, queryOperator, path)
	if code != http.StatusGatewayTimeout || problemSuffix(body) != "projection-behind" ||
		body["min_position"] != float64(last.Position) || body["projection_position"] != float64(0) || body["behind"] == nil {
		t.Fatalf("min_position while stopped = %d %v", code, body)
	}
	code, body = get(t, short, queryOperator, "/v1/customers?min_position=999999999")
	if code != http.StatusGatewayTimeout || problemSuffix(body) != "projection-behind" {
		t.Errorf("min_position of no event = %d %v", code, body)
	}

	// With the projector running the same read waits and succeeds.
	e.run(t)
	long := e.server(t, 30*time.Second)
	code, body = get(t, long, queryOperator, path)
	if code != http.StatusOK || body["version"] != float64(last.Version) {
		t.Fatalf("min_position with projector = %d %v", code, body)
	}
	cursor := eventstore.Cursor{TransactionID: last.TransactionID, Position: last.Position}
	for _, p := range []string{
		"/v1/customers?min_position=" + url.QueryEscape(cursor.String()),
		fmt.Sprintf("/v1/stats/funnel?min_position=%d", last.Position),
		fmt.Sprintf("/v1/operator/queue?min_position=%d", last.Position),
		"/v1/customers?min_position=0",
	} {
		if code, body := get(t, long, queryOperator, p); code != http.StatusOK {
			t.Errorf("GET %s = %d %v", p, code, body)
		}
	}
}
