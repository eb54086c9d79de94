package process_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/providers"
)

// TestNoEffectsForACancelledCustomer: a customer cancelled right after the
// signup still has its verification requested; carrying the request out
// would start a KYC check nobody needs. The manager calls no provider for
// it, while it does for a customer still on its way.
func TestNoEffectsForACancelledCustomer(t *testing.T) {
	ctx := context.Background()
	var calls atomic.Int64
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
	}))
	defer provider.Close()
	pm, cmds, _, store := newManager(t, func(p string) providers.Config {
		return providers.Config{BaseURL: provider.URL + "/" + p, Policy: providers.Policy{MaxAttempts: 1}}
	})
	requested := func(n int, cancel bool) {
		t.Helper()
		d := details
		d.Email = fmt.Sprintf("cancelled%d@example.com", n)
		res, err := cmds.SignUp(ctx, d, commands.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		if cancel {
			out, err := cmds.Execute(ctx, res.CustomerID, nil, commands.Meta{Actor: "operator:ada"}, func(c *domain.Customer) error {
				return c.Cancel("operator:ada", "signed up by mistake")
			})
			if err != nil || out.State != domain.StateCancelled {
				t.Fatalf("cancel: %+v, %v", out, err)
			}
		}
		envs, err := store.ReadStream(ctx, commands.StreamID(res.CustomerID), 2)
		if err != nil || envs[0].Type != domain.TypeStepRequested {
			t.Fatalf("the verification request: %+v, %v", envs, err)
		}
		if err := pm.Handle(ctx, envs[0]); err != nil {
			t.Fatal(err)
		}
	}
	requested(1, true)
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d provider calls for a cancelled customer, want none", n)
	}
	requested(2, false)
	if calls.Load() == 0 {
		t.Fatal("no provider call for a customer on its way: the check above proves nothing")
	}
}
