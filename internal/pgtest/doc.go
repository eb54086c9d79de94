// Package pgtest gives tests a fresh Postgres database of their own.
//
// The admin URL is TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable). When Postgres
// is unreachable the test is skipped, except under CI=true, where it fails:
// CI must never pass by skipping the integration tests.
//
// It may import only the standard library and pgx; it is imported by tests
// only.
package pgtest
