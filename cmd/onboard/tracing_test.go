package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/onboard/onboard/providers/sim"
)

// TestOneTracePerCustomer follows a signup carrying a W3C traceparent
// through the command API, the relay, the process managers and the provider
// calls: every span of the customer's onboarding belongs to the caller's
// trace.
func TestOneTracePerCustomer(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	base := startDevWith(t, sim.Config{Seed: 3, KYC: sim.KYCConfig{Delay: sim.Latency{Max: sim.Duration(5 * time.Millisecond)}},
		Providers: map[string]sim.ProviderConfig{"payments": {Script: []sim.Fault{sim.Fault503, sim.Fault503, sim.Fault503}}}},
		func(o *devOptions) { o.tracer = tp })

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	status, body := call(t, "POST", base+"/v1/customers", devClientKey,
		`{"email":"traced@example.com","company":"Traced","contact_name":"T","country":"NO","plan":"starter"}`,
		"Idempotency-Key", "traced-1", "Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if status != http.StatusAccepted {
		t.Fatalf("signup: %d %s", status, body)
	}
	var out struct{ ID string }
	_ = json.Unmarshal(body, &out)
	waitFor(t, 60*time.Second, "customer active", func() (bool, string) {
		_, b := call(t, "GET", base+"/v1/customers/"+out.ID, devOperatorKey, "")
		return strings.Contains(string(b), `"state":"active"`), string(b)
	})
	// The last spans end after the state changed; give them a moment.
	waitFor(t, 10*time.Second, "welcome provider span", func() (bool, string) {
		for _, s := range rec.Ended() {
			if s.Name() == "call the welcome provider" {
				return true, ""
			}
		}
		var all []string
		for _, s := range rec.Ended() {
			all = append(all, s.Name())
		}
		return false, strings.Join(all, ", ")
	})

	names := map[string]int{}
	for _, s := range rec.Ended() {
		customer := ""
		for _, a := range s.Attributes() {
			if a.Key == "onboard.customer_id" {
				customer = a.Value.AsString()
			}
		}
		if customer != out.ID && s.Name() != "POST /v1/customers" && !strings.HasPrefix(s.Name(), "call the ") {
			continue
		}
		if got := s.SpanContext().TraceID().String(); got != traceID {
			t.Errorf("span %q is in trace %s, want the signup's %s", s.Name(), got, traceID)
		}
		names[s.Name()]++
	}
	for _, want := range []string{"POST /v1/customers", "react to customer.step_requested.v1", "call the verification provider",
		"POST /v1/webhooks/kyc", "call the billing provider", "fire retry timer", "call the welcome provider"} {
		if names[want] == 0 {
			t.Errorf("no span %q in the customer's trace; spans: %v", want, names)
		}
	}
}
