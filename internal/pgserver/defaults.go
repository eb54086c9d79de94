package pgserver

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"time"
)

// DefaultAddr is the address where onboard dev and the tests look for a
// Postgres before starting a private one: ONBOARD_DEFAULT_PG_ADDR, else
// 127.0.0.1:5432. The variable is for tests, which point it at a closed
// port to run as on a machine with no server.
func DefaultAddr() string {
	if a := os.Getenv("ONBOARD_DEFAULT_PG_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:5432"
}

// Answers reports whether something accepts TCP connections at addr.
func Answers(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// DefaultCacheDir is where Fetch keeps the binaries it downloads: the
// user's cache directory, or /var/cache/onboard for root, whose home the
// server's unprivileged user cannot read.
func DefaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil || os.Geteuid() == 0 {
		return "/var/cache/onboard"
	}
	return filepath.Join(dir, "onboard")
}
