-- +goose Up

-- The process managers' durable timers and the checkpoints of their
-- catch-up subscription (when no NATS runs). Before this migration they
-- were created at start; IF NOT EXISTS lets a database made that way
-- upgrade, and the ADD COLUMN one made before timers carried a trace.

CREATE TABLE IF NOT EXISTS onboard_timers (
	customer_id uuid        NOT NULL,
	kind        text        NOT NULL,
	step        text        NOT NULL,
	attempt     int         NOT NULL,
	ref         text        NOT NULL DEFAULT '',
	due_at      timestamptz NOT NULL,
	gen         bigint      NOT NULL DEFAULT 1,
	-- trace is the trace context of the reaction that scheduled the timer.
	trace       jsonb       NOT NULL DEFAULT '{}',
	PRIMARY KEY (customer_id, kind, step)
);
ALTER TABLE onboard_timers ADD COLUMN IF NOT EXISTS trace jsonb NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS onboard_timers_due ON onboard_timers (due_at);

CREATE TABLE IF NOT EXISTS onboard_pm_checkpoints (
	name           text   PRIMARY KEY,
	transaction_id bigint NOT NULL,
	position       bigint NOT NULL
);

-- +goose Down
DROP TABLE onboard_pm_checkpoints;
DROP TABLE onboard_timers;
