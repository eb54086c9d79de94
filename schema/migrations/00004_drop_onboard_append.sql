-- +goose Up

-- Appends are single statements (append.go); nothing calls onboard_append
-- any more. onboard_raise stays: the statements fail through it.
DROP FUNCTION IF EXISTS onboard_append(text, text, bigint, uuid[], text[], integer[], text[], text[], text[], text[],
    text[], text[], text[], bytea[], text[], text[], text[], text[], text[], text[],
    text, text, text, integer, bytea, bigint);

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION onboard_append(
    p_stream_id text, p_stream_type text, p_expected bigint,
    p_ids uuid[], p_types text[], p_schema_versions integer[], p_data text[],
    p_actors text[], p_correlation_ids text[], p_causation_ids text[],
    p_request_ids text[], p_idempotency_keys text[], p_traces text[], p_bodies bytea[],
    p_res_kinds text[], p_res_values text[], p_res_owners text[],
    p_rel_kinds text[], p_rel_values text[], p_rel_owners text[],
    p_idem_scope text, p_idem_key text, p_idem_fingerprint text,
    p_idem_status integer, p_idem_response bytea, p_idem_ttl_ms bigint,
    OUT out_transaction_id xid8, OUT out_positions bigint[], OUT out_first_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_current  bigint;
    v_prev     bytea;
    v_hash     bytea;
    v_now      timestamptz := now();
    v_micros   bigint := (extract(epoch FROM now()) * 1000000)::bigint;
    v_position bigint;
    v_owner    text;
    v_n        integer := cardinality(p_ids);
    v_stream   bytea := int4send(octet_length(convert_to(p_stream_id, 'UTF8'))) || convert_to(p_stream_id, 'UTF8')
                     || int4send(octet_length(convert_to(p_stream_type, 'UTF8'))) || convert_to(p_stream_type, 'UTF8');
BEGIN
    -- A new stream needs no look-up: if it exists after all, inserting
    -- version 1 violates events_stream_version_key.
    v_current := 0;
    v_prev := ''::bytea;
    IF p_expected <> 0 THEN
        SELECT e.version, e.hash INTO v_current, v_prev
          FROM events e WHERE e.stream_id = p_stream_id
         ORDER BY e.version DESC LIMIT 1;
        IF NOT FOUND THEN
            v_current := 0;
            v_prev := ''::bytea;
        END IF;
    END IF;

    -- A repeated request is recognised as such first, whatever else
    -- changed since. (A concurrent one is caught by the insert below.)
    IF p_idem_key IS NOT NULL AND EXISTS (
        SELECT 1 FROM idempotency i
         WHERE i.scope = p_idem_scope AND i.key = p_idem_key AND i.expires_at > v_now) THEN
        RAISE EXCEPTION 'idempotency key already stored' USING ERRCODE = 'OB003';
    END IF;

    IF p_expected <> -1 AND p_expected <> v_current THEN
        RAISE EXCEPTION 'concurrency conflict' USING ERRCODE = 'OB001', DETAIL = v_current::text;
    END IF;

    out_positions := '{}';
    FOR i IN 1 .. v_n LOOP
        -- eventstore.CanonicalBytes, byte for byte: the client encodes the
        -- fields it knows (p_bodies: type through trace), this function the
        -- ones only it knows (stream fields, version, recording time).
        v_hash := sha256(v_prev || uuid_send(p_ids[i]) || v_stream || int8send(v_current + i) || p_bodies[i]
            || int8send(v_micros));
        INSERT INTO events (event_id, stream_id, stream_type, version, type, schema_version, data,
                            actor, correlation_id, causation_id, request_id, idempotency_key, trace,
                            recorded_at, prev_hash, hash)
        VALUES (p_ids[i], p_stream_id, p_stream_type, v_current + i, p_types[i], p_schema_versions[i],
                p_data[i]::json, p_actors[i], p_correlation_ids[i], p_causation_ids[i], p_request_ids[i],
                p_idempotency_keys[i], p_traces[i]::json, v_now, v_prev, v_hash)
        RETURNING events.position INTO v_position;
        out_positions := out_positions || v_position;
        v_prev := v_hash;
    END LOOP;
    out_transaction_id := pg_current_xact_id();
    out_first_version := v_current + 1;

    IF p_idem_key IS NOT NULL THEN
        INSERT INTO idempotency AS i (scope, key, fingerprint, status_code, response, stream_id,
                                      transaction_id, positions, first_version, last_version,
                                      created_at, expires_at)
        VALUES (p_idem_scope, p_idem_key, p_idem_fingerprint, p_idem_status, p_idem_response,
                p_stream_id, out_transaction_id, out_positions, v_current + 1, v_current + v_n,
                v_now, v_now + p_idem_ttl_ms * interval '1 millisecond')
        ON CONFLICT (scope, key) DO UPDATE
            SET fingerprint = EXCLUDED.fingerprint, status_code = EXCLUDED.status_code,
                response = EXCLUDED.response, stream_id = EXCLUDED.stream_id,
                transaction_id = EXCLUDED.transaction_id, positions = EXCLUDED.positions,
                first_version = EXCLUDED.first_version, last_version = EXCLUDED.last_version,
                created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
            WHERE i.expires_at <= v_now;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'idempotency key already stored' USING ERRCODE = 'OB003';
        END IF;
    END IF;

    FOR i IN 1 .. coalesce(cardinality(p_res_kinds), 0) LOOP
        INSERT INTO reservations (kind, value, owner_stream_id)
        VALUES (p_res_kinds[i], p_res_values[i], p_res_owners[i])
        ON CONFLICT (kind, value) DO NOTHING;
        IF NOT FOUND THEN
            SELECT r.owner_stream_id INTO v_owner FROM reservations r
             WHERE r.kind = p_res_kinds[i] AND r.value = p_res_values[i];
            IF v_owner IS DISTINCT FROM p_res_owners[i] THEN
                RAISE EXCEPTION 'reservation taken' USING ERRCODE = 'OB002',
                    DETAIL = coalesce(v_owner, ''), HINT = i::text;
            END IF;
        END IF;
    END LOOP;

    FOR i IN 1 .. coalesce(cardinality(p_rel_kinds), 0) LOOP
        DELETE FROM reservations r
         WHERE r.kind = p_rel_kinds[i] AND r.value = p_rel_values[i] AND r.owner_stream_id = p_rel_owners[i];
    END LOOP;
END
$$;
-- +goose StatementEnd
