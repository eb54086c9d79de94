// Package postgres is the Postgres implementation of eventstore.Store, on
// pgx/v5 and pgxpool. Its tables come from the database's migrations
// (package schema).
//
// An append is one statement, one round trip and one transaction, durable
// when it returns: it checks the expected version, inserts the events
// (at most 100) with their hash chain, and writes the idempotency record
// and reservations. UNIQUE(stream_id, version) is the concurrency control.
//
// The global order is (transaction_id, position), where transaction_id is the
// appending transaction's xid8. ReadAll returns only rows of transactions
// older than the oldest transaction still in flight
// (pg_snapshot_xmin(pg_current_snapshot())): every such transaction has
// ended, and every transaction that has not yet written will get a larger
// id, so no row can later appear before the reader's cursor. See README.md.
//
// It may import the eventstore package and no other package of this module.
package postgres
