package httpapi

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the API's contract, served at /openapi.yaml and held true by
// a test that compares it with the routes served.
//
//go:embed openapi.yaml
var OpenAPI []byte

// RegisterOpenAPI serves the contract.
func RegisterOpenAPI(mux Mux) {
	handle(mux, "GET /openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(OpenAPI)
	})
}
