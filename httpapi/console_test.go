package httpapi_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/onboard/onboard/httpapi"
)

// consoleServer serves the console next to another route, as the binary
// does, so the tests also see that the console claims no more than its
// paths.
func consoleServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	httpapi.RegisterConsole(mux)
	httpapi.Health{}.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func consoleGet(t *testing.T, url string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

func TestConsoleServesPageAndAssets(t *testing.T) {
	srv := consoleServer(t)
	tests := []struct {
		path        string
		status      int
		contentType string
		contains    []string
	}{
		{"/", 200, "text/html; charset=utf-8", []string{`<script src="console/app.js"`, `href="console/app.css"`, `id="queue"`, `id="timeline"`, `id="health"`}},
		{"/console/index.html", 200, "text/html; charset=utf-8", []string{"<!doctype html>"}},
		{"/console/app.js", 200, "text/javascript; charset=utf-8", []string{"sessionStorage", "Authorization", "/v1/operator/queue", "/v1/providers"}},
		{"/console/app.css", 200, "text/css; charset=utf-8", []string{":root"}},
		{"/console/missing.js", 404, "application/problem+json", nil},
		{"/console/../console.go", 404, "", nil},
		{"/elsewhere", 404, "", nil},
		{"/healthz", 200, "application/json", nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res, body := consoleGet(t, srv.URL+tt.path, nil)
			if res.StatusCode != tt.status {
				t.Fatalf("GET %s: status %d, want %d", tt.path, res.StatusCode, tt.status)
			}
			if tt.contentType != "" && res.Header.Get("Content-Type") != tt.contentType {
				t.Errorf("GET %s: Content-Type %q, want %q", tt.path, res.Header.Get("Content-Type"), tt.contentType)
			}
			for _, s := range tt.contains {
				if !bytes.Contains(body, []byte(s)) {
					t.Errorf("GET %s: body lacks %q", tt.path, s)
				}
			}
			if tt.status == 200 && (strings.HasPrefix(tt.path, "/console/") || tt.path == "/") {
				if res.Header.Get("X-Content-Type-Options") != "nosniff" {
					t.Errorf("GET %s: no X-Content-Type-Options: nosniff", tt.path)
				}
				if res.Header.Get("ETag") == "" {
					t.Errorf("GET %s: no ETag", tt.path)
				}
			}
		})
	}
}

func TestConsolePageHeaders(t *testing.T) {
	srv := consoleServer(t)
	res, _ := consoleGet(t, srv.URL+"/", nil)
	csp := res.Header.Get("Content-Security-Policy")
	// The page may load and call nothing but its own origin.
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	etag := res.Header.Get("ETag")
	res, body := consoleGet(t, srv.URL+"/", http.Header{"If-None-Match": {etag}})
	if res.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("GET / with If-None-Match %s: status %d with %d bytes, want 304 and none", etag, res.StatusCode, len(body))
	}
	req, err := http.NewRequest(http.MethodHead, srv.URL+"/console/app.js", nil)
	if err != nil {
		t.Fatal(err)
	}
	head, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != 200 || head.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("HEAD /console/app.js: %d %q", head.StatusCode, head.Header.Get("Content-Type"))
	}
	post, err := http.Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d, want 405", post.StatusCode)
	}
}

// consoleSources returns every file of the console directory, which is what
// the binary embeds.
func consoleSources(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir("console", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		out[filepath.ToSlash(path)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no console files found: run the test from the httpapi directory")
	}
	return out
}

// TestConsoleServesEveryFile holds the served bytes to the files on disk,
// so a file added to the directory cannot be left out of the binary.
func TestConsoleServesEveryFile(t *testing.T) {
	srv := consoleServer(t)
	for name, want := range consoleSources(t) {
		res, body := consoleGet(t, srv.URL+"/"+name, nil)
		if res.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Errorf("GET /%s: status %d, %d bytes; want 200 and the %d bytes on disk", name, res.StatusCode, len(body), len(want))
		}
	}
}

