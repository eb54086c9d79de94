package providers_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

// BenchmarkCreateBillingAccount measures one call through the resilience
// layer to the simulator on loopback, each with a fresh idempotency key.
func BenchmarkCreateBillingAccount(b *testing.B) {
	s, err := sim.New(sim.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	srv := newBenchServer(s)
	defer srv.Close()
	pay, err := providers.NewPayments(providers.Config{BaseURL: srv.URL + "/sim/payments"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		c := "c" + strconv.Itoa(i)
		if _, err := pay.CreateBillingAccount(ctx, providers.BillingAccountRequest{CustomerID: c, Plan: "pro", IdempotencyKey: providers.IdempotencyKey(c, "billing", 0)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyWebhook measures the signature check of a typical webhook.
func BenchmarkVerifyWebhook(b *testing.B) {
	body := []byte(`{"id":"evt_000001","type":"check.completed","created":1800000000,"check_id":"chk_000001","customer_id":"0b5e2f5c-3f41-4c5e-9d1a-4f3b2a1c0d9e","status":"approved"}`)
	now := time.Unix(1_800_000_000, 0)
	h := providers.SignWebhook("whsec_dev", now, body)
	for b.Loop() {
		if err := providers.VerifyWebhook("whsec_dev", h, body, now, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}
