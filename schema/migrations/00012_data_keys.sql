-- +goose Up

-- Each customer stream's data key for its personal data, wrapped by the
-- master key (AES-256-GCM, bound to the stream id), outside the events
-- table: destroying a key (wrapped set to NULL) erases what was encrypted
-- under it, while the events and their hash chain stay as they are. A
-- destroyed key's row stays, so that no new key is made for its stream.
CREATE TABLE IF NOT EXISTS data_keys (
    stream_id    text        PRIMARY KEY,
    wrapped      bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL))
);

-- The command role makes keys (signup) and destroys them (erasure); the
-- worker destroys a key an erasure left behind; every role that
-- decrypts personal data reads them. Rows are never deleted.
GRANT SELECT, INSERT, UPDATE ON data_keys TO onboard_command, onboard_worker;
GRANT SELECT ON data_keys TO onboard_query, onboard_projector;

-- +goose Down
DROP TABLE data_keys;