var (
	// consoleExternalURL finds anything that would make the browser reach another
	// host: scheme URLs and protocol-relative ones.
	consoleExternalURL = regexp.MustCompile(`(?i)(\b[a-z][a-z0-9+.-]*:)?//[a-z0-9-]+(\.[a-z0-9-]+)+`)
	consoleAttrURL     = regexp.MustCompile(`\b(?:src|href|action)="([^"]*)"`)
	consoleCSSURL      = regexp.MustCompile(`(?i)url\(\s*['"]?([^'")]+)|@import`)
	consoleElementID   = regexp.MustCompile(`\bid="([^"]+)"`)
	consoleScriptByID  = regexp.MustCompile(`\$\("([^"]+)"\)`)
)

// TestConsoleIsSelfContained: the console must work offline and must not
// send an operator's key anywhere else, so no file may name another host
// and every link of the page must be served by the console itself.
func TestConsoleIsSelfContained(t *testing.T) {
	files := consoleSources(t)
	for name, body := range files {
		if m := consoleExternalURL.Find(body); m != nil {
			t.Errorf("%s names an external URL: %q", name, m)
		}
		for _, m := range consoleCSSURL.FindAllSubmatch(body, -1) {
			if strings.HasSuffix(name, ".css") && (len(m[1]) == 0 || !bytes.HasPrefix(m[1], []byte("data:"))) {
				t.Errorf("%s loads a resource: %q", name, m[0])
			}
		}
	}
	srv := consoleServer(t)
	page := files["console/index.html"]
	for _, m := range consoleAttrURL.FindAllSubmatch(page, -1) {
		ref := string(m[1])
		if strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "data:") {
			continue
		}
		res, _ := consoleGet(t, srv.URL+"/"+ref, nil)
		if res.StatusCode != 200 {
			t.Errorf("index.html refers to %q, which the console does not serve (status %d)", ref, res.StatusCode)
		}
	}
}

// TestConsoleScriptFindsItsElements: every element the script looks up by
// id exists in the page, so a renamed id fails here and not in front of an
// operator.
func TestConsoleScriptFindsItsElements(t *testing.T) {
	files := consoleSources(t)
	var ids []string
	for _, m := range consoleElementID.FindAllSubmatch(files["console/index.html"], -1) {
		ids = append(ids, string(m[1]))
	}
	for _, script := range []string{"app.js", "operator.js"} {
		used := consoleScriptByID.FindAllSubmatch(files["console/"+script], -1)
		if len(used) == 0 {
			t.Fatalf("%s looks up no element by id: has the lookup helper changed?", script)
		}
		for _, m := range used {
			if !slices.Contains(ids, string(m[1])) {
				t.Errorf("%s uses element #%s, which index.html lacks", script, m[1])
			}
		}
	}
}

// TestConsoleHasNoInlineCode: the page's CSP allows scripts and styles
// from the console's own files only ('self', no 'unsafe-inline'), so the
// files must hold no inline script, style, event handler attribute or
// javascript: URL, and the script must not build code from strings.
func TestConsoleHasNoInlineCode(t *testing.T) {
	srv := consoleServer(t)
	res, _ := consoleGet(t, srv.URL+"/", nil)
	csp := res.Header.Get("Content-Security-Policy")
	for _, banned := range []string{"unsafe-inline", "unsafe-eval", "*"} {
		if strings.Contains(csp, banned) {
			t.Errorf("Content-Security-Policy %q allows %s", csp, banned)
		}
	}
	if res.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("X-Frame-Options %q, want DENY", res.Header.Get("X-Frame-Options"))
	}
	html, err := os.ReadFile("console/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<script\b[^>]*>\s*[^<\s]`), // a script with a body
		regexp.MustCompile(`(?i)<style\b`),
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?i)javascript:`),
	} {
		if m := re.Find(html); m != nil {
			t.Errorf("index.html has inline code: %q", m)
		}
	}
	for _, tag := range regexp.MustCompile(`(?i)<script\b[^>]*>`).FindAll(html, -1) {
		if !regexp.MustCompile(`(?i)\ssrc=`).Match(tag) {
			t.Errorf("index.html has a script without src: %q", tag)
		}
	}
	js, err := os.ReadFile("console/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, banned := range []string{"eval(", "new Function", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", `setAttribute("style"`, `setAttribute("on`, "style:"} {
		if strings.Contains(string(js), banned) {
			t.Errorf("app.js uses %s", banned)
		}
	}
}
