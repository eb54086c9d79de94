package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// APIKey is a configured key. Only the SHA-256 of the secret is kept.
type APIKey struct {
	Name string
	Role Role
	Hash [sha256.Size]byte
}

// ParseAPIKeys reads keys from a comma-separated list of
// "role:name:secret" entries (the ONBOARD_API_KEYS format). A secret may be
// given as "sha256=<hex>" to keep the plain secret out of the
// configuration.
func ParseAPIKeys(spec string) ([]APIKey, error) {
	var keys []APIKey
	var errs []error
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		parts := strings.SplitN(entry, ":", 3)
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
			errs = append(errs, fmt.Errorf("api key %d: want role:name:secret", i+1))
			continue
		}
		role := Role(parts[0])
		if role != RoleClient && role != RoleOperator && role != RoleProvider {
			errs = append(errs, fmt.Errorf("api key %d (%s): unknown role %q", i+1, parts[1], parts[0]))
			continue
		}
		k := APIKey{Name: parts[1], Role: role}
		if hexHash, ok := strings.CutPrefix(parts[2], "sha256="); ok {
			if _, err := fmt.Sscanf(hexHash, "%x", &k.Hash); err != nil || len(hexHash) != 2*sha256.Size {
				errs = append(errs, fmt.Errorf("api key %d (%s): sha256= needs 64 hex digits", i+1, parts[1]))
				continue
			}
		} else if len(parts[2]) < 16 {
			errs = append(errs, fmt.Errorf("api key %d (%s): secret must have at least 16 characters", i+1, parts[1]))
			continue
		} else {
			k.Hash = sha256.Sum256([]byte(parts[2]))
		}
		keys = append(keys, k)
	}
	return keys, errors.Join(errs...)
}

// AuthConfig configures Authenticator.
type AuthConfig struct {
	Keys []APIKey
	// RatePerSecond and Burst limit each key's requests; zero rate means
	// 50/s with a burst of 100.
	RatePerSecond float64
	Burst         int
}

// Authenticator checks API keys and roles and limits each key's rate.
type Authenticator struct {
	keys     []APIKey
	rate     rate.Limit
	burst    int
	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// NewAuthenticator returns an Authenticator over cfg.Keys.
func NewAuthenticator(cfg AuthConfig) *Authenticator {
	if cfg.RatePerSecond <= 0 {
		cfg.RatePerSecond, cfg.Burst = 50, 100
	}
	if cfg.Burst <= 0 {
		cfg.Burst = int(math.Ceil(cfg.RatePerSecond))
	}
	return &Authenticator{keys: cfg.Keys, rate: rate.Limit(cfg.RatePerSecond), burst: cfg.Burst, limiters: map[string]*rate.Limiter{}}
}

// lookup finds the key whose hash matches secret, comparing every key in
// constant time so that timing reveals nothing about which one is close.
func (a *Authenticator) lookup(secret string) (APIKey, bool) {
	sum := sha256.Sum256([]byte(secret))
	var found APIKey
	ok := false
	for _, k := range a.keys {
		if subtle.ConstantTimeCompare(sum[:], k.Hash[:]) == 1 {
			found, ok = k, true
		}
	}
	return found, ok
}

func (a *Authenticator) limiter(name string) *rate.Limiter {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.limiters[name]
	if !ok {
		l = rate.NewLimiter(a.rate, a.burst)
		a.limiters[name] = l
	}
	return l
}

// Middleware authenticates the request by its key (Authorization: Bearer
// <key>, or X-API-Key), checks the route's rule in Routes and the key's
// rate, and puts the Principal into the request context. Public routes
// pass without a key. A request that no route serves needs a valid key
// all the same, so that probing without one tells nothing.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rule, known := ruleOf(r)
		if known && rule.Public != "" {
			next.ServeHTTP(w, r)
			return
		}
		secret := r.Header.Get("X-API-Key")
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			secret = strings.TrimSpace(bearer)
		}
		if secret == "" {
			unauthorized(w, "an API key is required (Authorization: Bearer <key>)")
			return
		}
		key, ok := a.lookup(secret)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onboard", error="invalid_token"`)
			writeProblem(w, Problem{Type: ProblemUnauthorized, Status: http.StatusUnauthorized, Detail: "unknown API key"})
			return
		}
		if known && !rule.Allows(key.Role) {
			forbidden(w, r, key.Role)
			return
		}
		if res := a.limiter(key.Name).Reserve(); res.Delay() > 0 {
			res.Cancel()
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(a.retryAfter().Seconds())))))
			writeProblem(w, Problem{Type: ProblemRateLimited, Status: http.StatusTooManyRequests, Detail: "rate limit exceeded for this API key"})
			return
		}
		next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), Principal{Name: key.Name, Role: key.Role})))
	})
}

func (a *Authenticator) retryAfter() time.Duration {
	return time.Duration(float64(time.Second) / float64(a.rate))
}
