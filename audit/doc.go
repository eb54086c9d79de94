// Package audit is the replay engine behind `onboard replay`: it proves what
// happened, from the event store alone.
//
//   - ReplayCustomer: a customer's state as it was at a time or version,
//     rebuilt through today's domain code (upcasters included), with the
//     timeline that led there (time, actor, correlation id, what and why).
//   - VerifyAll / VerifyStream / Checker: every stream's versions are
//     contiguous, each event links to its predecessor's hash and matches
//     its own (eventstore.Hash, as eventstore.VerifyChain computes it),
//     decodes with today's code, and records a transition that today's
//     transition table allows. The whole store is read once in global order
//     with ReadAll pages, keeping per stream only its last version, hash,
//     state and open command group, never its events.
//   - CheckHistory: the transition check for a recorded history; the golden
//     histories in testdata/histories are replayed through it and through
//     domain.FromHistory to the snapshots in testdata/golden.
//   - Export: the audit trail as JSON lines or CSV, every stored field and
//     hash included, so an export can be verified offline.
//   - Rebuild and Diff: read models rebuilt from position 0 (projections
//     does the zero-downtime switch), and a live read model compared field
//     by field with a from-scratch replay through the domain.
//
// How events map to the transition table: a command appends a leader event
// (its type names the command, see domain.CommandOfType) and at most one
// follower that concludes the journey (onboarding_completed, cancelled).
// For each such group, (state before the leader, command, state after the
// group) must be an edge of domain.Transitions().
//
// It may import projections, domain and eventstore; never
// eventstore/postgres, commands, process, httpapi or messaging: callers
// pass the small reader interfaces (eventstore.AllReader, eventstore.StreamReader,
// LiveModel, Rebuilder).
package audit
