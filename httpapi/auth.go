package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
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
// Several keys may share a name (and then must share its role): that is
// how a key is rotated, the new one added beside the old until the old
// expires. The name is the principal and what the rate limit counts.
type APIKey struct {
	Name string
	Role Role
	Hash [sha256.Size]byte
	// Expires, when not zero, is when the key stops being accepted.
	Expires time.Time
}

// Expired reports whether the key is no longer accepted at now.
func (k APIKey) Expired(now time.Time) bool { return !k.Expires.IsZero() && !now.Before(k.Expires) }

// expiresSuffix introduces a key's optional expiry, after its secret.
const expiresSuffix = ":expires="

// ParseAPIKeys reads keys from a comma-separated list of
// "role:name:secret" entries (the ONBOARD_API_KEYS format). A secret may be
// given as "sha256=<hex>" to keep the plain secret out of the
// configuration, and be followed by ":expires=<time>" (RFC 3339, or a date
// for midnight UTC) after which the key is refused.
func ParseAPIKeys(spec string) ([]APIKey, error) {
	var keys []APIKey
	var errs []error
	roles, secrets := map[string]Role{}, map[[sha256.Size]byte]string{}
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		k, err := parseAPIKey(entry)
		if err != nil {
			errs = append(errs, fmt.Errorf("api key %d%w", i+1, err))
			continue
		}
		if r, ok := roles[k.Name]; ok && r != k.Role {
			errs = append(errs, fmt.Errorf("api key %d (%s): role %s, but another key of that name has role %s", i+1, k.Name, k.Role, r))
			continue
		}
		if other, ok := secrets[k.Hash]; ok {
			errs = append(errs, fmt.Errorf("api key %d (%s): the same secret as a key of %s", i+1, k.Name, other))
			continue
		}
		roles[k.Name], secrets[k.Hash] = k.Role, k.Name
		keys = append(keys, k)
	}
	return keys, errors.Join(errs...)
}

// parseAPIKey reads one "role:name:secret[:expires=time]" entry; its
// errors start with the key's name in parentheses and never show the
// secret.
func parseAPIKey(entry string) (APIKey, error) {
	parts := strings.SplitN(entry, ":", 3)
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return APIKey{}, errors.New(": want role:name:secret")
	}
	k := APIKey{Name: parts[1], Role: Role(parts[0])}
	if k.Role != RoleClient && k.Role != RoleOperator && k.Role != RoleProvider {
		return k, fmt.Errorf(" (%s): unknown role %q", k.Name, parts[0])
	}
	secret := parts[2]
	if i := strings.LastIndex(secret, expiresSuffix); i >= 0 {
		raw := secret[i+len(expiresSuffix):]
		secret = secret[:i]
		t, err := time.Parse(time.RFC3339, raw)
		if err != nil {
			t, err = time.Parse(time.DateOnly, raw)
		}
		if err != nil {
			return k, fmt.Errorf(" (%s): expires=%q: want an RFC 3339 time or a date (2027-01-31)", k.Name, raw)
		}
		k.Expires = t
	}
	if hexHash, ok := strings.CutPrefix(secret, "sha256="); ok {
		sum, err := hex.DecodeString(hexHash)
		if err != nil || len(sum) != sha256.Size {
			return k, fmt.Errorf(" (%s): sha256= needs 64 hex digits", k.Name)
		}
		copy(k.Hash[:], sum)
		return k, nil
	}
	if len(secret) < 16 {
		return k, fmt.Errorf(" (%s): secret must have at least 16 characters", k.Name)
	}
	k.Hash = sha256.Sum256([]byte(secret))
	return k, nil
}

// AuthConfig configures Authenticator.
type AuthConfig struct {
	Keys []APIKey
	// RatePerSecond and Burst limit each key's requests; zero rate means
	// 50/s with a burst of 100.
	RatePerSecond float64
	Burst         int
	// Now is the clock for keys' expiry; default time.Now.
	Now func() time.Time
}

// Authenticator checks API keys and roles and limits each key's rate.
type Authenticator struct {
	keys     []APIKey
	now      func() time.Time
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Authenticator{keys: cfg.Keys, now: cfg.Now, rate: rate.Limit(cfg.RatePerSecond), burst: cfg.Burst, limiters: map[string]*rate.Limiter{}}
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
		if !ok || key.Expired(a.now()) {
			detail := "unknown API key"
			if ok {
				detail = "expired API key"
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="onboard", error="invalid_token"`)
			writeProblem(w, Problem{Type: ProblemUnauthorized, Status: http.StatusUnauthorized, Detail: detail})
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
