package schema

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// versionTable is goose's record of the applied migrations. It was named
// when it held the event store's alone; it keeps the name so that
// databases migrated before upgrade in place.
const versionTable = "eventstore_schema_version"

// migrationLockID is the advisory lock that serialises concurrent
// migrations ("eventstr" in ASCII, from the same history).
const migrationLockID = 0x6576656e74737472

// Migrate applies the pending migrations to the database at databaseURL.
// Concurrent calls (several processes starting at once) are serialised by
// an advisory lock.
func Migrate(ctx context.Context, databaseURL string) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID), lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files(),
		goose.WithTableName(versionTable), goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate database %s: %w", cfg.Database, err)
	}
	return nil
}

func files() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the directory is embedded: it exists
	}
	return sub
}

// Latest returns the version of the newest migration, the one a database
// must be at for this binary's roles to start.
func Latest() int64 { return latest() }

var latest = sync.OnceValue(func() int64 {
	names, err := fs.Glob(files(), "*.sql")
	if err != nil {
		panic(err)
	}
	var newest int64
	for _, n := range names {
		v, err := goose.NumericComponent(n)
		if err != nil {
			panic(fmt.Sprintf("schema: migration %s: %v", n, err))
		}
		newest = max(newest, v)
	}
	return newest
})

// Querier is a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Status is what a database holds, as Read finds it.
type Status struct {
	// Database is the database's name.
	Database string
	// Version is the newest migration applied; 0 for a database never
	// migrated.
	Version int64
	// EventStore is whether the event store's table of events exists.
	EventStore bool
}

// Read reads the status of the database q is connected to. It only reads:
// unlike goose's own status calls, it creates no version table.
func Read(ctx context.Context, q Querier) (Status, error) {
	var (
		s        Status
		versions bool
	)
	err := q.QueryRow(ctx, `SELECT current_database(), to_regclass($1) IS NOT NULL, to_regclass('events') IS NOT NULL`,
		versionTable).Scan(&s.Database, &versions, &s.EventStore)
	if err != nil {
		return s, fmt.Errorf("read the schema version: %w", err)
	}
	if !versions {
		return s, nil
	}
	err = q.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM `+pgx.Identifier{versionTable}.Sanitize()).Scan(&s.Version)
	if err != nil {
		return s, fmt.Errorf("read the schema version of database %s: %w", s.Database, err)
	}
	return s, nil
}

// BehindError is Status.Check's error for a database that lacks migrations
// this binary needs.
type BehindError struct {
	Database        string
	Version, Latest int64
}

func (e *BehindError) Error() string {
	if e.Version == 0 {
		return fmt.Sprintf("database %s has no schema: run `onboard migrate`", e.Database)
	}
	return fmt.Sprintf("database %s is at schema version %d, this onboard needs %d: run `onboard migrate`",
		e.Database, e.Version, e.Latest)
}

// Check returns a *BehindError when the database is at an older version
// than Latest: a role of this binary must not start on it. A newer version
// passes: migrations only add, so a binary that is being replaced keeps
// running while a newer one migrates.
func (s Status) Check() error {
	if s.Version < Latest() {
		return &BehindError{Database: s.Database, Version: s.Version, Latest: Latest()}
	}
	return nil
}

// EnsureDatabase creates the database named in databaseURL if it does not
// exist, connecting to the server's "postgres" database to do so. It is
// what `onboard dev` and `onboard migrate --create-database` call before
// Migrate.
func EnsureDatabase(ctx context.Context, databaseURL string) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("ensure database: %w", err)
	}
	name := cfg.Database
	if conn, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		return conn.Close(ctx)
	}
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("ensure database %q: %w", name, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT exists(SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("ensure database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created concurrently
		return nil
	}
	if err != nil {
		return fmt.Errorf("ensure database %q: %w", name, err)
	}
	return nil
}
