package httpapi

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// consoleFiles is the operator console: plain HTML, CSS and JavaScript with
// no build step and no external URL, so that it works offline and behind a
// firewall exactly as it is checked in.
//
//go:embed console
var consoleFiles embed.FS

// consoleTypes fixes the content type of each asset kind, so that it does
// not depend on the host's MIME tables (/etc/mime.types maps .js
// differently on different systems).
var consoleTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
}

// consoleCSP allows the page to load nothing but its own assets and to talk
// to nothing but its own origin: a console that holds an operator key must
// not be able to leak it to another host, even through injected markup.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// RegisterConsole adds the operator console to mux: GET / serves the page
// and GET /console/<file> its assets. Both are public in Routes; the page
// calls the JSON API with the operator's key.
func RegisterConsole(mux Mux) {
	sub, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		// The directory is embedded at compile time; this cannot happen.
		panic(err)
	}
	assets := loadConsoleAssets(sub)
	handle(mux, "GET /{$}", assets.handler("index.html").ServeHTTP)
	handle(mux, "GET /console/{file...}", func(w http.ResponseWriter, r *http.Request) {
		assets.handler(r.PathValue("file")).ServeHTTP(w, r)
	})
}

type consoleAsset struct {
	body        []byte
	contentType string
	etag        string
}

type consoleAssets map[string]consoleAsset

// loadConsoleAssets reads every embedded file once and computes its ETag,
// so that a console left open revalidates cheaply.
func loadConsoleAssets(fsys fs.FS) consoleAssets {
	out := consoleAssets{}
	_ = fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := consoleTypes[path.Ext(name)]
		if !ok {
			return nil
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		out[name] = consoleAsset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	return out
}

func (a consoleAssets) handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asset, ok := a[name]
		if !ok || strings.Contains(name, "..") {
			writeProblem(w, Problem{Type: ProblemNotFound, Status: http.StatusNotFound, Detail: "no such console file"})
			return
		}
		h := w.Header()
		h.Set("Content-Type", asset.contentType)
		h.Set("ETag", asset.etag)
		// no-cache: revalidate on every load, so a deploy is picked up at
		// once, while the ETag keeps the revalidation to a 304.
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if asset.contentType == consoleTypes[".html"] {
			h.Set("Content-Security-Policy", consoleCSP)
			h.Set("X-Frame-Options", "DENY")
		}
		if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, asset.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return
		}
		_, _ = w.Write(asset.body)
	})
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
