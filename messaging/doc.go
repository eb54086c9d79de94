// Package messaging carries committed events from the event store to NATS
// JetStream (the relay), delivers them to handlers through a Watermill
// router, keeps the messages handlers gave up on as dead letters, and starts
// an embedded NATS server for development and tests.
//
// # Streams and subjects
//
// EnsureStreams creates (or updates) the events stream, ONBOARDING by
// default, on onboarding.events.<stream type>.<event type>.<stream id>.<route>
// and onboarding.redrive.<handler>, and the dead-letter stream on
// onboarding.deadletters.<handler>. The route is the handler StreamConfig.Route
// names for the event, "_" for none; each part is made one subject token by
// SubjectToken. A relayed message carries the envelope as JSON
// (UnmarshalEnvelope) and the headers Nats-Msg-Id (the event id),
// Onboard-Cursor, Onboard-Position, Onboard-Transaction-Id,
// Onboard-Stream-Id, Onboard-Stream-Type, Onboard-Version,
// Onboard-Event-Type and, when the event has one, correlation_id.
//
// # Relay
//
// A Relay (relay.go) reads the store in global order from its cursor (table
// messaging_relay_cursor, relay_cursor.go), publishes asynchronously with a
// bounded window, waits for every ack and only then stores the cursor
// (relay_lead.go): delivery to JetStream is at least once, and JetStream's
// duplicate window drops re-publishes. One relay per name is active, the
// holder of a Postgres advisory lock on a dedicated session; the others wait
// and take over when that session ends. It wakes on the store's NOTIFY
// channel and polls as a fallback. At start, after every NATS reconnect and
// periodically it compares the stream's last stored event with its cursor
// (relay_stream.go): a stream that lost its tail is published to again from
// its last event; one that was recreated (NATS lost its data) from the
// lowest floor of the durable consumers (relay_floor.go), which the active
// relay records every FloorInterval in messaging_consumer_floors, not from
// the start of the log. A failed round is retried after backoff(n)
// (backoff.go).
//
// # Router
//
// A Router runs one durable JetStream pull consumer per handler name
// (explicit ack, AckWait, MaxDeliver, the BackOff delays on Nack; see
// subscriber.go for why it is not watermill-nats's subscriber) through a
// Watermill router whose middleware is, outermost first, PoisonQueue (dead
// letters) and Timeout. Its pulls ask for a heartbeat every second, so a
// consumer that vanished with NATS's data is found and re-created within
// seconds; while a handler runs it tells JetStream every AckWait/3 that the
// message is in progress, so AckWait bounds how long a lost delivery waits,
// not how long a handler may run. Events are handled concurrently, up to
// MaxAckPending, in no particular order.
//
// A Handler gets the decoded envelope and a pgx.Tx; the router commits the
// tx with an inbox row (messaging_inbox: handler, event id) written after
// the handler, so that the tx takes no transaction id (which would hold back
// the event store's global order) while the handler calls out, and a
// redelivery has no second effect. A handler added WithoutTx gets no tx and
// its inbox row is written after it in a group commit (inbox.go); its
// effects must be idempotent on their own. PruneInbox trims old rows.
//
// After MaxDeliver failed deliveries, or one Permanent error, the message
// becomes a dead letter: a row in messaging_dead_letters and a message on
// the dead-letter subject; DeadLetters lists and re-drives them. The Metrics
// interface reports relayed batches, rewinds, deliveries and dead letters.
//
// # Access and trust
//
// NATS users have roles (permissions.go): RolePermissions says what each
// may publish and subscribe to (only the relay publishes events), and
// ServerConfig renders that as the nats-server configuration of
// docker-compose and of the embedded server, which refuses clients
// without credentials. ClientAuth carries a client's credentials (creds
// file, nkey seed, user and password, TLS).
//
// No consumer acts on a message that does not match the event store
// (trust.go): the router checks every delivery against the store before
// its handler and dead-letters a mismatch (ErrForged) with an error log and
// Metrics.MessageForged; the relay's stream check resumes only from a
// position it matched to the store.
//
// Its tables are created by the database's migrations (package schema).
//
// It imports eventstore and no other package of this module: the routing
// rule comes in as StreamConfig.Route. Only cmd/onboard imports it.
package messaging
