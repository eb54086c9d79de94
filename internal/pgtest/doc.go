// Package pgtest gives tests a fresh Postgres database of their own.
//
// The admin URL is TEST_DATABASE_URL. When it is unset, pgtest uses the
// server at the default address (pgserver.DefaultAddr: 127.0.0.1:5432),
// and when nothing answers there it starts one private server for the
// test process from the installed server binaries (package pgserver),
// stopped and removed when the process exits. Without a server or
// binaries the test is skipped, except under CI=true, where it fails: CI
// must never pass by skipping the integration tests.
//
// NewMigratedDatabase applies package schema's migrations to it.
//
// It may import only the standard library, pgx, package schema and
// package pgserver; it is imported by tests only.
package pgtest
