package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers/sim"
)

// getJSON calls the API as the operator and decodes a 200 answer into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	status, body := call(t, "GET", url, devOperatorKey, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

func funnelState(t *testing.T, base, state string) int {
	var f struct{ States map[string]int }
	getJSON(t, base+"/v1/stats/funnel", &f)
	return f.States[state]
}

// TestOperatorToolsEndToEnd drives the operator API of `onboard dev`: a
// provisioning outage pauses 30 signups at the tenant step; the paused
// groups show them as one group whose filter a dry run counts; a bulk
// retry (its request repeated) runs at ONBOARD_BULK_RATE to the end and
// every customer becomes active; explain shows one customer's journey, the
// retry with the operation's id; and a customer whose KYC deadline timer
// is lost is listed as stuck, by the API and by `onboard explain`.
func TestOperatorToolsEndToEnd(t *testing.T) {
	t.Setenv("ONBOARD_BULK_RATE", "10")
	t.Setenv("ONBOARD_STUCK_DEADLINES", "verifying=3s")
	base := startDevWith(t, sim.Config{Seed: 12, KYC: sim.KYCConfig{Delay: sim.Latency{Max: sim.Duration(20 * time.Millisecond)}}},
		func(o *devOptions) {
			o.process = &process.Config{BaseDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond, VerificationDeadline: time.Hour}
		})
	setSimProvider(t, base, "provisioning", `{"permanent_rate":1}`)
	const n = 30
	for i := range n {
		status, body := call(t, "POST", base+"/v1/customers", devClientKey,
			fmt.Sprintf(`{"email":"bulk-%d@example.com","company":"Bulk %d","contact_name":"T","country":"SE","plan":"growth"}`, i, i),
			"Idempotency-Key", fmt.Sprintf("bulk-e2e-%d", i))
		if status != http.StatusAccepted {
			t.Fatalf("signup: %d %s", status, body)
		}
	}
	waitFor(t, 2*time.Minute, "30 paused customers", func() (bool, string) {
		p := funnelState(t, base, "paused")
		return p == n, fmt.Sprint(p, " paused")
	})

	var groups struct {
		Groups []struct {
			Step, Cause string
			Count       int
			Filter      json.RawMessage
		}
	}
	getJSON(t, base+"/v1/operator/queue/groups", &groups)
	if len(groups.Groups) != 1 || groups.Groups[0].Count != n || groups.Groups[0].Step != "tenant" {
		t.Fatalf("groups: %+v", groups)
	}
	filter := string(groups.Groups[0].Filter)
	status, body := call(t, "POST", base+"/v1/operator/bulk", devOperatorKey, `{"action":"retry","dry_run":true,"filter":`+filter+`}`)
	var dry struct{ Count int }
	if status != http.StatusOK || json.Unmarshal(body, &dry) != nil || dry.Count != n {
		t.Fatalf("dry run: %d %s", status, body)
	}

	setSimProvider(t, base, "provisioning", `{}`)
	req := `{"action":"retry","reason":"provisioning is back","filter":` + filter + `}`
	status, body = call(t, "POST", base+"/v1/operator/bulk", devOperatorKey, req, "Idempotency-Key", "bulk-e2e")
	var op struct {
		ID                  string
		Total, Done, Failed int
		Status              string
		Rate                float64
	}
	if status != http.StatusAccepted || json.Unmarshal(body, &op) != nil || op.Total != n || op.Rate != 10 {
		t.Fatalf("bulk retry: %d %s", status, body)
	}
	first := op.ID
	status, body = call(t, "POST", base+"/v1/operator/bulk", devOperatorKey, req, "Idempotency-Key", "bulk-e2e")
	if status != http.StatusAccepted || json.Unmarshal(body, &op) != nil || op.ID != first {
		t.Fatalf("bulk retry repeated: %d %s", status, body)
	}
	progress := map[int]bool{}
	waitFor(t, 2*time.Minute, "the bulk retry to finish", func() (bool, string) {
		getJSON(t, base+"/v1/operator/bulk/"+first, &op)
		progress[op.Done] = true
		return op.Status == "done", fmt.Sprintf("%+v", op)
	})
	if op.Done != n || op.Failed != 0 || len(progress) < 3 {
		t.Fatalf("bulk retry finished as %+v, progress seen %v", op, progress)
	}
	waitFor(t, 2*time.Minute, "30 active customers", func() (bool, string) {
		a := funnelState(t, base, "active")
		return a == n, fmt.Sprint(a, " active")
	})

	var list struct{ Items []struct{ ID string } }
	getJSON(t, base+"/v1/customers?state=active&limit=1", &list)
	var x struct {
		Diagnosis string
		Events    []struct {
			Type          string
			CorrelationID string `json:"correlation_id"`
		}
		Calls []struct{ Step, Outcome string }
		Inbox []struct{ Handler string }
	}
	getJSON(t, base+"/v1/customers/"+list.Items[0].ID+"/explain", &x)
	retried := false
	for _, e := range x.Events {
		retried = retried || (e.Type == "customer.step_retry_requested.v1" && e.CorrelationID == first)
	}
	if !strings.HasPrefix(x.Diagnosis, "active since ") || !retried || len(x.Calls) < 6 || len(x.Inbox) == 0 {
		t.Errorf("explain: %+v", x)
	}

	// A customer whose KYC check waits for a webhook that never comes,
	// its deadline timer lost.
	setSimKYC(t, base, `{"silent":1}`)
	status, body = call(t, "POST", base+"/v1/customers", devClientKey,
		`{"email":"stuck@example.com","company":"Stuck","contact_name":"T","country":"SE","plan":"growth"}`, "Idempotency-Key", "stuck-1")
	var signup struct{ ID string }
	if status != http.StatusAccepted || json.Unmarshal(body, &signup) != nil {
		t.Fatalf("signup: %d %s", status, body)
	}
	ctx := context.Background()
	pool, err := openPool(ctx, os.Getenv("DATABASE_URL"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	waitFor(t, time.Minute, "the deadline timer", func() (bool, string) {
		var k int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM onboard_timers WHERE customer_id = $1 AND kind = 'deadline'`, signup.ID).Scan(&k)
		return err == nil && k == 1, fmt.Sprint(k, err)
	})
	time.Sleep(4 * time.Second) // past the verifying deadline, but the timer is due in an hour
	var stuck struct {
		Items []struct {
			ID, State string
			WaitsFor  string `json:"waits_for"`
		}
	}
	getJSON(t, base+"/v1/operator/stuck", &stuck)
	if len(stuck.Items) != 0 {
		t.Fatalf("stuck with its timer pending: %+v", stuck)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM onboard_timers WHERE customer_id = $1`, signup.ID); err != nil {
		t.Fatal(err)
	}
	getJSON(t, base+"/v1/operator/stuck", &stuck)
	if len(stuck.Items) != 1 || stuck.Items[0].ID != signup.ID || stuck.Items[0].State != "verifying" || stuck.Items[0].WaitsFor == "" {
		t.Fatalf("stuck after the timer was lost: %+v", stuck)
	}
	_, metrics := call(t, "GET", base+"/metrics", "", "")
	if !strings.Contains(string(metrics), `onboard_stuck_customers{state="verifying"} 1`) {
		t.Errorf("metrics lack the stuck customer")
	}

	var out bytes.Buffer
	cmd := newExplainCmd()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{signup.ID})
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "waiting for the KYC webhook since") || !strings.Contains(out.String(), "no deadline timer is pending") {
		t.Errorf("onboard explain:\n%s", out.String())
	}
}

// setSimKYC replaces the simulated identity provider's verdicts.
func setSimKYC(t *testing.T, base, config string) {
	t.Helper()
	if status, body := call(t, "PUT", base+"/sim/admin/config", devOperatorKey, `{"kyc":`+config+`}`); status != http.StatusOK {
		t.Fatalf("configure the simulator's kyc: %d %s", status, body)
	}
}
