package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/projections"
	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

// asDBRole is dbURL with the session switched to a group role at connect
// (as `SET ROLE`): every statement is checked against that role's grants
// alone, as for a login role that is a member of it.
func asDBRole(t *testing.T, dbURL, role string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	// pgx reads a space from %20 only, not from url.Values' "+".
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += "options=" + strings.ReplaceAll(url.QueryEscape("-c role="+role), "+", "%20")
	return u.String()
}

// TestProcessRolesRunUnderTheirGrants runs each role of the pipeline in a
// process of its own, connected as its database group role, takes
// customers to active, rebuilds a read model (as the owner) and takes one
// more through it; then checks that each role is refused what it does not
// need.
func TestProcessRolesRunUnderTheirGrants(t *testing.T) {
	dbURL := pgtest.NewMigratedDatabase(t)
	ns, err := messaging.StartEmbedded(messaging.EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	cmdLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	queryLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cmdBase, queryBase := "http://"+cmdLn.Addr().String(), "http://"+queryLn.Addr().String()
	s, err := sim.New(sim.Config{Seed: 7, KYC: sim.KYCConfig{CallbackURL: cmdBase + "/v1/webhooks/kyc", WebhookSecret: devWebhookSecret,
		Approve: 1, Delay: sim.Latency{Max: sim.Duration(20 * time.Millisecond)}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	simSrv := httptest.NewServer(http.StripPrefix("/sim", s))
	t.Cleanup(simSrv.Close)
	keys, _ := httpapi.ParseAPIKeys("client:roles:" + devClientKey + ",operator:roles-operator:" + devOperatorKey)
	var provs [5]providers.Config
	for i, name := range providerNames {
		provs[i] = providers.Config{BaseURL: simSrv.URL + "/sim/" + name}
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	var started []*role
	for _, name := range knownRoles {
		cfg := runConfig{addr: "127.0.0.1:0", roles: []string{name}, databaseURL: asDBRole(t, dbURL, "onboard_"+name),
			natsURL: ns.ClientURL(), apiKeys: keys, webhookSecret: devWebhookSecret, providers: provs,
			process: process.Config{BaseDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond, VerificationDeadline: 5 * time.Second},
			sealKey: testSealKey(t)}
		cfg.natsAuth = ns.Credentials(messaging.DevUser)
		if name == "worker" || name == "relay" {
			cfg.natsAuth = ns.Credentials(name) // each role's own permissions
		}
		switch name {
		case "command":
			cfg.listener = cmdLn
		case "query":
			cfg.listener = queryLn
		}
		r := &role{t: t, name: name, cfg: cfg, log: log}
		r.start()
		t.Cleanup(r.stop)
		started = append(started, r)
	}
	// A role refused a statement at start stops: fail then, naming it,
	// instead of waiting on a listener nobody serves.
	client := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, 60*time.Second, "every role ready", func() (bool, string) {
		for _, r := range started {
			select {
			case err := <-r.done:
				r.done <- err
				t.Fatalf("role %s stopped: %v", r.name, err)
			default:
			}
		}
		for _, base := range []string{cmdBase, queryBase} {
			resp, err := client.Get(base + "/readyz")
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false, base + ": " + resp.Status
			}
		}
		return true, ""
	})

	signUpToActive(t, cmdBase, queryBase, "roles-1")
	// A rebuild, run by the owner as `onboard replay rebuild` is, gives
	// the new version's tables and the recreated view the old ones' grants.
	owner := pgtest.NewPool(t, dbURL, 4)
	store, err := postgres.New(owner, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	proj, err := projections.New(projections.Config{Pool: owner, Source: store})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range projections.Names() {
		if _, err := proj.Rebuild(context.Background(), name); err != nil {
			t.Fatalf("rebuild %s: %v", name, err)
		}
	}
	id := signUpToActive(t, cmdBase, queryBase, "roles-2")
	for _, path := range []string{"/v1/stats/providers", "/v1/stats/funnel", "/v1/operator/queue", "/v1/customers?q=roles",
		"/v1/customers/" + id + "/events", "/v1/customers/" + id + "/state?version=2", "/metrics"} {
		if status, body := call(t, "GET", queryBase+path, devOperatorKey, ""); status != http.StatusOK {
			t.Errorf("GET %s from the query role: %d %s", path, status, body)
		}
	}

	checkRefusals(t, dbURL)
}

// signUpToActive signs a customer up through the command role and waits
// until the query role shows it active.
func signUpToActive(t *testing.T, cmdBase, queryBase, key string) string {
	t.Helper()
	status, body := call(t, "POST", cmdBase+"/v1/customers", devClientKey,
		fmt.Sprintf(`{"email":"%s@roles.example","company":"Roles","contact_name":"R","country":"IT","plan":"growth"}`, key),
		"Idempotency-Key", key)
	if status != http.StatusAccepted {
		t.Fatalf("signup: %d %s", status, body)
	}
	var out struct{ ID string }
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "customer "+out.ID+" active", func() (bool, string) {
		status, body := call(t, "GET", queryBase+"/v1/customers/"+out.ID, devOperatorKey, "")
		var c struct{ State string }
		_ = json.Unmarshal(body, &c)
		return status == http.StatusOK && c.State == "active", fmt.Sprintf("%d %s", status, body)
	})
	return out.ID
}

// checkRefusals connects as each group role and checks that statements
// outside its grants fail with insufficient_privilege.
func checkRefusals(t *testing.T, dbURL string) {
	refused := map[string][]string{
		"onboard_query": {
			`INSERT INTO events (event_id, stream_id, stream_type, version, type, schema_version, data, prev_hash, hash)
				VALUES (gen_random_uuid(), 'x', 'customer', 1, 't', 1, '{}', '', '')`,
			`UPDATE rm_customers_v2 SET state = 'active'`,
			`DELETE FROM idempotency`,
			`SELECT * FROM reservations`,
			`INSERT INTO messaging_relay_cursor (relay, transaction_id, position) VALUES ('x', 0, 0)`,
		},
		"onboard_command": {
			`UPDATE events SET actor = 'x'`,
			`TRUNCATE events`,
			`ALTER TABLE events DISABLE TRIGGER events_immutable_rows`,
			`SELECT * FROM customer_summary`,
			`DELETE FROM onboard_timers`,
			`INSERT INTO seals (seq, epoch, system_identifier, cursor, events, digest, heads, heads_digest, sealed_at, key_id, signature)
				VALUES (99, 1, '0', '', 0, '', '', '', now(), '', '')`,
		},
		"onboard_worker": {
			`DELETE FROM events`,
			`SELECT * FROM idempotency`,
			`UPDATE messaging_relay_cursor SET position = 0`,
			`UPDATE rm_customers_v2 SET state = 'active'`,
		},
		"onboard_relay": {
			`INSERT INTO events (event_id, stream_id, stream_type, version, type, schema_version, data, prev_hash, hash)
				VALUES (gen_random_uuid(), 'x', 'customer', 1, 't', 1, '{}', '', '')`,
			`DELETE FROM seals`,
			`SELECT * FROM customer_summary`,
			`DELETE FROM messaging_inbox`,
		},
		"onboard_projector": {
			`INSERT INTO events (event_id, stream_id, stream_type, version, type, schema_version, data, prev_hash, hash)
				VALUES (gen_random_uuid(), 'x', 'customer', 1, 't', 1, '{}', '', '')`,
			`DROP VIEW customer_summary`,
			`SELECT * FROM idempotency`,
			`INSERT INTO messaging_dead_letters (handler, event_id, event_type, stream_id, subject, error, deliveries, payload, headers)
				VALUES ('x', gen_random_uuid(), 't', 's', 's', 'e', 1, '', '{}')`,
		},
	}
	// What the roles do only now and then (the pruners, the worker
	// without NATS) is allowed.
	allowed := map[string][]string{
		"onboard_command": {`DELETE FROM idempotency WHERE expires_at < now() - interval '1 year'`},
		"onboard_worker": {`DELETE FROM messaging_inbox WHERE processed_at < now() - interval '1 year'`,
			`INSERT INTO onboard_pm_checkpoints (name, transaction_id, position) VALUES ('t', 0, 0)
				ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id, position = excluded.position`},
	}
	ctx := context.Background()
	for role, stmts := range allowed {
		conn, err := pgtest.Connect(ctx, asDBRole(t, dbURL, role))
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range stmts {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				t.Errorf("%s: %s: %v", role, stmt, err)
			}
		}
		conn.Close(ctx)
	}
	for role, stmts := range refused {
		t.Run(role, func(t *testing.T) {
			conn, err := pgtest.Connect(ctx, asDBRole(t, dbURL, role))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			for _, stmt := range stmts {
				_, err := conn.Exec(ctx, stmt)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
					t.Errorf("%s: %s\n  = %v, want insufficient_privilege", role, stmt, err)
				}
			}
		})
	}
}

// testSealKey is a fresh seal key, so that the relay's sealing runs under
// its grants too.
func testSealKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	k, err := devSealKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return k
}
