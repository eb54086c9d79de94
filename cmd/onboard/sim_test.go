package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/onboard/onboard/providers/sim"
)

// startSim runs `onboard sim` in-process with args on a free port and
// returns its base URL and what it logged.
func startSim(t *testing.T, args ...string) (string, *syncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logs := &syncBuffer{}
	root := newRootCmd()
	root.SetArgs(append([]string{"sim", "--addr", addr}, args...))
	root.SetErr(logs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sim stopped with %v", err)
		}
	})
	base := "http://" + addr
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, logs
			}
		}
		select {
		case err := <-done:
			t.Fatalf("sim stopped: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sim did not start:\n%s", logs.String())
		}
	}
}

// TestSimAdminKey: `onboard sim` serves its admin endpoints only to the key
// of --admin-key or SIM_ADMIN_KEY, and with neither serves the providers
// and refuses the admin endpoints (403) instead of serving them to anyone.
func TestSimAdminKey(t *testing.T) {
	for _, tt := range []struct {
		name     string
		args     []string
		env, key string // SIM_ADMIN_KEY and the key that works ("" none)
	}{
		{name: "flag", args: []string{"--admin-key", "flag-admin-key"}, key: "flag-admin-key"},
		{name: "env", env: "env-admin-key", key: "env-admin-key"},
		{name: "flag over env", args: []string{"--admin-key", "flag-admin-key"}, env: "env-admin-key", key: "flag-admin-key"},
		{name: "none"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(simAdminKeyEnv, tt.env)
			base, logs := startSim(t, tt.args...)
			put := func(key string) int {
				status, body := call(t, "PUT", base+"/sim/admin/config", key, `{"seed":5}`)
				if status >= 500 {
					t.Fatalf("PUT config: %d %s", status, body)
				}
				return status
			}
			if tt.key == "" {
				if got := put("anything"); got != http.StatusForbidden {
					t.Errorf("no key configured: PUT config %d, want 403", got)
				}
				if !strings.Contains(logs.String(), "admin endpoints are disabled") {
					t.Errorf("no warning that the admin endpoints are disabled:\n%s", logs.String())
				}
			} else {
				for _, wrong := range []string{"", "wrong-key", "env-admin-key-not"} {
					if got := put(wrong); got != http.StatusUnauthorized {
						t.Errorf("key %q: PUT config %d, want 401", wrong, got)
					}
				}
				if got := put(tt.key); got != http.StatusOK {
					t.Errorf("the admin key: PUT config %d, want 200", got)
				}
			}
			// The providers' own endpoints need no key.
			status, body := call(t, "POST", base+"/sim/payments/accounts", "", `{"customer_id":"c1","plan":"pro"}`, "Idempotency-Key", "k1")
			if status != http.StatusCreated {
				t.Errorf("provider endpoint: %d %s", status, body)
			}
			if status, _ := call(t, "GET", base+"/sim/ledger", "", ""); status != http.StatusOK {
				t.Errorf("ledger: %d", status)
			}
		})
	}
}

// TestDevSimAdmin: under `onboard dev` the simulator's admin endpoints take
// the operator key, and a PUT of its config that names only providers
// leaves the KYC webhook alone, so signups still get their verdict.
func TestDevSimAdmin(t *testing.T) {
	// With a deadline far away, only the verdict's webhook can move a
	// customer past verification within the test.
	base := startDevWith(t, sim.Config{KYC: sim.KYCConfig{Delay: sim.Latency{Max: sim.Duration(10 * time.Millisecond)}}}, func(o *devOptions) {
		o.process.VerificationDeadline = 10 * time.Minute
	})
	for _, key := range []string{"", devClientKey} {
		if status, _ := call(t, "PUT", base+"/sim/admin/config", key, `{}`); status != http.StatusUnauthorized {
			t.Errorf("key %q: PUT /sim/admin/config %d, want 401", key, status)
		}
	}
	if status, body := call(t, "PUT", base+"/sim/admin/config", devOperatorKey, `{"providers":{"crm":{"latency":{"max":"5ms"}}}}`); status != http.StatusOK {
		t.Fatalf("PUT /sim/admin/config with the operator key: %d %s", status, body)
	}
	status, body := call(t, "POST", base+"/v1/customers", devClientKey,
		`{"email":"merge@example.com","company":"Merge","contact_name":"Tester","country":"SE","plan":"growth"}`, "Idempotency-Key", "merge-1")
	if status != http.StatusAccepted {
		t.Fatalf("signup: %d %s", status, body)
	}
	var c struct{ ID, State string }
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); c.State != "active"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("customer %s is %q after 30s, want active: the KYC webhook did not arrive", c.ID, c.State)
		}
		_, body := call(t, "GET", base+"/v1/customers/"+c.ID, devOperatorKey, "")
		_ = json.Unmarshal(body, &c)
	}
}
