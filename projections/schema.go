package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/eventstore"
)

// The names of the projections, as Rebuild, Lag and WaitFor take them.
const (
	// Customers is the customer summary, from which the funnel and the
	// operator queue are read as well.
	Customers = "customers"
	// ProviderStats counts provider calls per step.
	ProviderStats = "provider_stats"
)

// ErrUnknownProjection is returned for a projection name that is not one of
// Names().
var ErrUnknownProjection = errors.New("projections: unknown projection")

// Names lists the projections.
func Names() []string { return []string{Customers, ProviderStats} }

// projection is one read model: its versioned tables, the view readers
// query, and how a batch of events changes it. Tables are versioned so that
// a rebuild can fill new ones while the old ones serve.
type projection interface {
	name() string
	// view is the name of the view that points at the active version.
	view() string
	// table is the name of the version's main table, which the view
	// selects from.
	table(version int) string
	// create creates the version's tables (idempotently), and index
	// their secondary indexes. Rebuild runs them for a new version; the
	// first version's come from the database's migrations (package
	// schema), which they match.
	create(ctx context.Context, tx pgx.Tx, version int) error
	index(ctx context.Context, tx pgx.Tx, version int) error
	// drop drops the version's tables.
	drop(ctx context.Context, tx pgx.Tx, version int) error
	// apply applies events, all after the version's checkpoint and in
	// global order, in tx. It must leave the tables as if each event had
	// been applied once.
	apply(ctx context.Context, tx pgx.Tx, version int, events []eventstore.Envelope) error
}

// lookup returns the projection named name, with what it needs of p.
func (p *Projections) lookup(name string) (projection, error) {
	if name == Customers {
		return customersProjection{keys: p.cfg.Keys}, nil
	}
	return lookup(name)
}

func lookup(name string) (projection, error) {
	switch name {
	case Customers:
		return customersProjection{}, nil
	case ProviderStats:
		return providerStatsProjection{}, nil
	}
	return nil, fmt.Errorf("%w: %q (known: %v)", ErrUnknownProjection, name, Names())
}

// pointView makes p's view select from the tables of version. Dropping and
// creating (rather than CREATE OR REPLACE) lets a new version change columns;
// inside the caller's transaction readers see either the old or the new
// view, never none.
func pointView(ctx context.Context, tx pgx.Tx, p projection, version int) error {
	view := pgx.Identifier{p.view()}.Sanitize()
	grants, err := grantsOn(ctx, tx, p.view(), p.view())
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `DROP VIEW IF EXISTS `+view+`; CREATE VIEW `+view+` AS SELECT * FROM `+
		pgx.Identifier{p.table(version)}.Sanitize())
	if err != nil {
		return fmt.Errorf("point view %s at version %d: %w", p.view(), version, err)
	}
	return grant(ctx, tx, grants)
}

// grantsOn returns the GRANT statements that give target the privileges
// granted on relation from (to any role but its owner). A new version's
// tables and a recreated view carry the old ones' grants this way, so the
// database roles of the processes (package schema's migrations) keep
// exactly the access they had, without this package naming them.
func grantsOn(ctx context.Context, tx pgx.Tx, from, target string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END
		FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
		WHERE c.oid = to_regclass($1) AND a.grantee <> c.relowner`, pgx.Identifier{from}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("read the grants on %s: %w", from, err)
	}
	on := pgx.Identifier{target}.Sanitize()
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (string, error) {
		var priv, grantee string
		err := row.Scan(&priv, &grantee)
		return "GRANT " + priv + " ON " + on + " TO " + grantee, err
	})
}

func grant(ctx context.Context, tx pgx.Tx, grants []string) error {
	for _, g := range grants {
		if _, err := tx.Exec(ctx, g); err != nil {
			return fmt.Errorf("%s: %w", g, err)
		}
	}
	return nil
}

// lockActive locks the projection's active row and returns the active
// version and its checkpoint. The checkpoint is read by a second statement
// on purpose: in READ COMMITTED a statement that waited for the lock still
// sees the other rows of a join as of its own start, so a joined read could
// return the checkpoint from before the batch that held the lock.
func lockActive(ctx context.Context, tx pgx.Tx, name string) (int, eventstore.Cursor, error) {
	var (
		v  int
		cp eventstore.Cursor
	)
	err := tx.QueryRow(ctx, `SELECT version FROM projection_active WHERE name = $1 FOR UPDATE`, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, cp, fmt.Errorf("projection %q has no active version: run `onboard migrate`", name)
	}
	if err != nil {
		return 0, cp, err
	}
	err = tx.QueryRow(ctx, `SELECT checkpoint_tx, checkpoint_position FROM projection_versions
		WHERE name = $1 AND version = $2`, name, v).Scan(&cp.TransactionID, &cp.Position)
	return v, cp, err
}

// activeCheckpoint reads the active version and its checkpoint without
// locking.
func activeCheckpoint(ctx context.Context, q querier, name string) (int, eventstore.Cursor, error) {
	var (
		v  int
		cp eventstore.Cursor
	)
	err := q.QueryRow(ctx, `SELECT a.version, v.checkpoint_tx, v.checkpoint_position
		FROM projection_active a JOIN projection_versions v USING (name, version)
		WHERE a.name = $1`, name).Scan(&v, &cp.TransactionID, &cp.Position)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, cp, fmt.Errorf("projection %q has no active version: run `onboard migrate`", name)
	}
	return v, cp, err
}

func saveCheckpoint(ctx context.Context, tx pgx.Tx, name string, version int, cp eventstore.Cursor) error {
	_, err := tx.Exec(ctx, `UPDATE projection_versions SET checkpoint_tx = $3::xid8, checkpoint_position = $4, updated_at = now()
		WHERE name = $1 AND version = $2`, name, version, cp.TransactionID, cp.Position)
	return err
}

// querier is a pool, a connection or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}
