package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/internal/pgtest"
)

func TestNewDatabase(t *testing.T) {
	var name string
	t.Run("create", func(t *testing.T) {
		url := pgtest.NewDatabase(t)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
			t.Fatal(err)
		}
	})
	if name == "" {
		return // skipped: Postgres unreachable
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT exists(SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after cleanup", name)
	}
}

func TestNewPool(t *testing.T) {
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t), 3)
	if got := pool.Stat().TotalConns(); got != 3 {
		t.Errorf("pool holds %d connections, want 3", got)
	}
}
