package postgres

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/onboard/onboard/eventstore"
)

// SQLSTATEs raised by the append statement (through onboard_raise) and the
// immutability trigger.
const (
	codeConcurrency    = "OB001"
	codeReservation    = "OB002"
	codeIdempotency    = "OB003"
	codeImmutable      = "OB100"
	codeUniqueViolated = "23505"
)

// querier is what an append runs on: the pool, or a transaction in tests.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// maxAnyRetries bounds the retries of an append with eventstore.Any that
// lost a race for a version: Any promises to append whatever the version.
const maxAnyRetries = 10

// maxAppendEvents bounds the events of one append: each is one CTE of the
// append statement, whose planning time grows faster than its length.
const maxAppendEvents = 100

// Append implements eventstore.Appender.
func (s *Store) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.NewEvent, opts ...eventstore.AppendOption) (eventstore.AppendResult, error) {
	o := eventstore.ApplyAppendOptions(streamID, opts...)
	query, args, prepared, err := prepareAppend(streamID, expected, events, o)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	for attempt := 0; ; attempt++ {
		res, err := s.appendStatement(ctx, s.pool, streamID, query, args)
		if err == nil {
			s.wakeSubscribers()
			return res, nil
		}
		res, err = s.explainAppendError(ctx, streamID, expected, prepared, o, err)
		var ce *eventstore.ConcurrencyError
		if expected == eventstore.Any && errors.As(err, &ce) && attempt < maxAnyRetries {
			continue
		}
		return res, err
	}
}

// prepareAppend validates an append and returns its statement, the
// statement's arguments and the prepared events.
func prepareAppend(streamID string, expected eventstore.ExpectedVersion, events []eventstore.NewEvent, o eventstore.AppendOptions) (string, []any, []eventstore.NewEvent, error) {
	if len(events) > maxAppendEvents {
		return "", nil, nil, fmt.Errorf("append of %d events to %q, more than %d: %w", len(events), streamID, maxAppendEvents, eventstore.ErrInvalidEvent)
	}
	prepared, err := eventstore.PrepareAppend(streamID, expected, events, o)
	if err != nil {
		return "", nil, nil, err
	}
	reservations := reservationList(streamID, o.Reservations)
	releases := reservationList(streamID, o.Releases)
	shape := statementShape{events: len(prepared), idempotency: o.Idempotency != nil, reservations: len(reservations), releases: len(releases)}
	query, ok := commonStatements[shape]
	if !ok {
		query = buildAppendStatement(shape)
	}
	return query, appendArgs(streamID, expected, prepared, o.StreamType, o.Idempotency, reservations, releases), prepared, nil
}

// statementShape is what an append statement does: insert its events,
// store an idempotency record, claim and give up reservations.
type statementShape struct {
	events                 int
	idempotency            bool
	reservations, releases int
}

// commonStatements holds the statements of the shapes appends mostly take,
// built once.
var commonStatements = func() map[statementShape]string {
	out := map[statementShape]string{}
	for n := 1; n <= 8; n++ {
		for _, idem := range []bool{false, true} {
			for res := range 2 {
				shape := statementShape{events: n, idempotency: idem, reservations: res}
				out[shape] = buildAppendStatement(shape)
			}
		}
	}
	return out
}()

