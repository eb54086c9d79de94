package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onboard/onboard/providers/sim"
)

// canaryForms are the forms a canary may leak in: as it is, lower case,
// and base64 (standard and URL alphabets, at each of the three alignments
// it can have inside a longer encoded text, of both cases).
func canaryForms(canary string) []string {
	forms := []string{strings.ToLower(canary)}
	for _, s := range []string{canary, strings.ToLower(canary)} {
		for off := range 3 {
			raw := append(make([]byte, off), s...)
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
				e := enc.EncodeToString(raw)
				// Skip the characters that depend on what precedes the
				// canary, and the last group, which depends on what follows.
				start, end := (off+2)/3*4, len(e)-4
				if end-start >= 8 {
					forms = append(forms, e[start:end])
				}
			}
		}
	}
	return forms
}

// leaks returns the canary forms found in text.
func leaks(text string, canaries ...string) []string {
	var out []string
	lower := strings.ToLower(text)
	for _, c := range canaries {
		for i, f := range canaryForms(c) {
			if i == 0 && strings.Contains(lower, f) || i > 0 && strings.Contains(text, f) {
				out = append(out, fmt.Sprintf("%q as %q", c, f))
			}
		}
	}
	return out
}

// natsStoreText is every file of the NATS server's store under dir, as
// bytes: every stream's messages (the events', the dead letters', the
// seals'), whatever role may read them over the wire.
func natsStoreText(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		b.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// pgDump dumps the whole database at url as SQL.
func pgDump(t *testing.T, url string) string {
	t.Helper()
	bin, err := exec.LookPath("pg_dump")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pg_dump: %v", err)
		}
		t.Skipf("pg_dump: %v", err)
	}
	out, err := exec.Command(bin, "--dbname", url).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	return string(out)
}

