package httpapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// ReadinessCheck reports whether a dependency (Postgres, NATS, migrations)
// is usable; a nil error means ready.
type ReadinessCheck struct {
	Name  string
	Check func(ctx context.Context) error
	// Advisory checks are reported in the detail, but their failure does
	// not make the process unready: it can serve, and an operator is to
	// look (a restored store the relay found, say).
	Advisory bool
}

// Health serves /healthz (the process is alive) and /readyz (every
// dependency answers).
type Health struct {
	Checks []ReadinessCheck
}

// Register adds the health routes to mux.
func (h Health) Register(mux Mux) {
	handle(mux, "GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	handle(mux, "GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		status, code := map[string]string{}, http.StatusOK
		for _, c := range h.Checks {
			if err := c.Check(ctx); err != nil {
				status[c.Name] = err.Error()
				if !c.Advisory {
					code = http.StatusServiceUnavailable
				}
			} else {
				status[c.Name] = "ok"
			}
		}
		writeJSON(w, code, map[string]any{"ready": code == http.StatusOK, "checks": status})
	})
}

// NewServer returns an http.Server with a timeout on every phase, so that a
// slow or stuck client cannot hold a connection forever.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// Serve runs srv on ln until ctx is done, then shuts it down gracefully:
// in-flight requests get up to grace to finish.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}
