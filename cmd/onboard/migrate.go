package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/onboard/onboard/eventstore/postgres"
)

// defaultDatabaseURL is the local development database.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/onboard?sslmode=disable"

func databaseURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return defaultDatabaseURL
}

func newMigrateCmd() *cobra.Command {
	var create bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the database migrations (DATABASE_URL) and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url := databaseURL()
			if create {
				if err := postgres.EnsureDatabase(cmd.Context(), url); err != nil {
					return fmt.Errorf("cannot reach Postgres at DATABASE_URL (start one, e.g. pg_ctlcluster 15 main start): %w", err)
				}
			}
			if err := postgres.Migrate(cmd.Context(), url); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "migrations applied")
			return nil
		},
	}
	cmd.Flags().BoolVar(&create, "create-database", false, "create the database first if it does not exist")
	return cmd
}
