package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers/sim"
)

// TestPaymentsOutage: payments goes down while customers sign up and comes
// back outageDuration later. The customers that reach billing meanwhile
// wait on payments (blocked_on) instead of spending their attempts; none
// is paused, the outage raises exactly one alert (one event on the
// provider's stream, one log line, one count of the metric), and once
// payments answers again every customer is active within the end of the
// outage + signups / resume rate + 30 s, each with exactly one effect of
// each kind in the simulator's ledger.
func TestPaymentsOutage(t *testing.T) {
	const rate = 20.0 // ONBOARD_RESUME_RATE's default
	logs := &syncBuffer{}
	base := startDevWith(t, sim.Config{Seed: 26, KYC: sim.KYCConfig{Delay: sim.Latency{Max: sim.Duration(50 * time.Millisecond)}}},
		func(o *devOptions) {
			o.logs, o.logLevel = logs, slog.LevelError
			o.tune = func(c *runConfig) {
				for i := range c.providers {
					// A breaker that stays open 30 s (the default) would
					// hold the first probe after the outage that long.
					c.providers[i].Policy.Breaker.OpenTimeout = 2 * time.Second
				}
				c.outages = process.OutageConfig{ResumeRate: rate, ProbeEvery: time.Second}
			}
		})
	admin := func(body string) {
		t.Helper()
		if status, out := call(t, "PUT", base+"/sim/admin/config/providers/payments", devOperatorKey, body); status != http.StatusOK {
			t.Fatalf("sim admin: %d %s", status, out)
		}
	}
	admin(`{"outage":{"down":true}}`)
	start := time.Now()
	ids := signUpDuring(t, base, outageSignups, outageDuration/2)
	waitFor(t, outageDuration, "a customer waiting on payments", func() (bool, string) {
		_, body := call(t, "GET", base+"/v1/customers/"+ids[0], devOperatorKey, "")
		return strings.Contains(string(body), `"blocked_on":"payments"`), string(body)
	})
	checkProviderHealth(t, base, "down")
	time.Sleep(time.Until(start.Add(outageDuration)))
	admin(`{}`)
	end := time.Now()
	limit := end.Add(time.Duration(float64(outageSignups)/rate*float64(time.Second)) + 30*time.Second)
	waitFor(t, time.Until(limit), fmt.Sprintf("all %d customers active", outageSignups), func() (bool, string) {
		_, body := call(t, "GET", base+"/v1/stats/funnel", devOperatorKey, "")
		var f struct{ States map[string]int }
		_ = json.Unmarshal(body, &f)
		return f.States["active"] == outageSignups, string(body)
	})
	t.Logf("%d customers active %.1fs after the %s outage ended (limit %.1fs)", outageSignups, time.Since(end).Seconds(), outageDuration, limit.Sub(end).Seconds())

	checkOutageEvents(t)
	if n := strings.Count(logs.String(), "provider outage: customers wait for it"); n != 1 {
		t.Errorf("%d outage alert log lines, want 1", n)
	}
	_, metrics := call(t, "GET", base+"/metrics", "", "")
	if want := `onboard_provider_outage_alerts_total{provider="payments"} 1`; !strings.Contains(string(metrics), want) {
		t.Errorf("metrics lack %q", want)
	}
	checkOneEffectEach(t, base, ids)
}

// signUpDuring signs n customers up, spread over d, and returns their ids.
func signUpDuring(t *testing.T, base string, n int, d time.Duration) []string {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		time.Sleep(d / time.Duration(n))
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body := call(t, "POST", base+"/v1/customers", devClientKey,
				fmt.Sprintf(`{"email":"outage%d@example.com","company":"Outage %d","contact_name":"Tester","country":"SE","plan":"growth"}`, i, i),
				"Idempotency-Key", fmt.Sprintf("outage-%d", i))
			if status != http.StatusAccepted {
				t.Errorf("signup %d: %d %s", i, status, body)
				return
			}
			var out struct{ ID string }
			_ = json.Unmarshal(body, &out)
			ids[i] = out.ID
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return ids
}

// checkProviderHealth: GET /v1/providers shows payments in the outage,
// with customers waiting on it.
func checkProviderHealth(t *testing.T, base, outage string) {
	t.Helper()
	waitFor(t, 30*time.Second, "payments "+outage+" in GET /v1/providers", func() (bool, string) {
		status, body := call(t, "GET", base+"/v1/providers", devOperatorKey, "")
		var out struct {
			Providers []struct {
				Provider, Outage string
				Waiting          int
			}
		}
		_ = json.Unmarshal(body, &out)
		for _, p := range out.Providers {
			if p.Provider == "payments" {
				return status == http.StatusOK && p.Outage == outage && p.Waiting > 0, string(body)
			}
		}
		return false, string(body)
	})
}

// checkOutageEvents: no customer was ever paused, and payments' stream has
// one outage: started (the alert), recovered, ended.
func checkOutageEvents(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var paused, blocked int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE type = 'customer.paused.v1'), count(*) FILTER (WHERE type = 'customer.blocked.v1') FROM events`).Scan(&paused, &blocked); err != nil {
		t.Fatal(err)
	}
	if paused != 0 || blocked == 0 {
		t.Errorf("%d customers paused (want 0), %d waits (want some)", paused, blocked)
	}
	want := "provider.outage_started.v1 provider.outage_recovered.v1 provider.outage_ended.v1"
	waitFor(t, 10*time.Second, "the outage's end", func() (bool, string) {
		var got []string
		rows, err := pool.Query(ctx, `SELECT type FROM events WHERE stream_id = 'provider-payments' ORDER BY version`)
		if err != nil {
			return false, err.Error()
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			_ = rows.Scan(&s)
			got = append(got, s)
		}
		return strings.Join(got, " ") == want, strings.Join(got, " ")
	})
}

// checkOneEffectEach: the ledger holds exactly one effect of each kind per
// customer.
func checkOneEffectEach(t *testing.T, base string, ids []string) {
	t.Helper()
	status, body := call(t, "GET", base+"/sim/ledger", "", "")
	var ledger sim.Ledger
	if err := json.Unmarshal(body, &ledger); status != http.StatusOK || err != nil {
		t.Fatalf("ledger: %d %v", status, err)
	}
	if ledger.DuplicateEffects != 0 {
		t.Errorf("%d duplicate effects", ledger.DuplicateEffects)
	}
	for _, id := range ids {
		e := ledger.Customers[id]
		if e.BillingAccounts != 1 || e.Subscriptions != 1 || e.Tenants != 1 || e.CRMRecords != 1 || e.EmailsByType["welcome"] != 1 {
			t.Errorf("customer %s: effects %+v", id, e)
		}
	}
}
