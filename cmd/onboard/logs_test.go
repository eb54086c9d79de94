package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/onboard/onboard/providers/sim"
)

// TestLogsCarryIDsNotPII runs customers with canary emails, names and
// companies through failures, pauses, a rejection and operator commands, at
// debug level, and checks that no log line holds the canaries, and that
// every line about a customer carries its id and a correlation id.
func TestLogsCarryIDsNotPII(t *testing.T) {
	logs := &syncBuffer{}
	base := startDevLogging(t, sim.Config{Seed: 5,
		KYC: sim.KYCConfig{Approve: 2, Reject: 1, Delay: sim.Latency{Max: sim.Duration(10 * time.Millisecond)}},
		Providers: map[string]sim.ProviderConfig{
			"payments":     {TransientRate: 0.3, TransientKinds: []sim.Fault{sim.Fault503}},
			"provisioning": {PermanentRate: 1},
			"crm":          {TransientRate: 0.3, TransientKinds: []sim.Fault{sim.FaultReset}, LostResponseRate: 0.1},
		}}, logs, slog.LevelDebug)

	const n = 12
	var canaries []string
	for i := 0; i < n; i++ {
		email, company, contact := fmt.Sprintf("canary.mail.%d@pii-canary.example", i), fmt.Sprintf("CanaryCompany%d", i), fmt.Sprintf("CanaryPerson%d", i)
		canaries = append(canaries, email, company, contact)
		status, body := call(t, "POST", base+"/v1/customers", devClientKey,
			fmt.Sprintf(`{"email":%q,"company":%q,"contact_name":%q,"country":"IT","plan":"growth"}`, email, company, contact),
			"Idempotency-Key", fmt.Sprintf("canary-%d", i))
		if status != http.StatusAccepted {
			t.Fatalf("signup: %d %s", status, body)
		}
		var out struct{ ID string }
		_ = json.Unmarshal(body, &out)
		// Give the pipeline time to hit the faults, then act as an operator.
		defer func(id string) {
			call(t, "POST", base+"/v1/customers/"+id+"/cancel", devOperatorKey, `{"reason":"canary test done"}`)
		}(out.ID)
	}
	// A bad signup and a duplicate email are logged by nobody with PII either.
	call(t, "POST", base+"/v1/customers", devClientKey, `{"email":"canary.mail.0@pii-canary.example","company":"X","contact_name":"Y","country":"IT","plan":"growth"}`, "Idempotency-Key", "canary-dup")
	waitFor(t, 60*time.Second, "pauses and rejections logged", func() (bool, string) {
		l := logs.String()
		_, funnel := call(t, "GET", base+"/v1/stats/funnel", devOperatorKey, "")
		return strings.Contains(l, "customer paused") && strings.Contains(l, "step attempt failed"), string(funnel)
	})

	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines, about := 0, 0
	for sc.Scan() {
		line := sc.Text()
		lines++
		for _, c := range canaries {
			if strings.Contains(strings.ToLower(line), strings.ToLower(c)) {
				t.Errorf("log line holds PII %q: %s", c, line)
			}
		}
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if msg, _ := rec["msg"].(string); msg == "customer paused: operator action needed" || msg == "step attempt failed" {
			about++
			if rec["customer_id"] == nil || rec["correlation_id"] == nil || rec["causation_id"] == nil {
				t.Errorf("a line about a customer lacks its ids: %s", line)
			}
		}
	}
	if about == 0 {
		t.Fatalf("no line about a customer among %d", lines)
	}
	t.Logf("%d log lines, %d about customers, none with the %d canaries", lines, about, len(canaries))
}