// TestErasureLeavesNoCanary is the crypto-shredding test: customers with
// canary emails and names run to active, one of them is erased, and then
// neither of its canaries is anywhere, in any form: not in a dump of the
// whole database, NATS's store (every stream's messages, the dead letters'
// included) or the logs. The log still verifies, the other customers are as they were, and
// the erased email signs up again.
func TestErasureLeavesNoCanary(t *testing.T) {
	logs := &syncBuffer{}
	dataDir := t.TempDir()
	base := startDevWith(t, sim.Config{Seed: 3, KYC: sim.KYCConfig{Delay: sim.Latency{Max: sim.Duration(10 * time.Millisecond)}},
		Providers: map[string]sim.ProviderConfig{"payments": {TransientRate: 0.2, TransientKinds: []sim.Fault{sim.Fault503}}}},
		func(o *devOptions) {
			o.logs, o.logLevel, o.dataDir = logs, slog.LevelDebug, dataDir
		})
	const canaryEmail, canaryName = "Zq.Canary.Erase@PII-Canary.example", "Canaryperson Xylophant"
	keptEmail, keptName := "kept.customer@pii-canary.example", "Keptperson Quillbeak"
	signUp := func(email, name, key string) string {
		t.Helper()
		status, body := call(t, "POST", base+"/v1/customers", devClientKey,
			fmt.Sprintf(`{"email":%q,"company":"Canary Works","contact_name":%q,"country":"FR","plan":"growth"}`, email, name),
			"Idempotency-Key", key)
		if status != http.StatusAccepted {
			t.Fatalf("signup %s: %d %s", email, status, body)
		}
		var out struct{ ID string }
		_ = json.Unmarshal(body, &out)
		return out.ID
	}
	erased, kept := signUp(canaryEmail, canaryName, "canary-1"), signUp(keptEmail, keptName, "kept-1")
	for _, id := range []string{erased, kept} {
		waitFor(t, 90*time.Second, "customer "+id+" active", func() (bool, string) {
			_, body := call(t, "GET", base+"/v1/customers/"+id, devOperatorKey, "")
			return strings.Contains(string(body), `"state":"active"`), string(body)
		})
	}
	if status, body := call(t, "POST", base+"/v1/customers/"+erased+"/erasure", devOperatorKey, `{"reason":"DSR-1"}`,
		"Idempotency-Key", "erase-1"); status != http.StatusAccepted {
		t.Fatalf("erasure: %d %s", status, body)
	}
	// The read model is scrubbed and both providers have deleted the data.
	waitFor(t, 90*time.Second, "erasure carried out", func() (bool, string) {
		_, c := call(t, "GET", base+"/v1/customers/"+erased, devOperatorKey, "")
		_, ledger := call(t, "GET", base+"/sim/ledger", "", "")
		var l sim.Ledger
		_ = json.Unmarshal(ledger, &l)
		e := l.Customers[erased]
		return strings.Contains(string(c), `"email":"[erased]"`) && e.CRMDeleted == 1 && e.EmailSuppressed, string(c)
	})
	waitFor(t, 90*time.Second, "provider deletions recorded", func() (bool, string) {
		_, tl := call(t, "GET", base+"/v1/customers/"+erased+"/events", devOperatorKey, "")
		return strings.Count(string(tl), "customer.provider_data_deleted.v1") == 2, string(tl)
	})

	store := natsStoreText(t, filepath.Join(dataDir, "nats"))
	if !strings.Contains(store, erased) {
		t.Fatal("NATS's store holds nothing of the erased customer: is it the right directory?")
	}
	dump := pgDump(t, os.Getenv("DATABASE_URL"))
	if !strings.Contains(dump, erased) || !strings.Contains(dump, "pd1:") {
		t.Fatal("the dump holds neither the erased customer nor encrypted data: is it the right database?")
	}
	for name, text := range map[string]string{"pg_dump": dump, "NATS's store (every stream, dead letters included)": store, "logs": logs.String()} {
		if found := leaks(text, canaryEmail, canaryName); len(found) > 0 {
			t.Errorf("%s holds %v", name, found)
		}
	}
	// The kept customer's data is encrypted in the log, plain only in its
	// read model row, and decrypts as it was.
	if found := leaks(store, keptEmail, keptName); len(found) > 0 {
		t.Errorf("NATS's store holds the kept customer's %v", found)
	}
	_, pd := call(t, "GET", base+"/v1/customers/"+kept+"/personal-data", devOperatorKey, "")
	if !strings.Contains(string(pd), keptEmail) || !strings.Contains(string(pd), keptName) || strings.Contains(string(pd), "[erased]") {
		t.Errorf("the kept customer's personal data: %s", pd)
	}
	if _, c := call(t, "GET", base+"/v1/customers/"+kept, devOperatorKey, ""); !strings.Contains(string(c), `"email":"`+keptEmail+`"`) ||
		!strings.Contains(string(c), `"contact_name":"`+keptName+`"`) {
		t.Errorf("the kept customer's summary: %s", c)
	}
	_, pd = call(t, "GET", base+"/v1/customers/"+erased+"/personal-data", devOperatorKey, "")
	if !strings.Contains(string(pd), `"erased":true`) {
		t.Errorf("the erased customer's personal data: %s", pd)
	}
	if stdout, stderr, failed := runOnboard(t, "replay", "verify"); failed {
		t.Errorf("verify after erasure failed:\n%s\n%s", stdout, stderr)
	}
	if stdout, stderr, failed := runOnboard(t, "replay", "customer", erased); failed || !strings.Contains(stdout, "[erased]") {
		t.Errorf("replay of the erased customer:\n%s\n%s", stdout, stderr)
	}
	if again := signUp(strings.ToUpper(canaryEmail), canaryName, "canary-2"); again == erased {
		t.Error("the new signup replayed the erased customer")
	}

	// The command line, with dev's master key: a rebuild decrypts the kept
	// customer's data and keeps the erased one's erased; erase erases.
	t.Setenv("ONBOARD_MASTER_KEY", "")
	t.Setenv("ONBOARD_MASTER_KEY_FILE", filepath.Join(dataDir, "master.key"))
	if stdout, stderr, failed := runOnboard(t, "replay", "rebuild", "customers"); failed {
		t.Fatalf("rebuild:\n%s\n%s", stdout, stderr)
	}
	if _, c := call(t, "GET", base+"/v1/customers/"+kept, devOperatorKey, ""); !strings.Contains(string(c), `"email":"`+keptEmail+`"`) {
		t.Errorf("the kept customer after a rebuild: %s", c)
	}
	if _, c := call(t, "GET", base+"/v1/customers/"+erased, devOperatorKey, ""); !strings.Contains(string(c), `"email":"[erased]"`) {
		t.Errorf("the erased customer after a rebuild: %s", c)
	}
	// explain shows personal data as the timeline does: decrypted, or
	// [erased], never ciphertext.
	if stdout, stderr, failed := runOnboard(t, "explain", "--json", kept); failed || !strings.Contains(stdout, keptName) ||
		strings.Contains(stdout, "pd1:") {
		t.Errorf("explain of the kept customer:\n%s\n%s", stdout, stderr)
	}
	if stdout, stderr, failed := runOnboard(t, "explain", "--json", erased); failed || !strings.Contains(stdout, "[erased]") ||
		strings.Contains(stdout, "pd1:") || strings.Contains(stdout, "Canary Works") || len(leaks(stdout, canaryEmail, canaryName)) > 0 {
		t.Errorf("explain of the erased customer:\n%s\n%s", stdout, stderr)
	}
	if _, stderr, failed := runOnboard(t, "erase", kept); !failed || !strings.Contains(stderr, "--reason") {
		t.Errorf("erase without a reason: %q", stderr)
	}
	for i, want := range []string{"personal data erased", "already erased"} {
		stdout, stderr, failed := runOnboard(t, "erase", kept, "--reason", "DSR-2", "--operator", "ada")
		if failed || !strings.Contains(stdout, want) {
			t.Errorf("erase, run %d: %q %q", i+1, stdout, stderr)
		}
	}
	_, pd = call(t, "GET", base+"/v1/customers/"+kept+"/personal-data", devOperatorKey, "")
	if !strings.Contains(string(pd), `"erased":true`) || strings.Contains(string(pd), keptEmail) {
		t.Errorf("the kept customer after onboard erase: %s", pd)
	}
}
