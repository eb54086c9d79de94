// Package messaging carries committed events from the event store to NATS
// JetStream (the relay), routes them to consumers with Watermill, and starts
// an embedded NATS server for development and tests.
//
// # Streams and subjects
//
// EnsureStreams creates (or updates) the events stream, ONBOARDING by
// default, on onboarding.events.<stream type>.<event type>.<stream id>.<route>,
// where route is what StreamConfig.Route names as the handler the event is
// for, "_" for none (each part made one subject token by SubjectToken; a
// handler added WithRoute filters on its route), and
// onboarding.redrive.<handler>, and the dead-letter stream on
// onboarding.deadletters.<handler>. Each relayed message carries the
// envelope as JSON (UnmarshalEnvelope) and the headers Nats-Msg-Id (the
// event id), Onboard-Cursor, Onboard-Position, Onboard-Transaction-Id,
// Onboard-Stream-Id, Onboard-Stream-Type, Onboard-Version,
// Onboard-Event-Type and correlation_id.
//
// # Relay
//
// A Relay reads the store in global order from its cursor (table
// messaging_relay_cursor), publishes asynchronously with a bounded window,
// waits for every ack and only then stores the cursor: delivery to
// JetStream is at least once, and JetStream's duplicate window drops
// re-publishes. One relay per name is active, the holder of a Postgres
// advisory lock on a dedicated session; the others wait and take over when
// that session ends. It wakes on the store's NOTIFY channel, polls as a
// fallback, and at start, after every NATS reconnect and periodically
// compares the stream with its cursor: a stream that lost its tail, or was
// recreated, is published to again from where it is behind.
//
// # Router
//
// A Router runs one durable JetStream pull consumer per handler name
// (explicit ack, AckWait, MaxDeliver, backoff on Nack) through a Watermill
// router whose middleware is, outermost first: PoisonQueue (dead letters)
// and Timeout. Events are handled concurrently, up to MaxAckPending, in no
// particular order: a handler that decides on an aggregate's stored state
// needs none. A Handler gets the decoded envelope and a pgx.Tx;
// the router commits the tx with an inbox row (messaging_inbox: handler,
// event id), written after the handler so that the tx takes no
// transaction id (which would hold back the event store's global order)
// while the handler calls out; a redelivery has no second effect
// (PruneInbox trims old rows). After MaxDeliver failed deliveries (or one Permanent error) the
// message becomes a dead letter: a row in messaging_dead_letters and a
// message on the dead-letter subject; DeadLetters lists and re-drives them.
// The Metrics interface reports relayed batches, rewinds, deliveries and
// dead letters.
//
// Its tables (relay cursor, inbox, dead letters) are created by the
// database's migrations (package schema), not at start.
//
// It may import handlers, projections, domain and eventstore, not
// eventstore/postgres (it takes an eventstore.AllReader and a pgxpool.Pool).
// Only cmd/onboard may import it.
package messaging
