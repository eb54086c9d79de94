// Package pgtest gives tests a fresh Postgres database of their own.
//
// The admin URL is TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable). When Postgres
// is unreachable the test is skipped, except under CI=true, where it fails:
// CI must never pass by skipping the integration tests.
//
// NewMigratedDatabase applies package schema's migrations to it.
//
// It may import only the standard library, pgx and package schema; it is
// imported by tests only.
package pgtest
