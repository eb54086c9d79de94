package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sync"
)

// maxIdempotencyKeyLength bounds the Idempotency-Key header.
const maxIdempotencyKeyLength = 255

// idempotencyKey returns the request's Idempotency-Key, checked: printable
// ASCII, 1 to 255 characters.
func idempotencyKey(r *http.Request, required bool) (string, error) {
	values := r.Header.Values("Idempotency-Key")
	if len(values) == 0 {
		if required {
			return "", badRequest(ProblemIdempotencyKey, http.StatusBadRequest, "the Idempotency-Key header is required")
		}
		return "", nil
	}
	if len(values) > 1 {
		return "", badRequest(ProblemIdempotencyKey, http.StatusBadRequest, "give one Idempotency-Key header, not %d", len(values))
	}
	key := values[0]
	if key == "" || len(key) > maxIdempotencyKeyLength {
		return "", badRequest(ProblemIdempotencyKey, http.StatusBadRequest, "the Idempotency-Key must have 1 to %d characters", maxIdempotencyKeyLength)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return "", badRequest(ProblemIdempotencyKey, http.StatusBadRequest, "the Idempotency-Key must be printable ASCII without spaces")
		}
	}
	return key, nil
}

// fingerprint identifies a request's content for idempotency: the same key
// with another fingerprint is a client error.
func fingerprint(r *http.Request, body []byte) string {
	h := sha256.New()
	h.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// inFlight tracks the idempotency keys whose first request is still being
// handled in this process, so that a concurrent repeat is told 409 instead
// of racing it. Across processes the store's unique key decides.
type inFlight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func (f *inFlight) begin(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[string]struct{}{}
	}
	if _, busy := f.keys[key]; busy {
		return false
	}
	f.keys[key] = struct{}{}
	return true
}

func (f *inFlight) end(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys, key)
}
