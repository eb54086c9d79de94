package providers_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

func TestVerifyWebhook(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"evt_1","type":"check.completed","check_id":"chk_1","status":"approved"}`)
	good := providers.SignWebhook("whsec_a", now, body)
	tests := []struct {
		name   string
		secret string
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", "whsec_a", good, body, now, nil},
		{"valid within tolerance", "whsec_a", good, body, now.Add(4 * time.Minute), nil},
		{"valid with a rotated second signature", "whsec_a", providers.SignWebhook("whsec_old", now, body) + ",v1=" + strings.Split(good, "v1=")[1], body, now, nil},
		{"wrong secret", "whsec_b", good, body, now, providers.ErrWebhookSignature},
		{"tampered body", "whsec_a", good, []byte(strings.Replace(string(body), "approved", "rejected", 1)), now, providers.ErrWebhookSignature},
		{"stale", "whsec_a", good, body, now.Add(6 * time.Minute), providers.ErrWebhookStale},
		{"from the future", "whsec_a", good, body, now.Add(-6 * time.Minute), providers.ErrWebhookStale},
		{"timestamp altered", "whsec_a", strings.Replace(good, "t=1800000000", "t=1800000100", 1), body, now, providers.ErrWebhookSignature},
		{"no signature", "whsec_a", "t=1800000000", body, now, providers.ErrWebhookMalformed},
		{"garbage", "whsec_a", "nonsense", body, now, providers.ErrWebhookMalformed},
		{"empty", "whsec_a", "", body, now, providers.ErrWebhookMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := providers.VerifyWebhook(tt.secret, tt.header, tt.body, tt.now, 5*time.Minute)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("VerifyWebhook = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestKYCWebhookEndToEnd starts checks at the simulator, which delivers
// signed webhooks (each twice) to a callback that verifies them and counts
// the second delivery of each id as a replay.
var errReplayed = errors.New("webhook already received")

func TestKYCWebhookEndToEnd(t *testing.T) {
	const secret = "whsec_test"
	type delivery struct {
		ev  providers.WebhookEvent
		err error
	}
	got := make(chan delivery, 16)
	var mu sync.Mutex
	seen := map[string]bool{}
	callback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := providers.VerifyWebhook(secret, r.Header.Get(providers.HeaderWebhookSignature), body, time.Now(), 5*time.Minute)
		if err != nil {
			got <- delivery{err: err}
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		ev, err := providers.ParseWebhook(body)
		if err == nil {
			mu.Lock()
			if seen[ev.ID] {
				err = errReplayed
			}
			seen[ev.ID] = true
			mu.Unlock()
		}
		got <- delivery{ev: ev, err: err}
		w.WriteHeader(http.StatusOK) // a replay is acknowledged, not handled again
	}))
	defer callback.Close()

	s, srv := newSim(t, sim.Config{Seed: 3, KYC: sim.KYCConfig{
		CallbackURL: callback.URL, WebhookSecret: secret, Approve: 1, Reject: 1, DuplicateRate: 1,
	}})
	kyc := must[*providers.KYC](t)(providers.NewKYC(cfgFor(srv, "kyc", fastPolicy(nil))))
	ctx := context.Background()
	checks := map[string]string{} // check id → customer
	for _, c := range []string{"c1", "c2", "c3", "c4"} {
		id, err := kyc.StartCheck(ctx, providers.CheckRequest{CustomerID: c, IdempotencyKey: providers.IdempotencyKey(c, "verification", 0)})
		if err != nil {
			t.Fatal(err)
		}
		checks[id] = c
	}

	first := map[string]providers.WebhookEvent{} // by check id
	replays := 0
	for range 2 * len(checks) {
		var d delivery
		select {
		case d = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("webhook not delivered in 10s")
		}
		switch {
		case errors.Is(d.err, errReplayed):
			replays++
		case d.err != nil:
			t.Fatalf("delivery: %v", d.err)
		default:
			if checks[d.ev.CheckID] != d.ev.CustomerID || d.ev.Type != providers.WebhookTypeCheckCompleted || d.ev.ID == "" {
				t.Fatalf("event %+v does not match a started check", d.ev)
			}
			first[d.ev.CheckID] = d.ev
		}
	}
	if len(first) != len(checks) || replays != len(checks) {
		t.Fatalf("%d first deliveries and %d replays, want %d each", len(first), replays, len(checks))
	}
	verdicts := map[providers.VerdictStatus]int{}
	for id, ev := range first {
		v, err := kyc.GetCheck(ctx, id)
		if err != nil || v.Status != ev.Status || v.Reason != ev.Reason {
			t.Fatalf("GetCheck(%s) = %+v, %v; webhook said %+v", id, v, err, ev)
		}
		verdicts[ev.Status]++
	}
	if verdicts[providers.VerdictApproved]+verdicts[providers.VerdictRejected] != len(checks) {
		t.Fatalf("verdicts %v", verdicts)
	}

	// A webhook signed with another secret is refused by the callback.
	body := []byte(`{"id":"evt_x","type":"check.completed","check_id":"chk_x"}`)
	req, _ := http.NewRequest(http.MethodPost, callback.URL, strings.NewReader(string(body)))
	req.Header.Set(providers.HeaderWebhookSignature, providers.SignWebhook("whsec_wrong", time.Now(), body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if d := <-got; !errors.Is(d.err, providers.ErrWebhookSignature) || res.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged webhook: %v, status %d", d.err, res.StatusCode)
	}
	// The simulator counts a delivery once it has read the answer, which
	// may be just after the callback saw it.
	waitFor(t, func() bool { return s.Ledger().Webhooks.Delivered == 8 })
	w := s.Ledger().Webhooks
	if w.Scheduled != 4 || w.Delivered != 8 || w.Duplicated != 4 || w.Failed != 0 {
		t.Fatalf("webhook counts %+v", w)
	}
}

// TestKYCSilent checks the never-answered check: no webhook, and polling
// keeps answering pending.
func TestKYCSilent(t *testing.T) {
	s, srv := newSim(t, sim.Config{KYC: sim.KYCConfig{Silent: 1, CallbackURL: "http://127.0.0.1:1/unused"}})
	kyc := must[*providers.KYC](t)(providers.NewKYC(cfgFor(srv, "kyc", fastPolicy(nil))))
	id, err := kyc.StartCheck(context.Background(), providers.CheckRequest{CustomerID: "c1", IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := kyc.GetCheck(context.Background(), id)
	if err != nil || v.Status != providers.VerdictPending {
		t.Fatalf("GetCheck = %+v, %v; want pending", v, err)
	}
	if w := s.Ledger().Webhooks; w.Silent != 1 || w.Scheduled != 0 {
		t.Fatalf("webhook counts %+v, want one silent", w)
	}
}
