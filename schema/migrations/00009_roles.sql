-- +goose Up

-- Least privilege: one group role (NOLOGIN) per process role of `onboard
-- serve`, with only the grants its statements need. The role that runs
-- the migrations owns every table; the process roles own nothing, so
-- none of them can alter, drop or truncate a table or disable the
-- triggers that keep the events and seals append-only. A deployment gives
-- each process a login role that is a member of the group roles of the
-- roles it runs (README, "Database roles").
--
-- Roles belong to the cluster, not the database: several databases
-- migrating at once (tests, or two deployments on one cluster) race to
-- create them, and the loser finds the winner's role.

-- +goose StatementBegin
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['onboard_command', 'onboard_query', 'onboard_worker', 'onboard_relay', 'onboard_projector'] LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r);
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL; -- created meanwhile by the migration of another database
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'group role % is missing and role % may not create it', r, current_user
                    USING HINT = 'create the roles onboard_command, onboard_query, onboard_worker, onboard_relay and '
                        'onboard_projector (NOLOGIN) first, or migrate as a role with CREATEROLE';
        END;
    END LOOP;
END
$$;
-- +goose StatementEnd

GRANT USAGE ON SCHEMA public TO onboard_command, onboard_query, onboard_worker, onboard_relay, onboard_projector;
-- Every role checks the schema's version at start.
GRANT SELECT ON eventstore_schema_version TO onboard_command, onboard_query, onboard_worker, onboard_relay, onboard_projector;

-- command: the HTTP commands and the KYC webhook append (events, the
-- idempotency record, the email reservation) and prune expired
-- idempotency records.
GRANT SELECT, INSERT ON events TO onboard_command;
GRANT USAGE ON SEQUENCE events_position_seq TO onboard_command;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency TO onboard_command;
GRANT SELECT, INSERT, UPDATE, DELETE ON reservations TO onboard_command;

-- worker: the process managers append the steps' events, keep their
-- durable timers, their consumers' inbox and dead letters, and (without
-- NATS) their checkpoint.
GRANT SELECT, INSERT ON events TO onboard_worker;
GRANT USAGE ON SEQUENCE events_position_seq TO onboard_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON onboard_timers TO onboard_worker;
GRANT SELECT, INSERT, UPDATE ON onboard_pm_checkpoints TO onboard_worker;
GRANT SELECT, INSERT, DELETE ON messaging_inbox TO onboard_worker;
GRANT SELECT, INSERT, UPDATE ON messaging_dead_letters TO onboard_worker;
GRANT USAGE ON SEQUENCE messaging_dead_letters_id_seq TO onboard_worker;

-- relay: reads the log, stores its cursor, writes seals and epochs.
GRANT SELECT ON events TO onboard_relay;
GRANT SELECT, INSERT, UPDATE ON messaging_relay_cursor TO onboard_relay;
GRANT SELECT, INSERT ON seals, store_epochs TO onboard_relay;

-- projector: reads the log and writes the read models of the active
-- versions and their checkpoints (locking the active row takes UPDATE).
GRANT SELECT ON events TO onboard_projector;
GRANT SELECT, UPDATE ON projection_active, projection_versions TO onboard_projector;

-- query: reads the read models through their views, their checkpoints
-- (read-your-writes waits, lag) and the log (timeline, time travel).
GRANT SELECT ON events, projection_active, projection_versions, customer_summary, provider_stats TO onboard_query;

-- The read models' tables are at whatever version a rebuild left active
-- (a rebuild copies these grants to the next version's tables).
-- +goose StatementBegin
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT name, version FROM projection_active LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO onboard_projector',
            CASE v.name WHEN 'customers' THEN 'rm_customers_v' ELSE 'rm_provider_stats_v' END || v.version);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- The roles stay: other databases of the cluster may use them.
-- +goose StatementBegin
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['onboard_command', 'onboard_query', 'onboard_worker', 'onboard_relay', 'onboard_projector'] LOOP
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', r);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM %I', r);
        EXECUTE format('REVOKE ALL ON SCHEMA public FROM %I', r);
    END LOOP;
END
$$;
-- +goose StatementEnd
