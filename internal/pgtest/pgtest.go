package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/internal/pgserver"
	"github.com/onboard/onboard/schema"
)

// AdminURL returns TEST_DATABASE_URL; else the URL of this process's
// private server once NewDatabase has started one; else the default
// server's (pgserver.DefaultAddr, user postgres, database postgres).
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	private.mu.Lock()
	defer private.mu.Unlock()
	if private.srv != nil {
		return private.srv.URL("postgres")
	}
	return defaultAdminURL()
}

func defaultAdminURL() string {
	return "postgres://postgres@" + pgserver.DefaultAddr() + "/postgres?sslmode=disable"
}

// private is the server this test process starts when TEST_DATABASE_URL is
// unset and nothing answers at the default address: one for all its tests,
// stopped and removed when the process exits.
var private struct {
	mu  sync.Mutex
	srv *pgserver.Server
	err error
}

// adminURL is AdminURL, starting the private server when it is needed.
func adminURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	private.mu.Lock()
	defer private.mu.Unlock()
	if private.srv == nil && private.err == nil {
		if pgserver.Answers(ctx, pgserver.DefaultAddr()) {
			return defaultAdminURL()
		}
		private.srv, private.err = startPrivate(ctx)
	}
	if errors.Is(private.err, pgserver.ErrNoBinaries) {
		unreachable(t, defaultAdminURL(), private.err)
	}
	if private.err != nil {
		t.Fatalf("pgtest: nothing answers at %s, and the private server did not start: %v", pgserver.DefaultAddr(), private.err)
	}
	return private.srv.URL("postgres")
}

// startPrivate starts this process's server from the installed binaries
// (never downloaded ones: tests must not reach the network).
func startPrivate(ctx context.Context) (*pgserver.Server, error) {
	bin, err := pgserver.FindInstalled(ctx, 0)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "onboard-pgtest-")
	if err != nil {
		return nil, err
	}
	// As many connections as CI gives the shared server; no fsync, as the
	// data goes with the process.
	return pgserver.Start(ctx, pgserver.Config{DataDir: dir, Binaries: bin, Ephemeral: true,
		Settings: map[string]string{"max_connections": "300", "fsync": "off"}})
}

// NewDatabase creates a uniquely named, empty database and returns its URL.
// The database is dropped (WITH (FORCE), so open connections do not keep it
// alive) when the test and its subtests finish. It skips the test when
// Postgres is unreachable, or fails it when CI=true.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := adminURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := Connect(ctx, admin)
	if err != nil {
		unreachable(t, admin, err)
	}
	defer conn.Close(ctx)

	name := "test_" + sanitize(t.Name()) + "_" + randomSuffix()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := Connect(ctx, admin)
		if err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", admin, err)
	}
	u.Path = "/" + name
	return u.String()
}

// NewMigratedDatabase is NewDatabase with every migration applied, as
// `onboard migrate` applies them: the database a test of any component
// starts from.
func NewMigratedDatabase(t testing.TB) string {
	t.Helper()
	url := NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		err := schema.Migrate(ctx, url)
		if err == nil {
			return url
		}
		// goose wraps errors as text: the code is only in the message.
		if !Transient(err) && !strings.Contains(err.Error(), "SQLSTATE 53300") || ctx.Err() != nil {
			t.Fatalf("pgtest: migrate: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Connect connects to url, retrying while the server is reachable but
// cannot take the connection yet (until ctx is done): when every package of
// `go test ./...` runs at once, the cluster's max_connections is briefly
// exhausted, which must not fail a test (or skip it as "unreachable").
func Connect(ctx context.Context, url string) (*pgx.Conn, error) {
	for {
		conn, err := pgx.Connect(ctx, url)
		if err == nil || !Transient(err) {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Transient reports whether err means the server could not take another
// connection for now (SQLSTATE 53300 too_many_connections, 57P03
// cannot_connect_now).
func Transient(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "53300" || pgErr.Code == "57P03")
}

// NewPool returns a pool on url that already holds maxConns connections
// and keeps them (MinConns = MaxConns), so that a test running next to
// others that exhaust max_connections never has to open one mid-test. It is
// closed when the test finishes.
func NewPool(t testing.TB, url string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.MaxConns, cfg.MinConns = maxConns, maxConns
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	conns := make([]*pgxpool.Conn, 0, maxConns)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for int32(len(conns)) < maxConns {
		c, err := pool.Acquire(ctx)
		switch {
		case err == nil:
			conns = append(conns, c)
		case Transient(err) && ctx.Err() == nil:
			time.Sleep(200 * time.Millisecond)
		default:
			t.Fatalf("pgtest: open %d connections: %v", maxConns, err)
		}
	}
	return pool
}

func unreachable(t testing.TB, admin string, err error) {
	t.Helper()
	msg := fmt.Sprintf("pgtest: Postgres unreachable at %s (set TEST_DATABASE_URL, or install PostgreSQL's server binaries): %v", redact(admin), err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// sanitize keeps database names short and free of characters that need
// quoting, so they stay readable in pg_stat_activity.
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 30 {
			break
		}
	}
	return b.String()
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
