package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/providers/sim"
)

// TestConsoleOperatorTools drives the console's operator tools in headless
// Chromium: 20 signups paused by one provisioning cause show as one group;
// its bulk retry is confirmed with the count and a reason, and its progress
// climbs to 20 of 20 at ONBOARD_BULK_RATE; a customer's page shows the
// diagnosis, the provider calls and a past state as a table; a dead letter
// is re-driven from its list; and at 420 px wide neither page scrolls
// sideways.
func TestConsoleOperatorTools(t *testing.T) {
	chromium := chromiumPath(t)
	t.Setenv("ONBOARD_BULK_RATE", "2")
	base := startDev(t, sim.Config{Seed: 13, KYC: sim.KYCConfig{Delay: sim.Latency{Max: sim.Duration(20 * time.Millisecond)}}})
	setSimProvider(t, base, "provisioning", `{"permanent_rate":1}`)
	const n = 20
	var first string
	for i := range n {
		status, body := call(t, "POST", base+"/v1/customers", devClientKey,
			fmt.Sprintf(`{"email":"console-bulk-%d@example.com","company":"Console Bulk %d","contact_name":"T","country":"SE","plan":"growth"}`, i, i),
			"Idempotency-Key", fmt.Sprintf("console-bulk-%d", i))
		if status != http.StatusAccepted {
			t.Fatalf("signup: %d %s", status, body)
		}
		if i == 0 {
			first = strings.Split(strings.Split(string(body), `"id":"`)[1], `"`)[0]
		}
	}

	b := newBrowser(t, chromium)
	b.do("open the console", chromedp.Navigate(base+"/"))
	b.wait("the sign-in form", `!document.getElementById("view-key").hidden`)
	b.do("paste the operator key",
		chromedp.Click(chromedp.CSS("#key-input")),
		chromedp.KeyEvent(devOperatorKey),
		chromedp.Click(chromedp.CSS(`#key-form button[type="submit"]`)))
	const group = `#groups .group[data-step="tenant"]`
	b.wait("one group of 20 paused at the tenant step", fmt.Sprintf(`(() => {
		const g = document.querySelectorAll("#groups .group");
		return g.length === 1 && g[0].matches(%q) && g[0].textContent.includes("Retry all %d");
	})()`, group, n))
	b.screenshot("groups.png")

	setSimProvider(t, base, "provisioning", `{}`)
	b.clickRetry(group + " button")
	b.wait("the bulk dialog with the count", fmt.Sprintf(`document.getElementById("bulk-dialog").open &&
		document.getElementById("bulk-title").textContent === "Retry %d customers" &&
		document.getElementById("bulk-target").textContent.includes("%d paused customers")`, n, n))
	b.do("confirm the bulk retry with a reason",
		chromedp.Click(chromedp.CSS("#bulk-reason")),
		chromedp.KeyEvent("provisioning validation fixed (console e2e)"),
		chromedp.Click(chromedp.CSS("#bulk-confirm")))
	// Each look at the progress is remembered, to see it climb.
	progress := b.poll("the bulk retry to finish", fmt.Sprintf(`(() => {
		window.seenProgress = window.seenProgress || [];
		const p = document.querySelector("#bulks li .bulk-progress");
		if (p && !window.seenProgress.includes(p.textContent)) window.seenProgress.push(p.textContent);
		const li = document.querySelector("#bulks li");
		return li !== null && li.dataset.status === "done" && p.textContent.startsWith("%d of %d done") && window.seenProgress.join(" | ");
	})()`, n, n))
	b.screenshot("bulk-done.png")
	between := 0
	for _, seen := range strings.Split(progress, " | ") {
		if !strings.HasPrefix(seen, "0 of") && !strings.HasPrefix(seen, fmt.Sprintf("%d of", n)) {
			between++
		}
	}
	if between == 0 {
		t.Errorf("the progress never showed a value between 0 and %d: %s", n, progress)
	}
	t.Logf("progress seen: %s", progress)

	b.do("open a customer", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = "#/customers/" + %q`, first)))
	b.wait("the customer's diagnosis and provider calls", `(() => {
		const d = document.getElementById("c-diagnosis");
		return !d.hidden && d.textContent.startsWith("active since") &&
			document.querySelectorAll("#calls tbody tr.o-failed").length === 1 &&
			document.querySelectorAll("#calls tbody tr.o-succeeded").length === 4;
	})()`)
	b.do("show the state after the first event", chromedp.Click(chromedp.CSS("#timeline li button")))
	b.wait("the past state as a table", `(() => {
		const body = document.getElementById("state-at-body");
		return !document.getElementById("state-at").hidden && body.querySelector("table.steps-table tbody tr") !== null &&
			body.querySelector("pre") === null && body.textContent.includes("verification");
	})()`)

	deadLetter(t, first)
	b.do("open the overview", chromedp.Evaluate[chromedp.Void](`location.hash = "#/"`))
	b.wait("the dead letter listed", `document.querySelector("#deadletters tbody tr button") !== null`)
	b.clickRetry("#deadletters tbody tr button")
	b.wait("the dead letter re-driven", `document.getElementById("toasts").textContent.includes("sent to pm-verification again")`)

	b.do("narrow the window to 420 px", chromedp.EmulateViewport(420, 900))
	for _, page := range []string{"#/", "#/customers/" + first} {
		b.do("open "+page, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = %q`, page)))
		time.Sleep(3 * time.Second) // a refresh or two at the new width
		b.wait("no sideways scroll on "+page, `document.documentElement.scrollWidth <= window.innerWidth`)
	}
	b.screenshot("narrow-customer.png")
	b.checkConsole()
}

// deadLetter records a dead letter of the customer's signed_up event for the
// verification manager, as its router would have after giving up on it.
func deadLetter(t *testing.T, customer string) {
	t.Helper()
	ctx := context.Background()
	pool, err := openPool(ctx, os.Getenv("DATABASE_URL"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	envs, err := store.ReadStream(ctx, commands.StreamID(uuid.MustParse(customer)), 1)
	if err != nil || len(envs) == 0 {
		t.Fatalf("read the customer: %v", err)
	}
	payload, err := messaging.MarshalEnvelope(envs[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `INSERT INTO messaging_dead_letters (handler, event_id, event_type, stream_id, subject, error, deliveries, payload, headers)
		VALUES ('pm-verification', $1, $2, $3, 'onboarding.events', 'test: the handler gave up', 5, $4, '{}')`,
		envs[0].ID, envs[0].Type, envs[0].StreamID, payload)
	if err != nil {
		t.Fatal(err)
	}
}