// buildAppendStatement returns the one statement that appends an append of
// its shape, in one round trip and one transaction. It reads the stream's
// last version and hash (not for a new stream: if it exists after all,
// version 1 violates events_stream_version_key), a chain of CTEs computes
// each event's hash from the previous one's (eventstore.CanonicalBytes, byte
// for byte: the client sends the parts it knows, the statement adds the
// stream's, the version and the recording time; the conformance suite
// holds it to eventstore.Hash), the rows are inserted in version order
// (ORDER BY) so that their positions follow their versions, and nothing is
// inserted when the stream is not at the expected version ($3; -1 for
// any). Its arguments are $1 stream id, $2 stream type, $3 expected
// version, $4 the stream part of the canonical bytes, then eleven per
// event, then those of the idempotency record, the reservations and the
// releases (see appendArgs).
//
// The idempotency record, the reservations and the releases are written by
// CTEs after the events, and the statement fails through onboard_raise,
// which rolls the events back with it: OB003 when the key is stored already
// or was stored meanwhile, OB002 with the owner and the reservation's
// number when a value is someone else's. A stream at another version
// inserts nothing and returns one row of NULLs, for appendStatement to
// report OB001.
func buildAppendStatement(shape statementShape) string {
	var b strings.Builder
	b.WriteString(appendHead)
	for i := 1; i <= shape.events; i++ {
		b.WriteString(hashCTE(i))
	}
	insert := eventsInsert(shape.events)
	if !shape.idempotency && shape.reservations == 0 && shape.releases == 0 {
		b.WriteString("\n")
		b.WriteString(insert)
		return b.String()
	}
	fmt.Fprintf(&b, `, ins AS (
%s
)`, insert)
	next := eventArg(shape.events + 1) // the first argument after the events'
	fail := []string{"WHEN false THEN NULL"}
	if shape.idempotency {
		cte, failures := idempotencyCTEs(next)
		b.WriteString(cte)
		fail = append(fail, failures...)
		next += 6
	}
	if shape.reservations > 0 {
		cte, failure := reservationCTEs(next, shape.reservations)
		b.WriteString(cte)
		fail = append(fail, failure)
		next += 3 * shape.reservations
	}
	if shape.releases > 0 {
		b.WriteString(releaseCTE(next, shape.releases))
	}
	fmt.Fprintf(&b, `
SELECT ins.transaction_id, ins.position, ins.version, CASE %s END AS failed
FROM (SELECT 1) one LEFT JOIN ins ON true`, strings.Join(fail, "\n\t\t"))
	return b.String()
}

// appendHead opens the append statement: the stream's last version and
// hash, and the recording time in microseconds.
const appendHead = `WITH prev AS (
	SELECT version, hash FROM events WHERE $3 <> 0 AND stream_id = $1 ORDER BY version DESC LIMIT 1
), head AS (
	SELECT coalesce((SELECT version FROM prev), 0) AS v, coalesce((SELECT hash FROM prev), ''::bytea) AS h,
		(extract(epoch FROM now()) * 1000000)::bigint AS us
)`

// eventArg is the number of the first of the eleven arguments of the
// append's event i (from 1).
func eventArg(i int) int { return 5 + 11*(i-1) }

// hashCTE is the CTE c<i> that computes event i's version and hash from
// the previous event's (head's for the first, which alone checks the
// expected version).
func hashCTE(i int) string {
	from, guard := fmt.Sprintf("c%d", i-1), ""
	if i == 1 {
		from, guard = "head", " WHERE $3 = -1 OR head.v = $3"
	}
	p := eventArg(i)
	return fmt.Sprintf(`, c%d AS (
	SELECT %[2]s.v + 1 AS v, %[2]s.h AS prev, %[2]s.us,
		sha256(%[2]s.h || uuid_send($%[3]d::uuid) || $4::bytea || int8send(%[2]s.v + 1) || $%[4]d::bytea || int8send(%[2]s.us)) AS h
	FROM %[2]s%[5]s
)`, i, from, p, p+10, guard)
}

