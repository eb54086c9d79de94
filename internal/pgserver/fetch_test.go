package pgserver_test

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/onboard/onboard/internal/pgserver"
)

// TestFetchOnceThenCached: without installed binaries, Fetch has
// embedded-postgres download them (here from a local stand-in of the Maven
// repository, serving a tiny fake build) and finds them in its cache from
// then on, without downloading again.
func TestFetchOnceThenCached(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("needs xz to pack the fake build")
	}
	jar := fakeBuildJar(t)
	var downloads atomic.Int64
	repo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".jar") {
			http.NotFound(w, r) // no .sha256: the library then skips the check
			return
		}
		downloads.Add(1)
		_, _ = w.Write(jar)
	}))
	defer repo.Close()

	cache := t.TempDir()
	ctx := context.Background()
	for i := range 2 {
		b, err := pgserver.Fetch(ctx, cache, repo.URL, io.Discard)
		if err != nil {
			t.Fatalf("fetch %d: %v", i+1, err)
		}
		if b.Major != 17 || !strings.HasPrefix(b.Dir, cache) {
			t.Errorf("fetch %d: %+v, want PostgreSQL 17 in %s", i+1, b, cache)
		}
	}
	if n := downloads.Load(); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}
}

// fakeBuildJar is a jar as the zonky builds are: a zip holding a .txz of
// bin/ (here scripts that only tell their version).
func fakeBuildJar(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"postgres", "initdb", "pg_ctl"} {
		script := "#!/bin/sh\necho 'postgres (PostgreSQL) 17.5'\n"
		if name != "postgres" {
			script = "#!/bin/sh\nexit 1\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "bin", name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	txz, err := exec.Command("sh", "-c", `tar -C "$0" -cf - bin | xz -0`, dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	f, err := zw.Create("postgres-linux-x86_64.txz")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(txz); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
