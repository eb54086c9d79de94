package providers_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := providers.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := providers.NewMetrics(reg); err == nil {
		t.Fatal("registering twice succeeded")
	}
	s, srv := newSim(t, sim.Config{})
	p := fastPolicy(nil)
	p.Hooks = m.Hooks()
	p.MaxAttempts = 1
	p.Breaker.FailureThreshold = 1
	p.Breaker.OpenTimeout = 1 << 62
	crm := must[*providers.CRM](t)(providers.NewCRM(cfgFor(srv, "crm", p)))
	if _, err := crm.UpsertAccount(context.Background(), providers.CRMAccount{ExternalID: "c1", IdempotencyKey: "k1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetProvider("crm", sim.ProviderConfig{TransientRate: 1, TransientKinds: []sim.Fault{sim.Fault503}}); err != nil {
		t.Fatal(err)
	}
	if _, err := crm.UpsertAccount(context.Background(), providers.CRMAccount{ExternalID: "c1", IdempotencyKey: "k2"}); err == nil {
		t.Fatal("want an error")
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			name := f.GetName()
			for _, l := range mt.GetLabel() {
				name += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case mt.Gauge != nil:
				got[name] = mt.GetGauge().GetValue()
			case mt.Counter != nil:
				got[name] = mt.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{
		"onboard_external_breaker_state,provider=crm":                                     float64(providers.BreakerOpen),
		"onboard_external_attempts_total,op=UpsertAccount,outcome=success,provider=crm":   1,
		"onboard_external_attempts_total,op=UpsertAccount,outcome=transient,provider=crm": 1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
