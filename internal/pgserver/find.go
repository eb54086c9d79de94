package pgserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrNoBinaries is returned by FindInstalled when no usable server binaries
// are installed.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries (initdb, pg_ctl, postgres) found")

// MinMajor is the oldest major version onboard runs on.
const MinMajor = 15

// Binaries is a directory holding initdb, pg_ctl and postgres.
type Binaries struct {
	// Dir holds the executables.
	Dir string
	// Version is what `postgres --version` says, e.g. "15.14".
	Version string
	// Major is the version's major number, e.g. 15.
	Major int
}

func (b Binaries) path(name string) string { return filepath.Join(b.Dir, name) }

// String names the binaries for a banner: "PostgreSQL 15.14 (/usr/lib/postgresql/15/bin)".
func (b Binaries) String() string { return fmt.Sprintf("PostgreSQL %s (%s)", b.Version, b.Dir) }

// searchDirs lists where installed binaries may be, in order of preference:
// ONBOARD_PG_BIN alone when set, else PATH, then the packagers' places.
func searchDirs() []string {
	if dir := os.Getenv("ONBOARD_PG_BIN"); dir != "" {
		return []string{dir}
	}
	dirs := filepath.SplitList(os.Getenv("PATH"))
	for _, pattern := range []string{
		"/usr/lib/postgresql/*/bin",                          // Debian, Ubuntu
		"/usr/pgsql-*/bin",                                   // the PGDG RPMs
		"/opt/homebrew/opt/postgresql@*/bin",                 // Homebrew, Apple silicon
		"/usr/local/opt/postgresql@*/bin",                    // Homebrew, Intel
		"/home/linuxbrew/.linuxbrew/opt/postgresql@*/bin",    // Homebrew on Linux
		"/Applications/Postgres.app/Contents/Versions/*/bin", // Postgres.app
	} {
		matches, _ := filepath.Glob(pattern)
		// Newest first: "17" before "15" (a plain sort puts "9.6" first).
		slices.SortFunc(matches, func(a, b string) int { return versionInPath(b) - versionInPath(a) })
		dirs = append(dirs, matches...)
	}
	return append(dirs, "/opt/homebrew/bin", "/usr/local/bin")
}

var pathVersion = regexp.MustCompile(`(\d+)(?:\.\d+)?/bin$|@(\d+)/bin$|pgsql-(\d+)/bin$`)

func versionInPath(dir string) int {
	m := pathVersion.FindStringSubmatch(dir)
	for _, s := range m[min(1, len(m)):] {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
	}
	return 0
}

// FindInstalled returns the first installed server binaries of version
// MinMajor or later; with major > 0, the first of exactly that major
// version (an existing data directory needs the version that made it).
func FindInstalled(ctx context.Context, major int) (Binaries, error) {
	seen := map[string]bool{}
	var found []string
	for _, dir := range searchDirs() {
		if dir == "" {
			continue
		}
		initdb, err := filepath.EvalSymlinks(filepath.Join(dir, "initdb"))
		if err != nil {
			continue
		}
		real := filepath.Dir(initdb) // a symlink in PATH names the real directory
		if seen[real] || !executable(filepath.Join(real, "pg_ctl")) || !executable(filepath.Join(real, "postgres")) {
			continue
		}
		seen[real] = true
		b, err := versionOf(ctx, real)
		if err != nil {
			continue
		}
		found = append(found, b.String())
		if b.Major >= MinMajor && (major == 0 || b.Major == major) {
			return b, nil
		}
	}
	want := fmt.Sprintf("version %d or later", MinMajor)
	if major > 0 {
		want = fmt.Sprintf("version %d", major)
	}
	if len(found) > 0 {
		return Binaries{}, fmt.Errorf("%w of %s (found %s)", ErrNoBinaries, want, strings.Join(found, ", "))
	}
	return Binaries{}, fmt.Errorf("%w (looked in ONBOARD_PG_BIN or PATH, /usr/lib/postgresql/*/bin, Homebrew and Postgres.app)", ErrNoBinaries)
}

var versionLine = regexp.MustCompile(`\(PostgreSQL\) (\d+)(\.\d+)?`)

// versionOf asks dir's postgres for its version.
func versionOf(ctx context.Context, dir string) (Binaries, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return Binaries{}, err
	}
	m := versionLine.FindStringSubmatch(string(out))
	if m == nil {
		return Binaries{}, fmt.Errorf("%s: unexpected version %q", dir, out)
	}
	major, _ := strconv.Atoi(m[1])
	return Binaries{Dir: dir, Version: m[1] + m[2], Major: major}, nil
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
