-- +goose Up

-- The store's identity: the cluster's system identifier and an epoch. The
-- relay starts a new epoch when it finds the store behind the last seal
-- published on NATS (a restored backup), so seals made after a restore are
-- told apart from the lost ones. pg_control_system() needs a privileged
-- role; without one the identifier is recorded as 0.
CREATE TABLE IF NOT EXISTS store_epochs (
    epoch             bigint      PRIMARY KEY,
    system_identifier bigint      NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    reason            text        NOT NULL
);

-- +goose StatementBegin
DO $$
DECLARE
    v_id bigint := 0;
BEGIN
    BEGIN
        SELECT system_identifier INTO v_id FROM pg_control_system();
    EXCEPTION WHEN insufficient_privilege THEN
        v_id := 0;
    END;
    INSERT INTO store_epochs (epoch, system_identifier, reason) VALUES (1, v_id, 'created')
        ON CONFLICT (epoch) DO NOTHING;
END
$$;
-- +goose StatementEnd

-- Seals: signed statements of the log's digest at a position (see
-- eventstore.Seal), written by the active relay. Like the events they are
-- never changed.
CREATE TABLE IF NOT EXISTS seals (
    seq               bigint      PRIMARY KEY CHECK (seq > 0),
    epoch             bigint      NOT NULL,
    system_identifier text        NOT NULL,
    cursor            text        NOT NULL,
    events            bigint      NOT NULL,
    digest            bytea       NOT NULL,
    heads             bytea       NOT NULL,
    heads_digest      bytea       NOT NULL,
    sealed_at         timestamptz NOT NULL,
    key_id            text        NOT NULL,
    signature         bytea       NOT NULL
);

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION seals_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rejected: % are append-only', TG_OP, TG_TABLE_NAME USING ERRCODE = 'OB100';
END
$$;
-- +goose StatementEnd

CREATE OR REPLACE TRIGGER seals_immutable_rows BEFORE UPDATE OR DELETE ON seals
    FOR EACH STATEMENT EXECUTE FUNCTION seals_immutable();
CREATE OR REPLACE TRIGGER seals_immutable_truncate BEFORE TRUNCATE ON seals
    FOR EACH STATEMENT EXECUTE FUNCTION seals_immutable();
CREATE OR REPLACE TRIGGER store_epochs_immutable_rows BEFORE UPDATE OR DELETE ON store_epochs
    FOR EACH STATEMENT EXECUTE FUNCTION seals_immutable();
CREATE OR REPLACE TRIGGER store_epochs_immutable_truncate BEFORE TRUNCATE ON store_epochs
    FOR EACH STATEMENT EXECUTE FUNCTION seals_immutable();

-- +goose Down
DROP TABLE seals;
DROP TABLE store_epochs;
DROP FUNCTION seals_immutable;
