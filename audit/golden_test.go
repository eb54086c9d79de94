package audit_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/domain"
)

var (
	update = flag.Bool("update", false, "rewrite testdata/golden/*.json from today's code")
	record = flag.Bool("record", false, "record the histories of the scenarios in recordScenarios that have no file yet")
)

const (
	historiesDir = "testdata/histories"
	goldenFile   = "testdata/golden/final_states.json"
)

// History is a recorded event history: a customer's stream as the code of
// its day wrote it. Files are never rewritten; a new path gets a new file.
type History struct {
	Name        string        `json:"name"`
	Description string        `json:"description"`
	CustomerID  uuid.UUID     `json:"customer_id"`
	Events      []StoredEvent `json:"events"`
	FinalState  domain.State  `json:"final_state"`
}

// StoredEvent is one event as stored: its type name and data.
type StoredEvent struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

func loadHistories(t testing.TB) []History {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(historiesDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no histories in %s", historiesDir)
	}
	slices.Sort(paths)
	out := make([]History, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var h History
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&h); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if want := strings.TrimSuffix(filepath.Base(p), ".json"); h.Name != want {
			t.Fatalf("%s: name %q, want %q", p, h.Name, want)
		}
		out = append(out, h)
	}
	return out
}

// decode turns a recorded history into domain events with today's decoders
// and upcasters.
func decode(t testing.TB, h History) []domain.Event {
	t.Helper()
	events := make([]domain.Event, len(h.Events))
	for i, se := range h.Events {
		e, err := domain.DecodeEvent(se.Type, se.Data)
		if err != nil {
			t.Fatalf("%s: event %d: %v", h.Name, i+1, err)
		}
		events[i] = e
	}
	return events
}

// TestGoldenHistories replays every recorded history through today's code:
// it must decode (upcasting old versions), every recorded transition must
// still be an edge of the transition table, and the final snapshot must be
// the golden one. A change that breaks old histories fails here.
func TestGoldenHistories(t *testing.T) {
	histories := loadHistories(t)
	got := map[string]domain.Snapshot{}
	for _, h := range histories {
		t.Run(h.Name, func(t *testing.T) {
			events := decode(t, h)
			if err := audit.CheckHistory(audit.CustomerStreamID(h.CustomerID), events); err != nil {
				t.Fatalf("today's state machine rejects the recorded history: %v", err)
			}
			c, err := domain.FromHistory(h.CustomerID, events)
			if err != nil {
				t.Fatal(err)
			}
			if c.State() != h.FinalState {
				t.Errorf("final state %s, recorded %s", c.State(), h.FinalState)
			}
			got[h.Name] = c.Snapshot()
		})
	}
	if *update {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(goldenFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", goldenFile)
		return
	}
	b, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run go test ./audit -run TestGoldenHistories -update to create it)", err)
	}
	var want map[string]domain.Snapshot
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	for name, snap := range got {
		w, ok := want[name]
		if !ok {
			t.Errorf("%s: no golden snapshot (run with -update)", name)
			continue
		}
		gb, _ := json.MarshalIndent(snap, "", "  ")
		wb, _ := json.MarshalIndent(w, "", "  ")
		if !bytes.Equal(gb, wb) {
			t.Errorf("%s: snapshot differs from %s\ngot:  %s\nwant: %s", name, goldenFile, gb, wb)
		}
	}
	for name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("golden snapshot %s has no history", name)
		}
	}
}

// TestGoldenHistoriesCoverEveryPath keeps the set of recorded paths from
// shrinking: each journey of the state machine has a history, every state is
// reached and every event type occurs.
func TestGoldenHistoriesCoverEveryPath(t *testing.T) {
	states := map[domain.State]bool{}
	types := map[string]bool{}
	for _, h := range loadHistories(t) {
		var s []domain.Event
		for _, e := range decode(t, h) {
			s = append(s, e)
			types[e.EventType()] = true
			c, err := domain.FromHistory(h.CustomerID, s)
			if err != nil {
				t.Fatal(err)
			}
			states[c.State()] = true
		}
	}
	for _, s := range domain.States() {
		if !states[s] {
			t.Errorf("no history passes through state %s", s)
		}
	}
	for _, typ := range domain.EventTypes() {
		if !types[typ] {
			t.Errorf("no history records %s", typ)
		}
	}
}

