-- +goose Up

-- The customers waiting out a provider's outage, for the one process that
-- resumes them (process.Outages) to find them oldest first. A row comes
-- from the customer's Blocked event (the process managers' reaction to
-- it); resumed_at is set when the customer resumes, and the rows of an
-- outage go when it ends.
CREATE TABLE IF NOT EXISTS onboard_waits (
	customer_id uuid        PRIMARY KEY,
	provider    text        NOT NULL,
	step        text        NOT NULL,
	since       timestamptz NOT NULL,
	resumed_at  timestamptz
);
CREATE INDEX IF NOT EXISTS onboard_waits_line ON onboard_waits (provider, since) WHERE resumed_at IS NULL;

-- The workers' samples of their provider calls, for GET /v1/providers:
-- per process, provider and 10-second bucket, the attempts, their errors
-- and latency, and the process's breaker state when it last wrote.
CREATE TABLE IF NOT EXISTS provider_samples (
	process     text             NOT NULL,
	provider    text             NOT NULL,
	bucket      timestamptz      NOT NULL,
	attempts    bigint           NOT NULL,
	errors      bigint           NOT NULL,
	latency_sum double precision NOT NULL,
	latency_max double precision NOT NULL,
	breaker     text             NOT NULL,
	updated_at  timestamptz      NOT NULL DEFAULT now(),
	PRIMARY KEY (provider, bucket, process)
);

-- The customer read model names the provider a customer waits on. Every
-- version's table gets the column (a rebuild creates it with its tables),
-- and the view is made again, since it lists its columns when created.
-- +goose StatementBegin
DO $$
DECLARE
	v record;
	t text;
BEGIN
	FOR v IN SELECT version FROM projection_versions WHERE name = 'customers' LOOP
		t := 'rm_customers_v' || v.version;
		IF to_regclass(t) IS NOT NULL THEN
			EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS blocked_on text NOT NULL DEFAULT %L', t, '');
			EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (blocked_on) WHERE blocked_on <> %L', t || '_blocked_idx', t, '');
		END IF;
	END LOOP;
	FOR v IN SELECT version FROM projection_active WHERE name = 'customers' LOOP
		DROP VIEW IF EXISTS customer_summary;
		EXECUTE format('CREATE VIEW customer_summary AS SELECT * FROM %I', 'rm_customers_v' || v.version);
	END LOOP;
END $$;
-- +goose StatementEnd

-- The view made again lost its grant. The workers keep the waits and the
-- samples; the operator API (query role) reads them.
GRANT SELECT ON customer_summary TO onboard_query;
GRANT SELECT, INSERT, UPDATE, DELETE ON onboard_waits, provider_samples TO onboard_worker;
GRANT SELECT ON onboard_waits, provider_samples TO onboard_query;

-- +goose Down
DROP TABLE provider_samples;
DROP TABLE onboard_waits;
