// Package projections holds the read models of the query side, the projector
// runner that keeps them current, their checkpoints and their rebuilds.
//
// # Read models
//
// Two projections are kept, each in its own versioned tables behind a view:
//
//   - "customers": one row per customer (customer_summary view): profile,
//     state, current step, attempts, last error, pause details, created,
//     updated and activated times, stream version and the actor who signed
//     the customer up. The funnel (counts per state and step, time to active)
//     and the operator queue (paused customers) are queries over it.
//   - "provider_stats": per step (and so per provider) how many calls were
//     requested, succeeded and failed (provider_stats view).
//
// The bookkeeping tables and each projection's first version come from the
// database's migrations (package schema); a rebuild creates the next
// version's tables from this package's DDL, which matches the migration's.
// Substring search uses pg_trgm indexes when the extension exists or can be
// created, and a scan otherwise.
//
// # Exactly-once effect
//
// A projector consumes the event store by catch-up subscription
// (eventstore.Subscriber), applies events in batches and stores its
// checkpoint (the eventstore.Cursor of the last applied event) in the same
// Postgres transaction. Events at or before the checkpoint are never applied
// again, and a customer row additionally ignores events whose stream version
// it has already seen, so redelivery after a crash changes nothing.
//
// # Rebuild without downtime
//
// Rebuild replays the whole log into tables of a new version while the
// current ones keep serving, then, in one transaction that also holds off
// the live projector, catches up the tail, points the view at the new
// tables and marks the new version active. The live projector notices the
// switch and resumes from the new version's checkpoint.
//
// # Read your writes
//
// WaitFor blocks until a projection's checkpoint has reached a cursor;
// CursorAt finds the cursor of the event at a global position, so that a
// client holding only a position can wait for it.
//
// Package projectiontest generates realistic histories for the read side's
// tests and benchmarks.
//
// It may import domain and eventstore (and pgx); never httpapi or messaging.
package projections
