package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/onboard/onboard/eventstore"
)

const selectEvents = `SELECT transaction_id, position, event_id, stream_id, stream_type, version, type,
	schema_version, data, actor, correlation_id, causation_id, request_id, idempotency_key, trace,
	recorded_at, prev_hash, hash FROM events`

// safeHorizon restricts a read to transactions older than every transaction
// still in flight. Those have all ended, and a transaction that has not yet
// written gets a larger id, so nothing can later appear below the horizon:
// a reader never skips an event that commits late, it only waits for it.
// The snapshot is the statement's own, so every row below the horizon that
// committed is visible to it.
const safeHorizon = `transaction_id < pg_snapshot_xmin(pg_current_snapshot())`

// collectEnvelopes scans rows of selectEvents. It shares the strings that
// repeat from row to row (types, stream types, actors) instead of
// allocating them for every row: ReadAll is the relay's and the projectors'
// hot path.
func collectEnvelopes(rows pgx.Rows, sizeHint int) ([]eventstore.Envelope, error) {
	defer rows.Close()
	out := make([]eventstore.Envelope, 0, sizeHint)
	var in interner
	for rows.Next() {
		var (
			e                     eventstore.Envelope
			schema                int32
			data, trace           []byte
			streamType, typ, actr pgtype.DriverBytes
		)
		m := &e.Metadata
		if err := rows.Scan(&e.TransactionID, &e.Position, &e.ID, &e.StreamID, &streamType, &e.Version, &typ,
			&schema, &data, &actr, &m.CorrelationID, &m.CausationID, &m.RequestID, &m.IdempotencyKey, &trace,
			&e.RecordedAt, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		e.StreamType, e.Type, m.Actor = in.string(streamType), in.string(typ), in.string(actr)
		e.SchemaVersion = int(schema)
		e.Data = json.RawMessage(data)
		if len(trace) > 0 {
			t, err := decodeTrace(trace)
			if err != nil {
				return nil, fmt.Errorf("event %s: trace: %w", e.ID, err)
			}
			m.Trace = t
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// interner shares the strings of one read. It stops growing at a bound, so
// a column that does not repeat after all costs no more than usual.
type interner map[string]string

func (in *interner) string(b []byte) string {
	if s, ok := (*in)[string(b)]; ok { // no allocation for the lookup
		return s
	}
	s := string(b)
	if *in == nil {
		*in = make(interner, 16)
	}
	if len(*in) < 256 {
		(*in)[s] = s
	}
	return s
}

// decodeTrace decodes the trace column, which holds
// eventstore.CanonicalTrace: a flat JSON object of strings. The common case,
// without escapes, is split directly; anything else goes to encoding/json.
func decodeTrace(b []byte) (map[string]string, error) {
	if bytes.IndexByte(b, '\\') < 0 && len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' {
		if t, ok := splitTrace(b[1 : len(b)-1]); ok {
			return t, nil
		}
	}
	var t map[string]string
	err := json.Unmarshal(b, &t)
	return t, err
}

// splitTrace parses `"k":"v","k":"v"` without escapes; ok is false for
// anything else.
func splitTrace(b []byte) (map[string]string, bool) {
	t := make(map[string]string, 2)
	for len(b) > 0 {
		k, rest, ok := quoted(b)
		if !ok || len(rest) == 0 || rest[0] != ':' {
			return nil, false
		}
		v, rest, ok := quoted(rest[1:])
		if !ok {
			return nil, false
		}
		t[k] = v
		if len(rest) > 0 {
			if rest[0] != ',' || len(rest) == 1 {
				return nil, false
			}
			rest = rest[1:]
		}
		b = rest
	}
	return t, true
}

func quoted(b []byte) (s string, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != '"' {
		return "", nil, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return "", nil, false
	}
	return string(b[1 : 1+end]), b[2+end:], true
}

// ReadStream implements eventstore.StreamReader.
func (s *Store) ReadStream(ctx context.Context, streamID string, fromVersion int64) ([]eventstore.Envelope, error) {
	rows, err := s.pool.Query(ctx, selectEvents+` WHERE stream_id = $1 AND version >= $2 ORDER BY version`, streamID, fromVersion)
	if err != nil {
		return nil, fmt.Errorf("read stream %q: %w", streamID, err)
	}
	events, err := collectEnvelopes(rows, 16)
	if err != nil {
		return nil, fmt.Errorf("read stream %q: %w", streamID, err)
	}
	if len(events) == 0 {
		v, err := s.currentVersion(ctx, streamID)
		if err != nil {
			return nil, fmt.Errorf("read stream %q: %w", streamID, err)
		}
		if v == 0 {
			return nil, fmt.Errorf("read stream %q: %w", streamID, eventstore.ErrStreamNotFound)
		}
	}
	return events, nil
}

// ReadAll implements eventstore.AllReader.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Cursor, limit int) ([]eventstore.Envelope, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read all: limit %d: %w", limit, eventstore.ErrInvalidEvent)
	}
	rows, err := s.pool.Query(ctx, selectEvents+`
		WHERE (transaction_id, position) > ($1::xid8, $2::bigint) AND `+safeHorizon+`
		ORDER BY transaction_id, position LIMIT $3`,
		after.TransactionID, after.Position, limit)
	if err != nil {
		return nil, fmt.Errorf("read all after %s: %w", after, err)
	}
	events, err := collectEnvelopes(rows, min(limit, 64))
	if err != nil {
		return nil, fmt.Errorf("read all after %s: %w", after, err)
	}
	return events, nil
}

// Head implements eventstore.AllReader.
func (s *Store) Head(ctx context.Context) (eventstore.Cursor, error) {
	var c eventstore.Cursor
	err := s.pool.QueryRow(ctx, `SELECT transaction_id, position FROM events WHERE `+safeHorizon+`
		ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&c.TransactionID, &c.Position)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Cursor{}, nil
	}
	if err != nil {
		return eventstore.Cursor{}, fmt.Errorf("read head: %w", err)
	}
	return c, nil
}

// Verify implements eventstore.Verifier: it recomputes the chain in Go,
// from the stored columns, with eventstore.VerifyChain.
func (s *Store) Verify(ctx context.Context, streamID string) error {
	events, err := s.ReadStream(ctx, streamID, 1)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return eventstore.VerifyChain(streamID, events)
}

// LookupIdempotency implements eventstore.IdempotencyReader.
func (s *Store) LookupIdempotency(ctx context.Context, scope, key string) (eventstore.StoredIdempotency, bool, error) {
	var (
		r      eventstore.StoredIdempotency
		status int32
	)
	err := s.pool.QueryRow(ctx, `SELECT scope, key, fingerprint, status_code, response, stream_id, transaction_id,
		positions, first_version, last_version, created_at, expires_at
		FROM idempotency WHERE scope = $1 AND key = $2 AND expires_at > now()`, scope, key).Scan(
		&r.Scope, &r.Key, &r.Fingerprint, &status, &r.Response, &r.Result.StreamID, &r.Result.TransactionID,
		&r.Result.Positions, &r.Result.FirstVersion, &r.Result.LastVersion, &r.CreatedAt, &r.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.StoredIdempotency{}, false, nil
	}
	if err != nil {
		return eventstore.StoredIdempotency{}, false, fmt.Errorf("look up idempotency key %q: %w", key, err)
	}
	r.StatusCode = int(status)
	return r, true, nil
}

// ReservationOwner implements eventstore.ReservationReader.
func (s *Store) ReservationOwner(ctx context.Context, kind, value string) (string, bool, error) {
	var owner string
	err := s.pool.QueryRow(ctx, `SELECT owner_stream_id FROM reservations WHERE kind = $1 AND value = $2`, kind, value).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up reservation %s %q: %w", kind, value, err)
	}
	return owner, true, nil
}

// DeleteExpiredIdempotency removes idempotency records that expired before
// now, at most limit of them, and returns how many it removed. Run it from
// a periodic job; expired records are ignored by lookups either way.
func (s *Store) DeleteExpiredIdempotency(ctx context.Context, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency WHERE ctid = ANY(ARRAY(
		SELECT ctid FROM idempotency WHERE expires_at < now() LIMIT $1))`, limit)
	if err != nil {
		return 0, fmt.Errorf("delete expired idempotency records: %w", err)
	}
	return tag.RowsAffected(), nil
}
