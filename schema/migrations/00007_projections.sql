-- +goose Up

-- The read models' bookkeeping and the tables of each projection's first
-- version. Readers query a view that points at the active version; a
-- rebuild (package projections) creates the next version's tables at run
-- time, with DDL that TestRebuildCreatesTheMigratedLayout holds equal to
-- this file's.
--
-- Before this migration the tables were created at start: IF NOT EXISTS
-- and the check of projection_active let a database made that way upgrade
-- whatever version its projections are at.

CREATE TABLE IF NOT EXISTS projection_versions (
	name                text        NOT NULL,
	version             integer     NOT NULL,
	checkpoint_tx       xid8        NOT NULL DEFAULT '0',
	checkpoint_position bigint      NOT NULL DEFAULT 0,
	updated_at          timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (name, version)
);
-- The row of a projection is locked by every batch of its live projector
-- and by the switch of a rebuild, which serialises the two.
CREATE TABLE IF NOT EXISTS projection_active (
	name    text    PRIMARY KEY,
	version integer NOT NULL
);

-- +goose StatementBegin
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM projection_active WHERE name = 'customers') THEN
		CREATE TABLE rm_customers_v1 (
			id            uuid        PRIMARY KEY,
			email         text        NOT NULL,
			company       text        NOT NULL,
			contact_name  text        NOT NULL,
			country       text        NOT NULL,
			plan          text        NOT NULL,
			state         text        NOT NULL,
			step          text        NOT NULL,
			attempts      integer     NOT NULL,
			last_error    text        NOT NULL,
			paused_step   text        NOT NULL,
			pause_reason  text        NOT NULL,
			paused_at     timestamptz,
			created_at    timestamptz NOT NULL,
			updated_at    timestamptz NOT NULL,
			activated_at  timestamptz,
			version       bigint      NOT NULL,
			position      bigint      NOT NULL,
			created_by    text        NOT NULL
		);
		-- Keyset pagination is newest first by id (UUIDv7, so by signup
		-- time), within a filter.
		CREATE INDEX rm_customers_v1_state_idx ON rm_customers_v1 (state, id);
		CREATE INDEX rm_customers_v1_step_idx ON rm_customers_v1 (step, id);
		CREATE INDEX rm_customers_v1_created_by_idx ON rm_customers_v1 (created_by, id);
		CREATE INDEX rm_customers_v1_paused_idx ON rm_customers_v1 (paused_at, id) WHERE state = 'paused';
		CREATE INDEX rm_customers_v1_activated_idx ON rm_customers_v1 (activated_at) WHERE activated_at IS NOT NULL;
		-- Substring search (?q=) uses trigram indexes when pg_trgm is there
		-- or can be created; without it search scans: a role that may not
		-- create extensions costs speed, not function.
		BEGIN
			CREATE EXTENSION IF NOT EXISTS pg_trgm;
		EXCEPTION WHEN OTHERS THEN
			NULL;
		END;
		IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
			CREATE INDEX rm_customers_v1_email_trgm_idx ON rm_customers_v1 USING gin (email gin_trgm_ops);
			CREATE INDEX rm_customers_v1_company_trgm_idx ON rm_customers_v1 USING gin (lower(company) gin_trgm_ops);
		END IF;
		INSERT INTO projection_versions (name, version) VALUES ('customers', 1) ON CONFLICT DO NOTHING;
		INSERT INTO projection_active (name, version) VALUES ('customers', 1);
		DROP VIEW IF EXISTS customer_summary;
		CREATE VIEW customer_summary AS SELECT * FROM rm_customers_v1;
	END IF;

	IF NOT EXISTS (SELECT 1 FROM projection_active WHERE name = 'provider_stats') THEN
		CREATE TABLE rm_provider_stats_v1 (
			step               text   PRIMARY KEY,
			provider           text   NOT NULL,
			requested          bigint NOT NULL,
			succeeded          bigint NOT NULL,
			failed             bigint NOT NULL,
			permanent_failures bigint NOT NULL
		);
		INSERT INTO projection_versions (name, version) VALUES ('provider_stats', 1) ON CONFLICT DO NOTHING;
		INSERT INTO projection_active (name, version) VALUES ('provider_stats', 1);
		DROP VIEW IF EXISTS provider_stats;
		CREATE VIEW provider_stats AS SELECT * FROM rm_provider_stats_v1;
	END IF;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
	v record;
BEGIN
	FOR v IN SELECT name, version FROM projection_versions LOOP
		EXECUTE format('DROP TABLE IF EXISTS %I CASCADE',
			CASE v.name WHEN 'customers' THEN 'rm_customers_v' ELSE 'rm_provider_stats_v' END || v.version);
	END LOOP;
END $$;
-- +goose StatementEnd
DROP TABLE projection_active;
DROP TABLE projection_versions;
