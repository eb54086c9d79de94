package httpapi_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onboard/onboard/httpapi"
)

// TestAPIKeyRotation: two keys of one name both work until the old one's
// expiry, then only the new one; they share the name's rate limit.
func TestAPIKeyRotation(t *testing.T) {
	const oldKey, newKey = "old-secret-0123456789", "new-secret-0123456789"
	sum := sha256.Sum256([]byte(newKey))
	keys, err := httpapi.ParseAPIKeys("client:shop:" + oldKey + ":expires=2027-01-31T12:00:00Z,client:shop:sha256=" + hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !keys[0].Expires.Equal(time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC)) || !keys[1].Expires.IsZero() {
		t.Fatalf("parsed %+v", keys)
	}
	var now atomic.Int64
	now.Store(time.Date(2027, 1, 31, 11, 59, 0, 0, time.UTC).UnixNano())
	auth := httpapi.NewAuthenticator(httpapi.AuthConfig{Keys: keys, RatePerSecond: 0.001, Burst: 3,
		Now: func() time.Time { return time.Unix(0, now.Load()) }})
	srv := httptest.NewServer(auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()
	get := func(key string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/customers", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, key := range []string{oldKey, newKey} {
		if status, body := get(key); status != http.StatusNoContent {
			t.Fatalf("before the expiry: %d %s", status, body)
		}
	}
	now.Store(time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC).UnixNano())
	if status, body := get(oldKey); status != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Errorf("the old key at its expiry: %d %s, want 401 expired", status, body)
	}
	if status, body := get(newKey); status != http.StatusNoContent {
		t.Errorf("the new key: %d %s", status, body)
	}
	// Both keys drew from the one limit of "shop": its burst of 3 is spent.
	if status, _ := get(newKey); status != http.StatusTooManyRequests {
		t.Errorf("the fourth request of shop: %d, want 429", status)
	}
}

func TestParseAPIKeysRefuses(t *testing.T) {
	for _, tt := range []struct{ name, spec, want string }{
		{"role changes within a name", "client:shop:secret-0123456789ab,operator:shop:secret-0123456789cd", "another key of that name has role client"},
		{"one secret for two names", "client:a:secret-0123456789ab,client:b:secret-0123456789ab", "the same secret as a key of a"},
		{"bad expiry", "client:a:secret-0123456789ab:expires=soon", `expires="soon"`},
		{"short secret with expiry", "client:a:short:expires=2027-01-01", "at least 16 characters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := httpapi.ParseAPIKeys(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseAPIKeys(%q) = %v, want %q", tt.spec, err, tt.want)
			}
			if strings.Contains(err.Error(), "secret-0123456789") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}
