package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

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

// collectEnvelopes scans rows of selectEvents.
func collectEnvelopes(rows pgx.Rows, sizeHint int) ([]eventstore.Envelope, error) {
	defer rows.Close()
	out := make([]eventstore.Envelope, 0, sizeHint)
	for rows.Next() {
		var (
			e      eventstore.Envelope
			schema int32
			data   []byte
			trace  []byte
		)
		m := &e.Metadata
		if err := rows.Scan(&e.TransactionID, &e.Position, &e.ID, &e.StreamID, &e.StreamType, &e.Version, &e.Type,
			&schema, &data, &m.Actor, &m.CorrelationID, &m.CausationID, &m.RequestID, &m.IdempotencyKey, &trace,
			&e.RecordedAt, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		e.SchemaVersion = int(schema)
		e.Data = json.RawMessage(data)
		if len(trace) > 0 {
			if err := json.Unmarshal(trace, &m.Trace); err != nil {
				return nil, fmt.Errorf("event %s: trace: %w", e.ID, err)
			}
		}
		out = append(out, e)
	}
	return out, rows.Err()
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
	events, err := collectEnvelopes(rows, min(limit, 4096))
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