// TestRecordScenarios writes the history of each scenario that has no file
// yet (with -record). Existing files are recorded facts and stay as they
// are: changing one would defeat the test.
func TestRecordScenarios(t *testing.T) {
	if !*record {
		t.Skip("run with -record to record new scenarios")
	}
	for _, sc := range recordScenarios() {
		path := filepath.Join(historiesDir, sc.name+".json")
		if _, err := os.Stat(path); err == nil {
			continue
		}
		c, err := domain.SignUp(sc.id, domain.SignupDetails{
			Email: sc.name + "@example.com", Company: "Golden " + sc.name + " Ltd", ContactName: "Grace Hopper",
			Country: "NL", Plan: domain.PlanGrowth,
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, step := range sc.steps {
			if err := step(c); err != nil {
				t.Fatalf("%s: step %d: %v", sc.name, i+1, err)
			}
		}
		h := History{Name: sc.name, Description: sc.description, CustomerID: sc.id, FinalState: c.State()}
		for _, e := range c.Changes() {
			typ, _, data, err := domain.EncodeEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			h.Events = append(h.Events, StoredEvent{Type: typ, Data: data})
		}
		b, err := json.MarshalIndent(h, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(historiesDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s (%d events, %s)", path, len(h.Events), h.FinalState)
	}
}

type scenario struct {
	name, description string
	id                uuid.UUID
	steps             []func(*domain.Customer) error
}

// Steps of a scenario, each one command as the process managers and
// operators issue it.
func request(s domain.Step) func(*domain.Customer) error {
	return func(c *domain.Customer) error { _, err := c.RequestStep(s); return err }
}

func checkStarted(check string) func(*domain.Customer) error {
	return func(c *domain.Customer) error {
		return c.RecordCheckStarted(c.InFlight(domain.StepVerification), check)
	}
}

func verdict(check string, approved bool, reason string) func(*domain.Customer) error {
	return func(c *domain.Customer) error { return c.RecordVerdict(check, approved, reason) }
}

func succeed(s domain.Step, kv ...string) func(*domain.Customer) error {
	return func(c *domain.Customer) error {
		var res map[string]string
		for i := 0; i+1 < len(kv); i += 2 {
			if res == nil {
				res = map[string]string{}
			}
			res[kv[i]] = kv[i+1]
		}
		return c.RecordStepSucceeded(s, c.InFlight(s), res)
	}
}

func fail(s domain.Step, class domain.ErrorClass, msg string) func(*domain.Customer) error {
	return func(c *domain.Customer) error { return c.RecordStepFailed(s, c.InFlight(s), class, msg) }
}

func pause(s domain.Step, class domain.ErrorClass, reason string) func(*domain.Customer) error {
	return func(c *domain.Customer) error { return c.Pause(s, class, reason) }
}

func retry(reason string) func(*domain.Customer) error {
	return func(c *domain.Customer) error { return c.RetryStep("ops@example.com", reason) }
}

func skip(reason string) func(*domain.Customer) error {
	return func(c *domain.Customer) error { return c.SkipStep("ops@example.com", reason) }
}

func cancel(reason string) func(*domain.Customer) error {
	return func(c *domain.Customer) error { return c.Cancel("ops@example.com", reason) }
}

func ignore(s domain.Step, source, reason string) func(*domain.Customer) error {
	return func(c *domain.Customer) error { return c.IgnoreResult(s, source, reason) }
}

func verified(check string) []func(*domain.Customer) error {
	return []func(*domain.Customer) error{
		request(domain.StepVerification), checkStarted(check), verdict(check, true, ""),
	}
}

func steps(groups ...[]func(*domain.Customer) error) []func(*domain.Customer) error {
	var out []func(*domain.Customer) error
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

func one(fs ...func(*domain.Customer) error) []func(*domain.Customer) error { return fs }

func recordScenarios() []scenario {
	id := func(n int) uuid.UUID { return uuid.MustParse(fmt.Sprintf("0190f5a4-0000-7000-8000-%012d", n)) }
	provisioned := one(
		request(domain.StepBilling), succeed(domain.StepBilling, "account_id", "acct-1", "subscription_id", "sub-1"),
		request(domain.StepTenant), succeed(domain.StepTenant, "tenant_id", "tn-1"),
	)
	return []scenario{
		{name: "happy", description: "every step succeeds first time", id: id(1), steps: steps(
			verified("chk-1"), provisioned,
			one(request(domain.StepCRM), succeed(domain.StepCRM, "record_id", "crm-1"),
				request(domain.StepWelcome), succeed(domain.StepWelcome, "message_id", "msg-1")),
		)},
		{name: "transient_retries", description: "billing and tenant fail transiently and succeed on a later attempt", id: id(2), steps: steps(
			verified("chk-2"),
			one(request(domain.StepBilling), fail(domain.StepBilling, domain.ErrorTransient, "503 from payments"),
				request(domain.StepBilling), succeed(domain.StepBilling, "account_id", "acct-2"),
				request(domain.StepTenant), fail(domain.StepTenant, domain.ErrorTransient, "timeout"),
				request(domain.StepTenant), fail(domain.StepTenant, domain.ErrorTransient, "timeout"),
				request(domain.StepTenant), succeed(domain.StepTenant, "tenant_id", "tn-2"),
				request(domain.StepCRM), succeed(domain.StepCRM), request(domain.StepWelcome), succeed(domain.StepWelcome)),
		)},
		{name: "rejected", description: "KYC rejects the customer; support is notified", id: id(3), steps: one(
			request(domain.StepVerification), checkStarted("chk-3"), verdict("chk-3", false, "document mismatch"),
			func(c *domain.Customer) error { return c.NotifySupport("email", "verification rejected") },
		)},
		{name: "paused_retry", description: "the tenant step fails permanently, pauses, and an operator's retry succeeds", id: id(4), steps: steps(
			verified("chk-4"),
			one(request(domain.StepBilling), succeed(domain.StepBilling, "account_id", "acct-4"),
				request(domain.StepTenant), fail(domain.StepTenant, domain.ErrorPermanent, "quota exceeded"),
				pause(domain.StepTenant, domain.ErrorPermanent, "quota exceeded"), retry("quota raised"),
				request(domain.StepTenant), succeed(domain.StepTenant, "tenant_id", "tn-4"),
				request(domain.StepCRM), succeed(domain.StepCRM), request(domain.StepWelcome), succeed(domain.StepWelcome)),
		)},
		{name: "verification_deadline_retry", description: "the KYC provider stays silent past the deadline; the operator retries verification", id: id(5), steps: one(
			request(domain.StepVerification), checkStarted("chk-5a"),
			pause(domain.StepVerification, domain.ErrorTransient, "no verdict before the deadline"), retry("provider back"),
			request(domain.StepVerification), checkStarted("chk-5b"), verdict("chk-5b", true, ""),
			request(domain.StepBilling), succeed(domain.StepBilling, "account_id", "acct-5"),
			request(domain.StepTenant), succeed(domain.StepTenant, "tenant_id", "tn-5"),
			request(domain.StepCRM), succeed(domain.StepCRM), request(domain.StepWelcome), succeed(domain.StepWelcome),
		)},
		{name: "skip_crm_and_welcome", description: "CRM and email fail permanently; the operator skips both", id: id(6), steps: steps(
			verified("chk-6"), provisioned,
			one(request(domain.StepCRM), fail(domain.StepCRM, domain.ErrorPermanent, "CRM rejected the record"),
				pause(domain.StepCRM, domain.ErrorPermanent, "CRM rejected the record"), skip("sales will enter it by hand"),
				request(domain.StepWelcome), fail(domain.StepWelcome, domain.ErrorPermanent, "mailbox does not exist"),
				pause(domain.StepWelcome, domain.ErrorPermanent, "mailbox does not exist"), skip("account manager calls instead")),
		)},
		{name: "cancel_with_compensation", description: "cancelled while the tenant call is in flight: the late tenant success is recorded, billing and tenant are compensated", id: id(7), steps: steps(
			verified("chk-7"),
			one(request(domain.StepBilling), succeed(domain.StepBilling, "account_id", "acct-7"),
				request(domain.StepTenant), cancel("customer withdrew"),
				succeed(domain.StepTenant, "tenant_id", "tn-7"),
				func(c *domain.Customer) error { return c.RecordBillingClosed("acct-7", true) },
				func(c *domain.Customer) error { return c.RecordTenantDeprovisioned("tn-7", true) }),
		)},
		{name: "cancel_paused_compensation", description: "cancelled while paused at the tenant step: only billing is compensated", id: id(8), steps: steps(
			verified("chk-8"),
			one(request(domain.StepBilling), succeed(domain.StepBilling, "account_id", "acct-8"),
				request(domain.StepTenant), fail(domain.StepTenant, domain.ErrorPermanent, "region unavailable"),
				pause(domain.StepTenant, domain.ErrorPermanent, "region unavailable"), cancel("region will not reopen"),
				func(c *domain.Customer) error { return c.RecordBillingClosed("acct-8", true) },
				func(c *domain.Customer) error { return c.RecordTenantDeprovisioned("", false) }),
		)},
		{name: "cancel_before_effects", description: "cancelled while verifying: nothing to compensate", id: id(9), steps: one(
			request(domain.StepVerification), checkStarted("chk-9"), cancel("duplicate signup"),
			ignore(domain.StepVerification, "kyc-webhook", "verdict arrived after the cancel"),
		)},
		{name: "late_result_ignored", description: "a duplicate KYC webhook and a late billing answer arrive and are written down without effect", id: id(10), steps: steps(
			verified("chk-10"),
			one(ignore(domain.StepVerification, "kyc-webhook", "duplicate verdict"),
				request(domain.StepBilling), succeed(domain.StepBilling, "account_id", "acct-10"),
				ignore(domain.StepBilling, "payments", "late answer of attempt 1"),
				request(domain.StepTenant), succeed(domain.StepTenant, "tenant_id", "tn-10"),
				request(domain.StepCRM), succeed(domain.StepCRM), request(domain.StepWelcome), succeed(domain.StepWelcome),
				ignore(domain.StepWelcome, "email", "delivery receipt after completion")),
		)},
		{name: "compensation_after_failed_late_call", description: "cancelled while billing is in flight; the billing call then fails, nothing was created, and the customer is cancelled", id: id(11), steps: steps(
			verified("chk-11"),
			one(request(domain.StepBilling), cancel("fraud suspected"),
				fail(domain.StepBilling, domain.ErrorPermanent, "card declined"),
				func(c *domain.Customer) error { return c.RecordBillingClosed("", false) }),
		)},
		{name: "provider_outage_wait", description: "payments is down: the billing attempt is refused by the breaker, the customer waits without spending it, resumes after the outage and succeeds", id: id(12), steps: steps(
			verified("chk-12"),
			one(request(domain.StepBilling),
				func(c *domain.Customer) error {
					return c.Block(domain.StepBilling, c.InFlight(domain.StepBilling), "payments", "circuit breaker open")
				},
				func(c *domain.Customer) error { return c.Unblock() },
				request(domain.StepBilling), succeed(domain.StepBilling, "account_id", "acct-12"),
				request(domain.StepTenant), succeed(domain.StepTenant, "tenant_id", "tn-12"),
				request(domain.StepCRM), succeed(domain.StepCRM), request(domain.StepWelcome), succeed(domain.StepWelcome)),
		)},
		{name: "erased_after_active", description: "an active customer's personal data is erased (a plain-text history from before encryption); the CRM deletes its record and the email provider suppresses it", id: id(13), steps: steps(
			verified("chk-13"), provisioned,
			one(request(domain.StepCRM), succeed(domain.StepCRM, "record_id", "crm-13"),
				request(domain.StepWelcome), succeed(domain.StepWelcome, "message_id", "msg-13"),
				func(c *domain.Customer) error {
					return c.ErasePersonalData("op@example.com", "data subject request DSR-13")
				},
				func(c *domain.Customer) error { return c.RecordProviderDataDeleted("crm", true) },
				func(c *domain.Customer) error { return c.RecordProviderDataDeleted("email", true) }),
		)},
	}
}