// eventsInsert is the INSERT of the n events, in version order, returning
// each one's transaction, position and version.
func eventsInsert(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO events (event_id, stream_id, stream_type, version, type, schema_version, data,
	actor, correlation_id, causation_id, request_id, idempotency_key, trace, recorded_at, prev_hash, hash)
SELECT r.id, $1, $2, r.v, r.type, r.schema, r.data::json, r.actor, r.corr, r.caus, r.req, r.key, r.trace::json, now(), r.prev, r.h
FROM (`)
	for i := 1; i <= n; i++ {
		p := eventArg(i)
		if i > 1 {
			b.WriteString("\n\tUNION ALL ")
		}
		fmt.Fprintf(&b, `SELECT %d AS n, $%d::uuid AS id, c%d.v, $%d::text AS type, $%d::int AS schema, $%d::text AS data, $%d::text AS actor,
		$%d::text AS corr, $%d::text AS caus, $%d::text AS req, $%d::text AS key, $%d::text AS trace, c%d.prev, c%d.h FROM c%d`,
			i, p, i, p+1, p+2, p+3, p+4, p+5, p+6, p+7, p+8, p+9, i, i, i)
	}
	b.WriteString(`
) r ORDER BY r.n
RETURNING transaction_id, position, version`)
	return b.String()
}

// idempotencyCTEs store the idempotency record from argument first on
// (scope, key, fingerprint, status, response, ttl in ms), unless a live
// record holds its key, and return the CASE conditions that fail the
// statement with OB003 then.
func idempotencyCTEs(first int) (string, []string) {
	cte := fmt.Sprintf(`, idem_old AS (
	SELECT 1 FROM idempotency WHERE scope = $%[1]d::text AND key = $%[2]d::text AND expires_at > now()
), idem AS (
	INSERT INTO idempotency AS i (scope, key, fingerprint, status_code, response, stream_id, transaction_id, positions,
		first_version, last_version, created_at, expires_at)
	SELECT $%[1]d::text, $%[2]d::text, $%[3]d::text, $%[4]d::int, $%[5]d::bytea, $1, pg_current_xact_id(),
		(SELECT array_agg(position ORDER BY version) FROM ins), (SELECT min(version) FROM ins), (SELECT max(version) FROM ins),
		now(), now() + $%[6]d::bigint * interval '1 millisecond'
	WHERE EXISTS (SELECT 1 FROM ins)
	ON CONFLICT (scope, key) DO UPDATE
		SET fingerprint = EXCLUDED.fingerprint, status_code = EXCLUDED.status_code,
			response = EXCLUDED.response, stream_id = EXCLUDED.stream_id,
			transaction_id = EXCLUDED.transaction_id, positions = EXCLUDED.positions,
			first_version = EXCLUDED.first_version, last_version = EXCLUDED.last_version,
			created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
		WHERE i.expires_at <= now()
	RETURNING 1
)`, first, first+1, first+2, first+3, first+4, first+5)
	// A repeated request is recognised as such first, whatever else
	// changed since: a stored key is OB003 even on a stale version.
	return cte, []string{
		`WHEN EXISTS (SELECT 1 FROM idem_old) THEN onboard_raise('OB003', 'idempotency key already stored', '', '')`,
		`WHEN ins.version IS NOT NULL AND NOT EXISTS (SELECT 1 FROM idem) THEN onboard_raise('OB003', 'idempotency key already stored', '', '')`,
	}
}

// reservationCTEs claim count reservations from argument first on (kind,
// value, owner of each, in the order that reservationList sorted them, so
// that concurrent appends lock the rows in one order), and return the CASE
// condition that fails the statement with OB002 when one is someone
// else's. On a conflict the no-op update locks the row and returns its
// owner, committed or not before this statement began.
func reservationCTEs(first, count int) (string, string) {
	cte := fmt.Sprintf(`, want AS (
	SELECT * FROM (VALUES %s) w (i, kind, value, owner)
), res AS (
	INSERT INTO reservations AS r (kind, value, owner_stream_id)
	SELECT kind, value, owner FROM want WHERE EXISTS (SELECT 1 FROM ins) ORDER BY i
	ON CONFLICT (kind, value) DO UPDATE SET owner_stream_id = r.owner_stream_id
	RETURNING kind, value, owner_stream_id
), taken AS (
	SELECT want.i, res.owner_stream_id FROM want JOIN res USING (kind, value)
	WHERE res.owner_stream_id <> want.owner ORDER BY want.i LIMIT 1
)`, reservationValues(first, count))
	return cte, `WHEN ins.version IS NOT NULL AND EXISTS (SELECT 1 FROM taken)
		THEN onboard_raise('OB002', 'reservation taken', (SELECT owner_stream_id FROM taken), (SELECT i FROM taken)::text)`
}

// releaseCTE gives up count reservations from argument first on (kind,
// value, owner of each). A value held by another stream, or by nobody, is
// left alone.
func releaseCTE(first, count int) string {
	return fmt.Sprintf(`, rel AS (
	DELETE FROM reservations r USING (VALUES %s) g (i, kind, value, owner)
	WHERE r.kind = g.kind AND r.value = g.value AND r.owner_stream_id = g.owner AND EXISTS (SELECT 1 FROM ins)
)`, reservationValues(first, count))
}

// reservationValues lists count rows of (number, kind, value, owner) for a
// VALUES clause, from argument first on.
func reservationValues(first, count int) string {
	rows := make([]string, count)
	for i := range rows {
		p := first + 3*i
		rows[i] = fmt.Sprintf("(%d, $%d::text, $%d::text, $%d::text)", i+1, p, p+1, p+2)
	}
	return strings.Join(rows, ", ")
}

// appendArgs lays an append out for its statement: the stream's, each
// event's, then the idempotency record's, the reservations' and the
// releases'. Event ids go as pgtype.UUID: pgx encodes a uuid.UUID, a
// driver.Valuer, through its text form and plans that encoding again on
// every call, a pgtype.UUID straight to the binary form.
func appendArgs(streamID string, expected eventstore.ExpectedVersion, events []eventstore.NewEvent, streamType string,
	rec *eventstore.IdempotencyRecord, reservations, releases []eventstore.Reservation) []any {
	args := make([]any, 0, 4+11*len(events)+6+3*(len(reservations)+len(releases)))
	args = append(args, streamID, streamType, int64(expected), streamBytes(streamID, streamType))
	for _, e := range events {
		m := e.Metadata
		args = append(args, pgtype.UUID{Bytes: e.ID, Valid: true}, e.Type, int32(e.SchemaVersion), string(e.Data), m.Actor, m.CorrelationID, m.CausationID,
			m.RequestID, m.IdempotencyKey, canonicalTrace(m.Trace), canonicalBody(e))
	}
	if rec != nil {
		ttl := rec.TTL
		if ttl == 0 {
			ttl = eventstore.DefaultIdempotencyTTL
		}
		response := rec.Response
		if response == nil {
			response = []byte{}
		}
		args = append(args, rec.Scope, rec.Key, rec.Fingerprint, int32(rec.StatusCode), response, ttl.Milliseconds())
	}
	for _, r := range append(slices.Clip(reservations), releases...) {
		args = append(args, r.Kind, r.Value, r.OwnerStreamID)
	}
	return args
}

// streamBytes is the stream part of eventstore.CanonicalBytes:
// length-prefixed id and type.
func streamBytes(streamID, streamType string) []byte {
	b := make([]byte, 0, 8+len(streamID)+len(streamType))
	b = binary.BigEndian.AppendUint32(b, uint32(len(streamID)))
	b = append(b, streamID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(streamType)))
	return append(b, streamType...)
}

func canonicalTrace(trace map[string]string) *string {
	if t := eventstore.CanonicalTrace(trace); t != nil {
		s := string(t)
		return &s
	}
	return nil
}

// appendStatement runs an append statement. A stream at another version
// inserts nothing, which it reports as OB001 with the current version, for
// explainAppendError to tell a re-append from a conflict.
func (s *Store) appendStatement(ctx context.Context, q querier, streamID, query string, args []any) (eventstore.AppendResult, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	type inserted struct {
		tx       uint64
		position int64
		version  int64
	}
	// The statements that write more than events return a fourth column
	// (always NULL: it raises instead), and one row of NULLs when they
	// inserted nothing.
	var got []inserted
	for rows.Next() {
		var tx *uint64
		var position, version *int64
		dest := []any{&tx, &position, &version}
		if len(rows.FieldDescriptions()) == 4 {
			dest = append(dest, new(*bool))
		}
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return eventstore.AppendResult{}, err
		}
		if tx != nil && position != nil && version != nil {
			got = append(got, inserted{*tx, *position, *version})
		}
	}
	if err := rows.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	if len(got) == 0 {
		current, verr := s.currentVersion(ctx, streamID)
		if verr != nil {
			return eventstore.AppendResult{}, fmt.Errorf("append to stream %q: reading its version: %w", streamID, verr)
		}
		return eventstore.AppendResult{}, &pgconn.PgError{Code: codeConcurrency, Message: "concurrency conflict", Detail: strconv.FormatInt(current, 10)}
	}
	slices.SortFunc(got, func(a, b inserted) int { return cmp.Compare(a.version, b.version) })
	res := eventstore.AppendResult{StreamID: streamID, TransactionID: got[0].tx, FirstVersion: got[0].version, LastVersion: got[len(got)-1].version}
	for _, r := range got {
		res.Positions = append(res.Positions, r.position)
	}
	return res, nil
}

// Offsets into eventstore.CanonicalBytes of an envelope with an empty stream
// id and type: the id, two empty length-prefixed strings and the version
// come before the body, the recording time after it.
const (
	bodyStart = 16 + 4 + 4 + 8
	bodyEnd   = 8 // bytes after the body
)

// canonicalBody returns the part of eventstore.CanonicalBytes that depends
// on the event alone (type through trace). The append statement adds the
// fields only the database knows (stream, version, recording time); the
// conformance suite checks that the result is eventstore.Hash.
func canonicalBody(e eventstore.NewEvent) []byte {
	b := eventstore.CanonicalBytes(eventstore.Envelope{
		Type: e.Type, SchemaVersion: e.SchemaVersion, Data: e.Data, Metadata: e.Metadata,
		RecordedAt: time.Unix(0, 0),
	})
	return b[bodyStart : len(b)-bodyEnd]
}

// reservationList returns the reservations with their owners filled in,
// each value once (the first claim of it), sorted so that concurrent
// appends claiming several values lock them in the same order and cannot
// deadlock.
func reservationList(streamID string, rs []eventstore.Reservation) []eventstore.Reservation {
	out := make([]eventstore.Reservation, 0, len(rs))
	for _, r := range rs {
		if r.OwnerStreamID == "" {
			r.OwnerStreamID = streamID
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b eventstore.Reservation) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Value, b.Value))
	})
	return slices.CompactFunc(out, func(a, b eventstore.Reservation) bool { return a.Kind == b.Kind && a.Value == b.Value })
}

// explainAppendError turns a failed append into the contract's errors. A
// conflict may be a re-append of stored events, which succeeds as a
// duplicate.
func (s *Store) explainAppendError(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.NewEvent, o eventstore.AppendOptions, err error) (eventstore.AppendResult, error) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return eventstore.AppendResult{}, fmt.Errorf("append to stream %q: %w", streamID, err)
	}
	switch {
	case pgErr.Code == codeReservation:
		i, _ := strconv.Atoi(pgErr.Hint)
		reservations := reservationList(streamID, o.Reservations)
		re := &eventstore.ReservationError{OwnerStreamID: pgErr.Detail}
		if i >= 1 && i <= len(reservations) {
			re.Kind, re.Value = reservations[i-1].Kind, reservations[i-1].Value
		}
		return eventstore.AppendResult{}, fmt.Errorf("append to stream %q: %w", streamID, re)
	case pgErr.Code != codeConcurrency && pgErr.Code != codeIdempotency && pgErr.Code != codeUniqueViolated:
		return eventstore.AppendResult{}, fmt.Errorf("append to stream %q: %w", streamID, err)
	}

	dup, stored, derr := s.storedDuplicate(ctx, streamID, events)
	switch {
	case derr != nil:
		return eventstore.AppendResult{}, fmt.Errorf("append to stream %q: %w (checking for a re-append: %w)", streamID, err, derr)
	case stored:
		return dup, nil
	}
	switch pgErr.Code {
	case codeIdempotency:
		return eventstore.AppendResult{}, s.idempotencyError(ctx, streamID, o.Idempotency)
	case codeConcurrency:
		actual, _ := strconv.ParseInt(pgErr.Detail, 10, 64)
		return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: streamID, Expected: expected, Actual: actual}
	}
	if pgErr.ConstraintName == "events_stream_version_key" {
		// A stored key wins over the version, as on a stream that exists:
		// an append to a stream it takes for new fails on the version
		// before it gets to its key.
		if o.Idempotency != nil {
			var ie *eventstore.IdempotencyError
			if ierr := s.idempotencyError(ctx, streamID, o.Idempotency); errors.As(ierr, &ie) {
				return eventstore.AppendResult{}, ierr
			}
		}
		// A concurrent append took the version after the statement read it.
		actual, verr := s.currentVersion(ctx, streamID)
		if verr != nil {
			return eventstore.AppendResult{}, fmt.Errorf("append to stream %q: %w (reading its version: %w)", streamID, err, verr)
		}
		return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: streamID, Expected: expected, Actual: actual}
	}
	return eventstore.AppendResult{}, fmt.Errorf("append to stream %q: %w", streamID, err)
}

// storedDuplicate reports whether events are all already stored in the
// stream with the same content, and returns their original result. Events
// stored with other content (or only some of them) are an *EventIDError.
func (s *Store) storedDuplicate(ctx context.Context, streamID string, events []eventstore.NewEvent) (eventstore.AppendResult, bool, error) {
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	rows, err := s.pool.Query(ctx, selectEvents+` WHERE event_id = ANY($1)`, ids)
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}
	found, err := collectEnvelopes(rows, len(ids))
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}
	if len(found) == 0 {
		return eventstore.AppendResult{}, false, nil
	}
	byID := make(map[uuid.UUID]eventstore.Envelope, len(found))
	for _, e := range found {
		byID[e.ID] = e
	}
	res := eventstore.AppendResult{StreamID: streamID, Duplicate: true}
	for i, e := range events {
		st, ok := byID[e.ID]
		if !ok || st.StreamID != streamID || !eventstore.SameContent(st, e) {
			if !ok {
				st = found[0]
			}
			return eventstore.AppendResult{}, false, &eventstore.EventIDError{EventID: st.ID, StreamID: st.StreamID}
		}
		if i == 0 {
			res.FirstVersion = st.Version
		}
		res.LastVersion = st.Version
		res.Positions = append(res.Positions, st.Position)
		res.TransactionID = st.TransactionID
	}
	return res, true, nil
}

func (s *Store) currentVersion(ctx context.Context, streamID string) (int64, error) {
	var v int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1`, streamID).Scan(&v)
	return v, err
}

func (s *Store) idempotencyError(ctx context.Context, streamID string, rec *eventstore.IdempotencyRecord) error {
	if rec == nil {
		return fmt.Errorf("append to stream %q: idempotency conflict without a record", streamID)
	}
	stored, found, err := s.LookupIdempotency(ctx, rec.Scope, rec.Key)
	switch {
	case err != nil:
		return fmt.Errorf("append to stream %q: %w", streamID, err)
	case !found:
		// It expired between the append and this lookup: the caller may
		// simply retry.
		return fmt.Errorf("append to stream %q: idempotency key %q expired meanwhile: %w", streamID, rec.Key, eventstore.ErrConcurrencyConflict)
	case stored.Fingerprint != rec.Fingerprint:
		return &eventstore.IdempotencyError{Stored: stored, Err: eventstore.ErrIdempotencyKeyMismatch}
	}
	return &eventstore.IdempotencyError{Stored: stored, Err: eventstore.ErrIdempotencyKeyUsed}
}
