package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/onboard/onboard/httpapi"
)

// TestRateLimitPerKey: a key over its rate gets 429 with Retry-After, and
// another key is not affected.
func TestRateLimitPerKey(t *testing.T) {
	keys, err := httpapi.ParseAPIKeys("client:a:" + clientKey + ",client:b:" + client2Key)
	if err != nil {
		t.Fatal(err)
	}
	auth := httpapi.NewAuthenticator(httpapi.AuthConfig{Keys: keys, RatePerSecond: 1, Burst: 3})
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := httptest.NewServer(auth.Middleware(ok))
	defer srv.Close()
	get := func(key string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/customers", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := 0; i < 3; i++ {
		if resp := get(clientKey); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("request %d within the burst: %d", i, resp.StatusCode)
		}
	}
	resp := get(clientKey)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("over the rate: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if resp := get(client2Key); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("another key was limited too: %d", resp.StatusCode)
	}
}
