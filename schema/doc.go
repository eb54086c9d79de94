// Package schema holds every table of onboard's database as one ordered
// set of goose migrations (migrations/*.sql, embedded), and what is done
// with them: Migrate applies them (`onboard migrate`, and `onboard dev` at
// start); Read and Status.Check tell a starting role whether the database
// is at the version its binary needs, without writing to it;
// EnsureDatabase creates the database itself.
//
// The set is shared by all components (the event store, the messaging
// inbox, relay cursor and dead letters, the process managers' timers and
// checkpoints, the read models' first versions) so that one version
// number says what a database holds. Projection rebuilds still create
// further versions of a read model's tables at run time (package
// projections), from DDL that a test holds equal to the migration's.
//
// It may import no package of this module.
package schema
