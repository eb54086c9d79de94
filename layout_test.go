package onboard_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/onboard/onboard"

// allowedImports is the dependency direction of docs/architecture.md: for each
// package, the packages of this module its non-test files may import. A
// package missing from the table is held to the two hard rules only.
var allowedImports = map[string][]string{
	"domain":                    {},
	"eventstore":                {},
	"schema":                    {},
	"eventstore/postgres":       {"eventstore"},
	"eventstore/eventstoretest": {"eventstore"},
	"commands":                  {"domain", "eventstore"},
	"process":                   {"commands", "providers", "domain", "eventstore"},
	"providers":                 {},
	"providers/sim":             {"providers"},
	"projections":               {"domain", "eventstore"},
	"audit":                     {"projections", "domain", "eventstore"},
	"messaging":                 {"eventstore"},
	"operator":                  {"commands", "projections", "domain", "eventstore"},
	"httpapi":                   {"commands", "operator", "projections", "providers", "domain", "eventstore"},
	"internal/pgserver":         {},
	"internal/pgtest":           {"schema", "internal/pgserver"},
}

// onlyCmd may be imported by cmd/onboard alone.
var onlyCmd = []string{"httpapi", "messaging"}

func TestLayering(t *testing.T) {
	imports := projectImports(t)
	if len(imports) == 0 {
		t.Fatal("found no packages: run the test from the module root")
	}
	for pkg, deps := range imports {
		for _, dep := range deps {
			if slices.Contains(onlyCmd, dep) && pkg != "cmd/onboard" && !strings.HasPrefix(pkg, dep+"/") {
				t.Errorf("%s imports %s: only cmd/onboard may import it", pkg, dep)
			}
			if (pkg == "domain" || pkg == "eventstore") && dep != pkg {
				t.Errorf("%s imports %s: %s must import no package of this module", pkg, dep, pkg)
			}
			allowed, ok := allowedImports[pkg]
			if ok && !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s: allowed are %v", pkg, dep, allowed)
			}
		}
	}
}

// projectImports maps each package directory (relative to the module root)
// to the module packages its non-test Go files import.
func projectImports(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(path))
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if rel, ok := strings.CutPrefix(p, module+"/"); ok && !slices.Contains(out[pkg], rel) {
				out[pkg] = append(out[pkg], rel)
			}
		}
		if _, ok := out[pkg]; !ok {
			out[pkg] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("go.mod"); err != nil {
		t.Fatalf("not at the module root: %v", err)
	}
	return out
}
