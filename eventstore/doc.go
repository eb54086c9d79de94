// Package eventstore defines the Store contract of the append-only event log:
// the envelope of a stored event, expected versions, the global order and its
// Cursor, the subscription API, the hooks that commit with an append
// (idempotency records, unique-value reservations), the hash chain, the
// KeyStore of the streams' data keys for their personal data, and the
// errors callers branch on. Implementations live in sub-packages
// (eventstore/postgres) and prove themselves with eventstore/eventstoretest.
//
// # Global order
//
// Events are ordered globally by Cursor (transaction id, position), the order
// in which appends become safe to read. Positions are unique but, under
// concurrent appends, may become visible out of order; a reader checkpoints
// the Cursor of the last event it processed, never a bare position. Within a
// stream the global order is the version order.
//
// It may import only the standard library and github.com/google/uuid; no
// other package of this module.
package eventstore
