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
