package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers/sim"
)

// TestReplayCoverage runs the real pipeline (relay, JetStream consumers,
// projectors) to the end of a few journeys: every consumer covers what it
// processed. A deleted inbox row and a lagging read-model row are then
// reported at their positions, with a non-zero exit.
func TestReplayCoverage(t *testing.T) {
	base := startDev(t, sim.Config{Seed: 3, KYC: sim.KYCConfig{Delay: sim.Latency{Max: sim.Duration(20 * time.Millisecond)}}})
	var ids []string
	for i := range 3 {
		status, body := call(t, "POST", base+"/v1/customers", devClientKey,
			fmt.Sprintf(`{"email":"cov%d@example.com","company":"Coverage %d","contact_name":"Tester","country":"SE","plan":"enterprise"}`, i, i),
			"Idempotency-Key", fmt.Sprintf("coverage-%d", i))
		var out struct{ ID string }
		if status != http.StatusAccepted || json.Unmarshal(body, &out) != nil {
			t.Fatalf("signup: %d %s", status, body)
		}
		ids = append(ids, out.ID)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, id := range ids {
		for {
			status, body := call(t, "GET", base+"/v1/customers/"+id, devOperatorKey, "")
			var c struct{ State string }
			if status == http.StatusOK && json.Unmarshal(body, &c) == nil && c.State == "active" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("customer %s not active: %d %s", id, status, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// A reaction may still be recorded after the journeys end: coverage
	// becomes OK, and stays so.
	var stdout, stderr string
	failed := true
	for deadline := time.Now().Add(20 * time.Second); failed && time.Now().Before(deadline); {
		if stdout, stderr, failed = runOnboard(t, "replay", "coverage"); failed {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if failed || !strings.HasSuffix(stdout, ": OK\n") {
		t.Fatalf("after the journeys: stdout %q, stderr %q", stdout, stderr)
	}
	for _, name := range append([]string{"customers", "provider_stats"}, process.Managers()...) {
		if name != "customers" && name != "provider_stats" {
			name = pmHandler(name)
		}
		if !strings.Contains(stdout, "\n"+name+" ") {
			t.Errorf("no line for %s in %q", name, stdout)
		}
	}

	ctx := context.Background()
	url, err := databaseURL()
	if err != nil {
		t.Fatal(err)
	}
	pool := pgtest.NewPool(t, url, 2)
	var billing struct {
		position int64
		id       uuid.UUID
	}
	err = pool.QueryRow(ctx, `SELECT e.position, e.event_id FROM events e
		JOIN messaging_inbox i ON i.event_id = e.event_id AND i.handler = $1
		WHERE e.type = $2 ORDER BY e.position LIMIT 1`, pmHandler(string(domain.StepBilling)), domain.TypeStepRequested).
		Scan(&billing.position, &billing.id)
	if err != nil {
		t.Fatal(err)
	}
	tamper(t, pool, `DELETE FROM messaging_inbox WHERE handler = $1 AND event_id = $2`, pmHandler(string(domain.StepBilling)), billing.id)
	var lag struct {
		position int64
		id       uuid.UUID
	}
	if err := pool.QueryRow(ctx, `SELECT position, event_id FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1`,
		"customer-"+ids[1]).Scan(&lag.position, &lag.id); err != nil {
		t.Fatal(err)
	}
	tamper(t, pool, `UPDATE customer_summary SET version = version - 1 WHERE id = $1`, ids[1])

	stdout, stderr, failed = runOnboard(t, "replay", "coverage")
	for _, want := range []string{
		fmt.Sprintf("GAP pm-billing position %d: event %s (", billing.position, billing.id),
		fmt.Sprintf("GAP customers position %d: event %s (customer-%s version", lag.position, lag.id, ids[1]),
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if !failed || !strings.HasSuffix(stderr, "onboard: 2 gaps in 2 consumers\n") {
		t.Errorf("failed %t, stderr %q", failed, stderr)
	}

	stdout, _, failed = runOnboard(t, "replay", "coverage", "--json")
	var rep audit.CoverageReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || !failed {
		t.Fatalf("--json: failed %t, %v: %q", failed, err, stdout)
	}
	gaps := map[string]int64{}
	for _, c := range rep.Consumers {
		for _, g := range c.Gaps {
			gaps[c.Name] = g.Position
		}
	}
	if len(gaps) != 2 || gaps["pm-billing"] != billing.position || gaps["customers"] != lag.position {
		t.Errorf("--json gaps %v", gaps)
	}
}

// TestReplayCoverageReadsOnly: on a database without the event store,
// coverage fails with the line the other replay commands print, and
// creates nothing.
func TestReplayCoverageReadsOnly(t *testing.T) {
	url := pgtest.NewDatabase(t)
	t.Setenv("DATABASE_URL", url)
	name := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	stdout, stderr, failed := runOnboard(t, "replay", "coverage")
	if want := "onboard: no event store in database " + name + " (run `onboard migrate`)\n"; !failed || stderr != want {
		t.Fatalf("failed %t, stdout %q, stderr %q, want %q", failed, stdout, stderr, want)
	}
	if n := relations(t, pgtest.NewPool(t, url, 1)); n != 0 {
		t.Errorf("%d relations after coverage, want none", n)
	}
}

func tamper(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}
