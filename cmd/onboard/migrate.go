package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/onboard/onboard/internal/pgserver"
	"github.com/onboard/onboard/schema"
)

// defaultDatabaseURL is the local development database, at
// pgserver.DefaultAddr (127.0.0.1:5432 unless a test moves it).
func defaultDatabaseURL() string {
	return "postgres://postgres@" + pgserver.DefaultAddr() + "/onboard?sslmode=disable"
}

// databaseURL is DATABASE_URL (or DATABASE_URL_FILE: the URL may hold a
// password), or the local development database.
func databaseURL() (string, error) {
	u, err := secretEnv("DATABASE_URL")
	if u == "" && err == nil {
		u = defaultDatabaseURL()
	}
	return u, err
}

func newMigrateCmd() *cobra.Command {
	var create bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the database migrations (DATABASE_URL) and exit",
		Long: `Applies the pending migrations to DATABASE_URL: they create every table of
onboard. The roles of onboard serve start only on a database at the version
their binary needs, so run this before starting a new version.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url, err := databaseURL()
			if err != nil {
				return err
			}
			if create {
				if err := schema.EnsureDatabase(cmd.Context(), url); err != nil {
					return fmt.Errorf("cannot reach Postgres at DATABASE_URL (start one, e.g. pg_ctlcluster 15 main start): %w", err)
				}
			}
			if err := schema.Migrate(cmd.Context(), url); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "migrations applied: schema version %d\n", schema.Latest())
			return nil
		},
	}
	cmd.Flags().BoolVar(&create, "create-database", false, "create the database first if it does not exist")
	return cmd
}

// readSchema reads the status of the database pool is on, without writing
// to it; its errors say what to do.
func readSchema(ctx context.Context, pool *pgxpool.Pool) (schema.Status, error) {
	s, err := schema.Read(ctx, pool)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return s, nil
	case errors.As(err, &pgErr) && pgErr.Code == "3D000": // invalid_catalog_name
		return s, fmt.Errorf("database %s does not exist (run `onboard migrate --create-database`)",
			pool.Config().ConnConfig.Database)
	}
	return s, fmt.Errorf("cannot reach Postgres at DATABASE_URL (is it running? see README): %w", err)
}

// checkSchema fails unless the database pool is on has every migration of
// this binary: roles never migrate, `onboard migrate` does.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	s, err := readSchema(ctx, pool)
	if err != nil {
		return err
	}
	return s.Check()
}
