package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/schema"
)

// TestServeChecksTheSchemaVersion: a role starts only on a database at its
// binary's schema version, creates no table, and says in one line to run
// `onboard migrate`; after it, the role's check passes.
func TestServeChecksTheSchemaVersion(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	t.Setenv("DATABASE_URL", url)
	pool := pgtest.NewPool(t, url, 1)
	cfg := runConfig{addr: "127.0.0.1:0", roles: []string{"query", "projector"}, databaseURL: url}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	err := run(ctx, cfg, log)
	var behind *schema.BehindError
	if !errors.As(err, &behind) || behind.Version != 0 || !strings.HasSuffix(err.Error(), "run `onboard migrate`") {
		t.Fatalf("run on an empty database: %v, want a BehindError at version 0", err)
	}
	if n := relations(t, pool); n != 0 {
		t.Errorf("%d relations after a refused start, want none", n)
	}

	stdout, stderr, failed := runOnboard(t, "migrate")
	if failed || !strings.Contains(stdout, "migrations applied") {
		t.Fatalf("onboard migrate: %q %q", stdout, stderr)
	}
	if err := checkSchema(ctx, pool); err != nil {
		t.Fatalf("after onboard migrate: %v", err)
	}

	// A database one migration behind, as after an upgrade of the binary.
	if _, err := pool.Exec(ctx, `DELETE FROM eventstore_schema_version WHERE version_id = $1`, schema.Latest()); err != nil {
		t.Fatal(err)
	}
	err = run(ctx, cfg, log)
	if !errors.As(err, &behind) || behind.Version != schema.Latest()-1 {
		t.Fatalf("run on a database behind: %v", err)
	}
	t.Log(err)
}

// TestMigrateUpgradesADatabaseMadeAtStart: a database whose messaging,
// timer and projection tables were created by the roles at start (version
// 3, the event store's migrations only), with a projection rebuilt since,
// upgrades: the migrations add what is missing and keep the rebuilt
// version.
func TestMigrateUpgradesADatabaseMadeAtStart(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewMigratedDatabase(t)
	t.Setenv("DATABASE_URL", url)
	pool := pgtest.NewPool(t, url, 1)
	if _, stderr, failed := runOnboard(t, "replay", "rebuild", "customers"); failed {
		t.Fatalf("rebuild: %s", stderr)
	}
	// What the old start-up left: the same tables without their versions,
	// and timers from before they carried a trace.
	if _, err := pool.Exec(ctx, `DELETE FROM eventstore_schema_version WHERE version_id > 3;
		ALTER TABLE onboard_timers DROP COLUMN trace`); err != nil {
		t.Fatal(err)
	}
	if stdout, stderr, failed := runOnboard(t, "migrate"); failed {
		t.Fatalf("onboard migrate: %q %q", stdout, stderr)
	}
	if err := checkSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var (
		v1, trace bool
		active    int
	)
	err := pool.QueryRow(ctx, `SELECT to_regclass('rm_customers_v1') IS NOT NULL,
		(SELECT version FROM projection_active WHERE name = 'customers'),
		exists(SELECT 1 FROM information_schema.columns WHERE table_name = 'onboard_timers' AND column_name = 'trace')`).
		Scan(&v1, &active, &trace)
	if err != nil {
		t.Fatal(err)
	}
	if v1 || active != 2 || !trace {
		t.Errorf("after the upgrade: rm_customers_v1 exists %v, active version %d (want 2), timers' trace %v", v1, active, trace)
	}
	if _, stderr, failed := runOnboard(t, "replay", "diff", "customers"); failed {
		t.Errorf("diff after the upgrade: %s", stderr)
	}
}

// relations counts the tables, views, indexes and sequences in public.
func relations(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_class
		WHERE relnamespace = 'public'::regnamespace`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
