package projections_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/projections"
)

// TestRebuildCreatesTheMigratedLayout: a rebuild creates the next
// version's tables from this package's DDL, the migrations (package
// schema) the first version's; both must give the same columns and
// indexes, or a rebuild would change a read model's shape.
func TestRebuildCreatesTheMigratedLayout(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	tables := map[string]string{projections.Customers: "rm_customers_v", projections.ProviderStats: "rm_provider_stats_v"}
	for _, name := range projections.Names() {
		migrated := layout(t, e.pool, tables[name]+"1")
		if len(migrated) == 0 {
			t.Fatalf("%s: the migrations made no table %s1", name, tables[name])
		}
		res, err := e.proj.Rebuild(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		rebuilt := layout(t, e.pool, tables[name]+"2")
		if res.To != 2 || !slices.Equal(migrated, rebuilt) {
			t.Errorf("%s: version %d\nmigrated %q\nrebuilt  %q", name, res.To, migrated, rebuilt)
		}
	}
}

// layout lists table's columns and index definitions, with the table's
// name taken out.
func layout(t *testing.T, pool *pgxpool.Pool, table string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
SELECT format('column %s %s %s %s %s', lpad(ordinal_position::text, 2, '0'), column_name, data_type, is_nullable, coalesce(column_default, ''))
FROM information_schema.columns WHERE table_name = $1
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE tablename = $1
UNION ALL
SELECT 'persistence ' || relpersistence::text FROM pg_class WHERE relname = $1
ORDER BY 1`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.ReplaceAll(s, table, "TABLE"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
