-- +goose Up

-- The tables of package messaging: the relay's cursor, the consumers'
-- inbox and the dead letters. Before this migration messaging created them
-- at start; IF NOT EXISTS lets a database made that way upgrade.

CREATE TABLE IF NOT EXISTS messaging_relay_cursor (
	relay          text PRIMARY KEY,
	transaction_id bigint NOT NULL,
	position       bigint NOT NULL,
	-- stream_created identifies the stream incarnation the cursor is about
	-- (its creation time in Unix nanoseconds): a recreated stream lacks
	-- everything published before.
	stream_created bigint NOT NULL DEFAULT 0,
	updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS messaging_inbox (
	handler      text NOT NULL,
	event_id     uuid NOT NULL,
	processed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (handler, event_id)
);
CREATE INDEX IF NOT EXISTS messaging_inbox_processed_at ON messaging_inbox (processed_at);

CREATE TABLE IF NOT EXISTS messaging_dead_letters (
	id            bigserial PRIMARY KEY,
	handler       text NOT NULL,
	event_id      uuid NOT NULL,
	event_type    text NOT NULL,
	stream_id     text NOT NULL,
	subject       text NOT NULL,
	error         text NOT NULL,
	deliveries    bigint NOT NULL,
	payload       bytea NOT NULL,
	headers       jsonb NOT NULL,
	status        text NOT NULL DEFAULT 'dead' CHECK (status IN ('dead', 'redriven', 'resolved')),
	dead_count    integer NOT NULL DEFAULT 1,
	redrive_count integer NOT NULL DEFAULT 0,
	created_at    timestamptz NOT NULL DEFAULT now(),
	updated_at    timestamptz NOT NULL DEFAULT now(),
	UNIQUE (handler, event_id)
);
CREATE INDEX IF NOT EXISTS messaging_dead_letters_status ON messaging_dead_letters (status, id);

-- +goose Down
DROP TABLE messaging_dead_letters;
DROP TABLE messaging_inbox;
DROP TABLE messaging_relay_cursor;
