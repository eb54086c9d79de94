package httpapi

import (
	"context"
	"net/http"

	"github.com/onboard/onboard/providers"
)

// ProviderHealth reads every provider's health (breaker, outage, waiting
// customers, recent calls); process.HealthReader implements it.
type ProviderHealth interface {
	Health(ctx context.Context) ([]providers.Health, error)
}

// providerHealth serves GET /v1/providers.
func (a *QueryAPI) providerHealth(w http.ResponseWriter, r *http.Request) {
	if _, err := readQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	out := []providers.Health{}
	if a.cfg.Health != nil {
		h, err := a.cfg.Health.Health(r.Context())
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out = h
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": out})
}
