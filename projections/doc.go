// Package projections holds the read models, the projector runner that
// applies events and stores its checkpoint in the same transaction, and
// projection rebuilds.
//
// It may import domain and eventstore; never httpapi or messaging.
package projections
