package schema_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/schema"
)

func TestReadWritesNothing(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t), 1)
	s, err := schema.Read(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != 0 || s.EventStore || s.Database == "" {
		t.Errorf("Read of an empty database = %+v", s)
	}
	var behind *schema.BehindError
	if err := s.Check(); !errors.As(err, &behind) || behind.Database != s.Database {
		t.Errorf("Check of an empty database = %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d relations after Read (%v), want none", n, err)
	}
}

// TestMigrateConcurrently: processes starting at once migrate one after
// the other, and a second run changes nothing.
func TestMigrateConcurrently(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- schema.Migrate(ctx, dbURL)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := schema.Migrate(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	s, err := schema.Read(ctx, pgtest.NewPool(t, dbURL, 1))
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != schema.Latest() || !s.EventStore || s.Check() != nil {
		t.Errorf("after Migrate: %+v, latest %d", s, schema.Latest())
	}
}

func TestEnsureDatabase(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	if err := schema.EnsureDatabase(ctx, dbURL); err != nil {
		t.Fatalf("EnsureDatabase of an existing database: %v", err)
	}

	// A database that does not exist yet: create it, then drop it with the
	// one pgtest made (a sibling name, so it is cleaned up here).
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path += "_ensured"
	if err := schema.EnsureDatabase(ctx, u.String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgtest.Connect(ctx, pgtest.AdminURL())
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{u.Path[1:]}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	if err := schema.Migrate(ctx, u.String()); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateSeveralDatabasesAtOnce: the group roles belong to the
// cluster, so databases migrating at once (tests, two deployments on one
// cluster) share them; none of the migrations fails for the others'.
func TestMigrateSeveralDatabasesAtOnce(t *testing.T) {
	ctx := context.Background()
	urls := []string{pgtest.NewDatabase(t), pgtest.NewDatabase(t), pgtest.NewDatabase(t)}
	errs := make(chan error, len(urls))
	for _, u := range urls {
		go func() { errs <- schema.Migrate(ctx, u) }()
	}
	for range urls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range urls {
		var n int
		err := pgtest.NewPool(t, u, 1).QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname LIKE 'onboard\_%' AND NOT rolcanlogin
			AND has_table_privilege(rolname, 'events', 'SELECT')`).Scan(&n)
		if err != nil || n != 5 {
			t.Errorf("%d group roles read events (%v), want 5", n, err)
		}
	}
}

// TestEveryRelationHasItsProcessRoles: each table, view and sequence a
// migration creates is granted to at least one process role (00009), or is
// the owner's alone on purpose; a migration that adds a table without
// grants fails here rather than in production, where no role could use it.
func TestEveryRelationHasItsProcessRoles(t *testing.T) {
	ownerOnly := map[string]bool{"eventstore_schema_version_id_seq": true}
	pool := pgtest.NewPool(t, pgtest.NewMigratedDatabase(t), 1)
	rows, err := pool.Query(context.Background(), `SELECT c.relname FROM pg_class c
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'p', 'm')
		AND NOT EXISTS (SELECT 1 FROM aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
			WHERE r.rolname IN ('onboard_command', 'onboard_query', 'onboard_worker', 'onboard_relay', 'onboard_projector'))
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !ownerOnly[n] {
			t.Errorf("%s is granted to no process role: grant it in a migration (see 00009_roles.sql) or list it as the owner's alone", n)
		}
	}
}
