-- +goose Up

-- onboard_raise raises an error with the given SQLSTATE, message, detail
-- and hint. Single-statement appends (append.go) call it from a CASE to
-- fail as onboard_append does, with the same codes, when their idempotency
-- record or reservation cannot be stored: the statement, and with it the
-- events it inserted, is then rolled back.
-- +goose StatementBegin
CREATE FUNCTION onboard_raise(p_code text, p_message text, p_detail text, p_hint text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = p_message, DETAIL = p_detail, HINT = p_hint;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION onboard_raise(text, text, text, text);
