package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/onboard/onboard/providers/sim"
)

// consoleWait bounds each wait for the console to show something. The
// console polls every two seconds and the pipeline needs a few hops, so
// this is generous on purpose: it only matters when something is broken.
const consoleWait = 45 * time.Second

// TestConsoleEndToEnd drives the operator console of `onboard dev` in
// headless Chromium the way an operator would: a provisioning outage pauses
// a signup at the tenant step, the console shows it in the operator queue,
// the outage ends, the operator presses Retry and confirms with a reason,
// and the customer page shows the customer active, with the retry and its
// reason in the audit timeline. Screenshots of both moments are written to
// the test's artifact directory (a temporary directory unless go test runs
// with -artifacts, which keeps them).
func TestConsoleEndToEnd(t *testing.T) {
	chromium := chromiumPath(t)
	base := startDev(t, sim.Config{Seed: 10, KYC: sim.KYCConfig{Delay: sim.Latency{Max: sim.Duration(20 * time.Millisecond)}}})

	// The outage starts at run time, as an operator would meet it: every
	// tenant provisioning fails permanently, so the signup pauses there.
	setSimProvider(t, base, "provisioning", `{"permanent_rate":1}`)
	status, body := call(t, "POST", base+"/v1/customers", devClientKey,
		`{"email":"console-e2e@example.com","company":"Console E2E","contact_name":"Tester","country":"SE","plan":"growth"}`,
		"Idempotency-Key", "console-e2e-1")
	if status != http.StatusAccepted {
		t.Fatalf("signup: %d %s", status, body)
	}
	var signup struct{ ID string }
	if err := json.Unmarshal(body, &signup); err != nil || signup.ID == "" {
		t.Fatalf("signup answer %s: %v", body, err)
	}
	id := signup.ID

	b := newBrowser(t, chromium)
	b.do("open the console", chromedp.Navigate(base+"/"))
	b.wait("the sign-in form", `!document.getElementById("view-key").hidden`)
	b.do("paste the operator key",
		chromedp.Click(chromedp.CSS("#key-input")),
		chromedp.KeyEvent(devOperatorKey),
		// Submit would skip the form's JavaScript submit handler.
		chromedp.Click(chromedp.CSS(`#key-form button[type="submit"]`)))

	row := fmt.Sprintf(`#queue tbody tr[data-id=%q]`, id)
	b.wait("the paused customer in the operator queue", fmt.Sprintf(`(() => {
		const r = document.querySelector(%q);
		const paused = document.querySelector("#funnel-states .s-paused .n");
		return !document.getElementById("view-overview").hidden && r !== null &&
			r.cells[1].textContent === "tenant" && r.textContent.includes("Console E2E") &&
			paused !== null && paused.textContent === "1";
	})()`, row))
	b.screenshot("paused.png")

	// The outage is over; the operator retries the step.
	setSimProvider(t, base, "provisioning", `{}`)
	b.clickRetry(row + " button")
	b.wait("the retry dialog", `document.getElementById("action-dialog").open &&
		document.getElementById("action-title").textContent === "Retry" &&
		document.getElementById("action-target").textContent.includes("tenant")`)
	const reason = "provisioning outage is over (console e2e)"
	b.do("confirm the retry with a reason",
		chromedp.Click(chromedp.CSS("#action-reason")),
		chromedp.KeyEvent(reason),
		chromedp.Click(chromedp.CSS("#action-confirm")))
	outcome := b.poll("the retry to be accepted", fmt.Sprintf(`(() => {
		const dialogErr = document.getElementById("action-error");
		if (!dialogErr.hidden) return "the dialog shows: " + dialogErr.textContent;
		return !document.getElementById("action-dialog").open && document.querySelector(%q) === null && "ok";
	})()`, row))
	if outcome != "ok" {
		b.screenshot("retry-failed.png")
		t.Fatalf("retry: %s", outcome)
	}

	// The customer page, reached as from the queue's link, follows the
	// customer live until it is active.
	b.do("open the customer page", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = "#/customers/" + %q`, id)))
	b.wait("the customer active, with the retry in its timeline", fmt.Sprintf(`(() => {
		const state = document.querySelector("#c-state .state");
		const timeline = document.getElementById("timeline").textContent;
		return !document.getElementById("view-customer").hidden && state !== null && state.textContent === "active" &&
			timeline.includes("step retry requested") && timeline.includes(%q);
	})()`, reason))
	b.screenshot("active.png")

	// The console told the truth: the API agrees, and the retry made
	// exactly one tenant.
	status, body = call(t, "GET", base+"/v1/customers/"+id, devOperatorKey, "")
	var c struct{ State string }
	if err := json.Unmarshal(body, &c); status != http.StatusOK || err != nil || c.State != "active" {
		t.Errorf("customer via the API: %d %s", status, body)
	}
	status, body = call(t, "GET", base+"/sim/ledger", "", "")
	var ledger sim.Ledger
	if err := json.Unmarshal(body, &ledger); status != http.StatusOK || err != nil {
		t.Fatalf("ledger: %d %v", status, err)
	}
	if e := ledger.Customers[id]; e.Tenants != 1 || ledger.DuplicateEffects != 0 {
		t.Errorf("effects of %s: %+v, %d duplicates", id, e, ledger.DuplicateEffects)
	}
	b.checkConsole()
}

// chromiumPath finds Debian's chromium. Without it the test skips, except
// in CI, where .ci/run installs it and its absence is a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	const msg = "chromium is not installed (apt-get install chromium; .ci/run installs it): the console end-to-end test needs it"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// setSimProvider replaces one provider's behaviour in the running
// simulator through its admin endpoint.
func setSimProvider(t *testing.T, base, provider, config string) {
	t.Helper()
	if status, body := call(t, "PUT", base+"/sim/admin/config/providers/"+provider, devOperatorKey, config); status != http.StatusOK {
		t.Fatalf("configure the simulator's %s: %d %s", provider, status, body)
	}
}

// browser is one headless Chromium tab with the helpers the test needs.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
	done    chan struct{}
}

func newBrowser(t *testing.T, execPath string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx, dir: t.ArtifactDir(), done: make(chan struct{})}
	// Closing the browser waits for its process, so the profile directory
	// is free before its own cleanup removes it.
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		<-b.done
	})
	// Start the browser with a context that has no deadline: it lives as
	// long as the test, and each step has its own timeout.
	if err := chromedp.Do(ctx); err != nil {
		close(b.done)
		t.Fatalf("start %s: %v", execPath, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		defer close(b.done)
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// do runs steps, failing the test with what was being done.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, consoleWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail("%s: %v", what, err)
	}
}

// poll waits until the JavaScript expression is truthy and returns its
// value as text.
func (b *browser) poll(what, expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, consoleWait+5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[any](expr,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(consoleWait)))
	if err != nil {
		b.fail("waiting %s for %s: %v", consoleWait, what, err)
	}
	return fmt.Sprint(v)
}

func (b *browser) wait(what, expr string) {
	b.t.Helper()
	b.poll(what, expr)
}

// clickRetry presses the first button that matches sel. The console
// redraws the queue every two seconds, so the node found can be replaced
// before the click lands: then it is found again.
func (b *browser) clickRetry(sel string) {
	b.t.Helper()
	var err error
	for range 5 {
		ctx, cancel := context.WithTimeout(b.ctx, consoleWait)
		err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			return
		}
		if open, _ := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.getElementById("action-dialog").open`)); open {
			return
		}
	}
	b.fail("press %s: %v", sel, err)
}

// screenshot writes a PNG of the whole page to the artifact directory.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, consoleWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot: %s", path)
}

// fail records what the page shows, then stops the test.
func (b *browser) fail(format string, args ...any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`)); err == nil {
		b.t.Logf("the page shows:\n%s", text)
	}
	b.screenshot("failure.png")
	b.logConsole()
	b.t.Fatalf(format, args...)
}

func (b *browser) logConsole() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		b.t.Logf("browser console: %s:%d %s", m.URL, m.Line+1, m)
	}
}

// checkConsole fails the test on uncaught exceptions in the console's
// JavaScript; other messages are only logged (a poll that meets a read
// model behind its min_position logs a 504, which the console handles).
func (b *browser) checkConsole() {
	b.t.Helper()
	b.logConsole()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		if m.IsException() {
			b.t.Errorf("uncaught exception in the console: %s:%d %s", m.URL, m.Line+1, m)
		}
	}
}
