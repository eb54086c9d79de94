// Package eventstoretest is the conformance suite of eventstore.Store: every
// implementation runs it from its own tests with Run, in the manner of
// Watermill's pubsub/tests. It checks the contract, not an implementation:
// optimistic concurrency, idempotent re-appends, the hooks that commit with
// an append, gap-free global order under commit-order races, subscriptions
// and the hash chain.
//
// It may import the eventstore package and no other package of this module.
package eventstoretest
