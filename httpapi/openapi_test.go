package httpapi

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
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
		// The document leaves problems open to extension, as RFC 9457
		// does; the tests hold the API to the members it declares, so
		// that a generated client can read every member it returns.
		closed := false
		doc.Components.Schemas["Problem"].Value.AdditionalProperties = openapi3.AdditionalProperties{Has: &closed}
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

// TestOpenAPIProblemDeclaresEveryExtension: every extension member the
// code puts into a problem (Problem.Extra) is a property of the Problem
// schema, including those of problems no test provokes.
func TestOpenAPIProblemDeclaresEveryExtension(t *testing.T) {
	d, _ := loadContract(t)
	declared := d.Components.Schemas["Problem"].Value.Properties
	members := map[string]string{}
	keysOf := func(e ast.Expr, at token.Pos, fset *token.FileSet) {
		lit, ok := e.(*ast.CompositeLit)
		if !ok {
			return
		}
		for _, elt := range lit.Elts {
			if kv, ok := elt.(*ast.KeyValueExpr); ok {
				if k, ok := kv.Key.(*ast.BasicLit); ok && k.Kind == token.STRING {
					members[strings.Trim(k.Value, "`\"")] = fset.Position(at).String()
				}
			}
		}
	}
	isExtra := func(e ast.Expr) bool {
		sel, ok := e.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == "Extra"
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.KeyValueExpr: // Problem{Extra: map[string]any{...}}
				if id, ok := n.Key.(*ast.Ident); ok && id.Name == "Extra" {
					keysOf(n.Value, n.Pos(), fset)
				}
			case *ast.AssignStmt: // p.Extra = map[string]any{...}
				for i, lhs := range n.Lhs {
					if isExtra(lhs) && i < len(n.Rhs) {
						keysOf(n.Rhs[i], n.Pos(), fset)
					}
				}
			case *ast.IndexExpr: // p.Extra["key"] = ...
				if k, ok := n.Index.(*ast.BasicLit); ok && k.Kind == token.STRING && isExtra(n.X) {
					members[strings.Trim(k.Value, "`\"")] = fset.Position(n.Pos()).String()
				}
			}
			return true
		})
	}
	if len(members) < 5 {
		t.Fatalf("found only %v: the scan no longer sees how problems are extended", members)
	}
	for m, at := range members {
		if _, ok := declared[m]; !ok {
			t.Errorf("problem member %q (%s) is not a property of the Problem schema", m, at)
		}
	}
}

// TestOpenAPIListsEveryOperationsClientErrors: each operation lists the
// 4xx answers that every request of its kind can get: 401, 403 and 429
// where a key is needed (the auth middleware's), 400 where it takes
// parameters or a body, 404 where it names a customer, 413 and 415 where
// it takes a body. Those that only some requests get are held by the
// response validation of every test.
func TestOpenAPIListsEveryOperationsClientErrors(t *testing.T) {
	d, _ := loadContract(t)
	for _, rule := range Routes {
		path := strings.NewReplacer("{$}", "", "...}", "}").Replace(rule.Path)
		op := d.Paths.Find(path).GetOperation(rule.Method)
		var want []string
		if rule.Public == "" {
			want = append(want, "401", "403", "429")
		}
		if len(op.Parameters) > 0 && path != "/console/{file}" || op.RequestBody != nil {
			want = append(want, "400")
		}
		if strings.Contains(path, "/v1/customers/{id}") || path == "/console/{file}" {
			want = append(want, "404")
		}
		if op.RequestBody != nil {
			want = append(want, "413", "415")
		}
		for _, code := range want {
			if op.Responses.Value(code) == nil {
				t.Errorf("%s does not list %s", rule.Pattern(), code)
			}
		}
		has4xx := false
		for code := range op.Responses.Map() {
			has4xx = has4xx || code[0] == '4'
		}
		if rule.Public == "" && !has4xx {
			t.Errorf("%s lists no 4xx answer", rule.Pattern())
		}
	}
	raw, err := openapi3.NewLoader().LoadFromData(OpenAPI) // loadContract clears the servers
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range raw.Servers {
		if strings.Contains(srv.URL, "://") {
			t.Errorf("server %q is absolute: a client of another host would call it", srv.URL)
		}
	}
}
