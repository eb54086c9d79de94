package sim

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// The admin endpoints change what every later request meets and read the
// webhook secret, so they answer only to the admin key; the provider
// endpoints and the ledger stay open, as the providers' contracts are.
func (s *Simulator) adminRoutes(m *http.ServeMux) {
	m.Handle("GET /admin/config", s.admin(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Config()) }))
	m.Handle("PUT /admin/config", s.admin(s.putConfig))
	m.Handle("GET /admin/config/providers/{name}", s.admin(s.getProvider))
	m.Handle("PUT /admin/config/providers/{name}", s.admin(s.putProvider))
	m.Handle("GET /admin/stats", s.admin(func(w http.ResponseWriter, _ *http.Request) {
		out := map[string]Stats{}
		for _, p := range ProviderNames() {
			out[p] = s.Stats(p)
		}
		writeJSON(w, http.StatusOK, out)
	}))
	m.Handle("POST /admin/reset", s.admin(func(w http.ResponseWriter, _ *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	}))
}

// admin lets a request through when it carries the admin key (as
// "Authorization: Bearer <key>" or "X-API-Key: <key>"). Without a key
// configured no request can pass: the endpoints answer 403, since no
// credential would help, and say how to configure one.
func (s *Simulator) admin(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.adminKey == "" {
			writeError(w, http.StatusForbidden, "authentication_error", "admin_disabled",
				"the admin endpoints are disabled: no admin key is configured (onboard sim --admin-key or SIM_ADMIN_KEY)")
			return
		}
		key := r.Header.Get("X-API-Key")
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			key = strings.TrimSpace(bearer)
		}
		// Comparing digests keeps the comparison's time independent of
		// the key's length as well as of its content.
		got, want := sha256.Sum256([]byte(key)), sha256.Sum256([]byte(s.adminKey))
		if key == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sim-admin"`)
			writeError(w, http.StatusUnauthorized, "authentication_error", "invalid_admin_key",
				"the admin endpoints need the admin key (Authorization: Bearer <key>)")
			return
		}
		next(w, r)
	})
}

// configPatch is what PUT /admin/config reads: the fields of Config it
// names, each merged into the current configuration.
type configPatch struct {
	Seed      *uint64                    `json:"seed"`
	Providers map[string]json.RawMessage `json:"providers"`
	KYC       json.RawMessage            `json:"kyc"`
}

// errPatchJSON marks a patch that is not JSON of the configuration's shape
// (400), as opposed to a well-formed but invalid configuration (422).
var errPatchJSON = errors.New("malformed configuration")

// PatchConfig merges the JSON document patch, of the configuration's shape,
// into the current configuration: every field it does not name keeps its
// value, at any depth (a provider it names keeps the fields it does not
// name; a provider it does not name keeps its whole configuration). Lists
// (transient_kinds, script) are replaced. A new seed restarts the random
// sequence. The result is validated as a whole and applied only if valid.
func (s *Simulator) PatchConfig(patch []byte) error {
	var p configPatch
	if err := json.Unmarshal(patch, &p); err != nil {
		return fmt.Errorf("%w: %w", errPatchJSON, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := cloneConfig(s.cfg)
	if p.Seed != nil {
		cfg.Seed = *p.Seed
	}
	for name, raw := range p.Providers {
		pc := cfg.Providers[name]
		if err := json.Unmarshal(raw, &pc); err != nil {
			return fmt.Errorf("%w: provider %s: %w", errPatchJSON, name, err)
		}
		cfg.Providers[name] = pc
	}
	if len(p.KYC) > 0 {
		if err := json.Unmarshal(p.KYC, &cfg.KYC); err != nil {
			return fmt.Errorf("%w: kyc: %w", errPatchJSON, err)
		}
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("sim config: %w", err)
	}
	if cfg.Seed != s.cfg.Seed {
		s.rng = newRand(cfg.Seed)
	}
	s.cfg = cfg
	return nil
}

func (s *Simulator) putConfig(w http.ResponseWriter, r *http.Request) {
	var raw json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_json", err.Error())
		return
	}
	switch err := s.PatchConfig(raw); {
	case errors.Is(err, errPatchJSON):
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_json", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusUnprocessableEntity, "invalid_request_error", "invalid_config", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.Config())
}

func (s *Simulator) getProvider(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	cfg := s.Config()
	p, ok := cfg.Providers[name]
	if !ok {
		if !slices.Contains(ProviderNames(), name) {
			writeError(w, http.StatusNotFound, "invalid_request_error", "unknown_provider", "unknown provider "+name)
			return
		}
		p.setDefaults()
	}
	writeJSON(w, http.StatusOK, p)
}

// putProvider replaces one provider's whole configuration: the fields the
// body does not name take their defaults. It is the way to clear a
// provider's faults, which a merge of PUT /admin/config cannot.
func (s *Simulator) putProvider(w http.ResponseWriter, r *http.Request) {
	var p ProviderConfig
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_json", err.Error())
		return
	}
	if err := s.SetProvider(r.PathValue("name"), p); err != nil {
		writeError(w, http.StatusUnprocessableEntity, "invalid_request_error", "invalid_config", err.Error())
		return
	}
	s.getProvider(w, r)
}
