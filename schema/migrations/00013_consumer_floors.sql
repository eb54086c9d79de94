-- +goose Up

-- The durable consumers' floors, recorded by the active relay: for each
-- consumer of its stream, the cursor up to which the consumer needs no
-- event any more (it acknowledged them, or they are not for it). When NATS
-- lost the stream, the relay publishes again from the lowest floor seen
-- recently instead of from the start of the log. event_id, when set, is
-- the event right after the floor, which the relay matches to the store
-- before it trusts the floor.
CREATE TABLE IF NOT EXISTS messaging_consumer_floors (
	relay          text        NOT NULL,
	consumer       text        NOT NULL,
	transaction_id bigint      NOT NULL,
	position       bigint      NOT NULL,
	event_id       uuid,
	seen_at        timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (relay, consumer)
);

-- Only the relay records and reads them.
GRANT SELECT, INSERT, UPDATE, DELETE ON messaging_consumer_floors TO onboard_relay;

-- +goose Down
DROP TABLE messaging_consumer_floors;
