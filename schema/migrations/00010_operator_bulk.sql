-- +goose Up

-- Bulk operator actions (retry, skip or cancel many customers at once):
-- the operation and its targets, chosen when it is created, with each
-- target's outcome. The targets are the checkpoint: an executor that stops
-- goes on with the pending ones, and each customer's command carries an
-- idempotency record (scope bulk:<id>) so that a target whose command
-- committed just before the stop is not acted on twice.
CREATE TABLE IF NOT EXISTS operator_bulk (
	id              uuid             PRIMARY KEY,
	operator        text             NOT NULL,
	idempotency_key text             NOT NULL,
	fingerprint     text             NOT NULL,
	action          text             NOT NULL,
	filter          jsonb            NOT NULL,
	reason          text             NOT NULL,
	-- rate is the most commands a second the executor runs.
	rate            double precision NOT NULL,
	total           integer          NOT NULL,
	status          text             NOT NULL,
	created_at      timestamptz      NOT NULL DEFAULT now(),
	finished_at     timestamptz,
	-- lease_until is when the executor working on it is presumed gone.
	lease_until     timestamptz      NOT NULL DEFAULT '-infinity'
);
CREATE UNIQUE INDEX IF NOT EXISTS operator_bulk_key ON operator_bulk (operator, idempotency_key);
CREATE INDEX IF NOT EXISTS operator_bulk_running ON operator_bulk (created_at) WHERE status = 'running';

CREATE TABLE IF NOT EXISTS operator_bulk_items (
	bulk_id     uuid        NOT NULL REFERENCES operator_bulk (id),
	seq         integer     NOT NULL,
	customer_id uuid        NOT NULL,
	-- status is pending, done or failed.
	status      text        NOT NULL DEFAULT 'pending',
	error       text        NOT NULL DEFAULT '',
	position    bigint,
	done_at     timestamptz,
	PRIMARY KEY (bulk_id, seq)
);
CREATE INDEX IF NOT EXISTS operator_bulk_items_pending ON operator_bulk_items (bulk_id, seq) WHERE status = 'pending';

-- The operator API (query role) stores operations and their targets, reads
-- them with the timers, inbox and dead letters (explain, the stuck list)
-- and redrives dead letters; the command role executes the operations.
GRANT SELECT, INSERT ON operator_bulk, operator_bulk_items TO onboard_query;
GRANT SELECT ON onboard_timers, messaging_inbox TO onboard_query;
GRANT SELECT, UPDATE ON messaging_dead_letters TO onboard_query;
GRANT SELECT, UPDATE ON operator_bulk, operator_bulk_items TO onboard_command;

-- +goose Down
DROP TABLE operator_bulk_items;
DROP TABLE operator_bulk;
