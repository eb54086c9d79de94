// Package operator holds the operators' tools that look at many customers
// or at one customer in depth: bulk actions (retry, skip or cancel every
// customer a filter selects, at a bounded rate, checkpointed in Postgres),
// the stuck detector (customers past the deadline of their next expected
// event) and explain (one customer's events, provider calls, timers, inbox
// and dead letters, with a one-line diagnosis).
//
// It reads customers from the read models (projections) and runs commands
// through the command side (commands). What only the worker's or the
// messaging's tables know (timers, inbox rows, dead letters) it reads
// through the small interfaces it declares, which cmd/onboard wires.
//
// It may import commands, projections, domain and eventstore.
package operator
