package postgres

import (
	"context"

	"github.com/onboard/onboard/schema"
)

// Migrate applies the database's pending migrations (package schema: the
// event store's tables and every other component's, one set) to the
// database at databaseURL. It is here so that Open prepares a database in
// one call; commands and tests call schema.Migrate or pgtest.
func Migrate(ctx context.Context, databaseURL string) error {
	return schema.Migrate(ctx, databaseURL)
}
