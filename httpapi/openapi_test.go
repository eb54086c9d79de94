package httpapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

var (
	docOnce sync.Once
	doc     *openapi3.T
	router  routers.Router
	docErr  error
)

func loadContract(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	docOnce.Do(func() {
		loader := openapi3.NewLoader()
		doc, docErr = loader.LoadFromData(OpenAPI)
		if docErr != nil {
			return
		}
		if docErr = doc.Validate(context.Background()); docErr != nil {
			return
		}
		doc.Servers = nil // match any host, such as httptest's
		router, docErr = legacy.NewRouter(doc)
	})
	if docErr != nil {
		t.Fatalf("openapi.yaml: %v", docErr)
	}
	return doc, router
}

// servedRoutes are the routes of Routes as OpenAPI writes them; the
// document must list exactly these.
func servedRoutes() []string {
	var routes []string
	for _, r := range Routes {
		path := strings.NewReplacer("{$}", "", "...}", "}").Replace(r.Path)
		routes = append(routes, r.Method+" "+path)
	}
	sort.Strings(routes)
	return routes
}

func TestOpenAPIListsExactlyTheServedRoutes(t *testing.T) {
	d, _ := loadContract(t)
	var documented []string
	for path, item := range d.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	sort.Strings(documented)
	if served := servedRoutes(); !slices.Equal(documented, served) {
		t.Fatalf("openapi.yaml and the served routes differ:\ndocumented %v\nserved     %v", documented, served)
	}
}

// Validating wraps h so that every response is checked against the
// contract; a response the document does not allow fails the test. It is
// exported for the external test package (command_test.go).
func Validating(t *testing.T, h http.Handler) http.Handler {
	_, r := loadContract(t)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())

		vreq := req.Clone(context.Background())
		vreq.Body = io.NopCloser(bytes.NewReader(body))
		route, params, err := r.FindRoute(vreq)
		if err != nil {
			t.Errorf("%s %s: not in openapi.yaml: %v", req.Method, req.URL.Path, err)
			return
		}
		in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, ExcludeRequestBody: true}}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
			Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("%s %s → %d %s: response breaks the contract: %v", req.Method, req.URL.Path, rec.Code,
				strings.TrimSpace(rec.Body.String()), err)
		}
	})
}
