package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestReadyz checks that a failing check makes /readyz 503 and an advisory
// one is told in the detail without it.
func TestReadyz(t *testing.T) {
	ok := func(context.Context) error { return nil }
	bad := func(context.Context) error { return errors.New("down") }
	for _, tc := range []struct {
		name   string
		checks []ReadinessCheck
		code   int
	}{
		{"all ok", []ReadinessCheck{{Name: "db", Check: ok}}, http.StatusOK},
		{"a dependency down", []ReadinessCheck{{Name: "db", Check: bad}}, http.StatusServiceUnavailable},
		{"an advisory alert", []ReadinessCheck{{Name: "db", Check: ok}, {Name: "seals", Check: bad, Advisory: true}}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := http.NewServeMux()
			Health{Checks: tc.checks}.Register(mux)
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d", rec.Code, tc.code)
			}
			var body struct {
				Ready  bool              `json:"ready"`
				Checks map[string]string `json:"checks"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body.Ready != (tc.code == http.StatusOK) {
				t.Fatalf("ready %v with status %d", body.Ready, rec.Code)
			}
			for _, c := range tc.checks {
				want := "ok"
				if c.Check(context.Background()) != nil {
					want = "down"
				}
				if body.Checks[c.Name] != want {
					t.Fatalf("check %s: %q, want %q", c.Name, body.Checks[c.Name], want)
				}
			}
		})
	}
}
