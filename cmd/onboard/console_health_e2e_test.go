package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/onboard/onboard/providers/sim"
)

// TestConsoleProviderHealth: with payments down, the console's provider
// health panel shows its breaker open, the outage, the customers waiting
// on it and a chart of its calls; once payments is back and the waiting
// customers resumed, it shows payments up with nobody waiting.
func TestConsoleProviderHealth(t *testing.T) {
	chromium := chromiumPath(t)
	base := startDevWith(t, sim.Config{Seed: 27, KYC: sim.KYCConfig{Delay: sim.Latency{Max: sim.Duration(20 * time.Millisecond)}}},
		func(o *devOptions) {
			o.tune = func(c *runConfig) {
				for i := range c.providers {
					c.providers[i].Policy.Breaker.OpenTimeout = time.Second
				}
				c.outages.ProbeEvery = time.Second
			}
		})
	setSimProvider(t, base, "payments", `{"outage":{"down":true}}`)
	for i := range 3 {
		status, body := call(t, "POST", base+"/v1/customers", devClientKey,
			fmt.Sprintf(`{"email":"health%d@example.com","company":"Health %d","contact_name":"Tester","country":"SE","plan":"growth"}`, i, i),
			"Idempotency-Key", fmt.Sprintf("health-%d", i))
		if status != http.StatusAccepted {
			t.Fatalf("signup: %d %s", status, body)
		}
	}

	b := newBrowser(t, chromium)
	b.do("open the console", chromedp.Navigate(base+"/"))
	b.wait("the sign-in form", `!document.getElementById("view-key").hidden`)
	b.do("paste the operator key",
		chromedp.Click(chromedp.CSS("#key-input")),
		chromedp.KeyEvent(devOperatorKey),
		chromedp.Click(chromedp.CSS(`#key-form button[type="submit"]`)))
	row := `#health tbody tr[data-provider="payments"]`
	b.wait("payments down, with customers waiting and a chart", fmt.Sprintf(`(() => {
		const r = document.querySelector(%q);
		return r !== null && r.cells[2].textContent === "down" && Number(r.cells[3].textContent) === 3 &&
			r.querySelectorAll("svg.spark polyline").length === 2 && r.querySelector("svg.spark .err").getAttribute("points") !== "";
	})()`, row))
	b.screenshot("payments-down.png")

	setSimProvider(t, base, "payments", `{}`)
	b.wait("payments up again, nobody waiting", fmt.Sprintf(`(() => {
		const r = document.querySelector(%q);
		return r !== null && r.cells[2].textContent === "up" && r.cells[3].textContent === "0" && r.cells[1].textContent === "closed";
	})()`, row))
	b.screenshot("payments-up.png")
	b.checkConsole()
}
