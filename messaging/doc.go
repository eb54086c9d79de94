// Package messaging carries committed events from the event store to NATS
// JetStream (the relay), routes them to consumers with Watermill, and starts
// an embedded NATS server for development and tests.
//
// It may import handlers, projections, domain and eventstore. Only
// cmd/onboard may import it.
package messaging
