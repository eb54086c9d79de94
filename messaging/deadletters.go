package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetterStatus is where a dead letter is in its life.
type DeadLetterStatus string

const (
	// DeadLetterDead is a message its handler gave up on.
	DeadLetterDead DeadLetterStatus = "dead"
	// DeadLetterRedriven was sent to its handler again and awaits the
	// outcome; a failure makes it dead again.
	DeadLetterRedriven DeadLetterStatus = "redriven"
	// DeadLetterResolved was handled successfully after a redrive.
	DeadLetterResolved DeadLetterStatus = "resolved"
)

// Metadata keys of a dead letter published on the dead-letter subject,
// besides the original event headers.
const (
	// HeaderDeadLetterError is the error that made the message a dead letter.
	HeaderDeadLetterError = "Onboard-Dead-Letter-Error"
	// HeaderDeadLetterHandler is the handler that gave up.
	HeaderDeadLetterHandler = "Onboard-Dead-Letter-Handler"
	// HeaderDeadLetterID is the dead letter's id in the table.
	HeaderDeadLetterID = "Onboard-Dead-Letter-Id"
)

// DeadLetter is a message a handler gave up on, as recorded.
type DeadLetter struct {
	ID        int64
	Handler   string
	EventID   uuid.UUID
	EventType string
	StreamID  string
	// Subject is the subject the message was delivered on.
	Subject string
	// Error is the handler's last error.
	Error string
	// Deliveries is the delivery count of the last failed delivery.
	Deliveries int64
	Status     DeadLetterStatus
	// DeadCount counts how often the message died (again after redrives);
	// RedriveCount how often it was re-driven.
	DeadCount, RedriveCount int
	// Payload and Headers are the message as delivered; UnmarshalEnvelope
	// decodes Payload.
	Payload []byte
	Headers map[string]string
	// CreatedAt is when it died first, UpdatedAt when it last changed.
	CreatedAt, UpdatedAt time.Time
}

// DeadLetterFilter selects dead letters to list. The zero value lists the
// first 100 of every handler and status.
type DeadLetterFilter struct {
	// Handler and Status select when not empty.
	Handler string
	Status  DeadLetterStatus
	// AfterID pages: only ids above it are listed.
	AfterID int64
	// Limit defaults to 100.
	Limit int
}

// DeadLetters lists and re-drives dead letters. It is safe for concurrent
// use.
type DeadLetters struct {
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	stream  StreamConfig
	metrics Metrics
}

// errNoConn is Redrive's error on a store opened without a NATS connection.
var errNoConn = errors.New("no NATS connection to publish on (the dead letters were opened without one)")

// NewDeadLetters returns the dead-letter store on pool, for tools that list
// and re-drive without running handlers. conn may be nil for tools that
// only read (List, Get): Redrive then returns an error instead of
// publishing, and nothing is written.
func NewDeadLetters(ctx context.Context, pool *pgxpool.Pool, conn *nats.Conn, stream StreamConfig) (*DeadLetters, error) {
	stream.setDefaults()
	if err := stream.Validate(); err != nil {
		return nil, fmt.Errorf("dead letters: %w: %w", ErrInvalidConfig, err)
	}
	var js jetstream.JetStream
	if conn != nil {
		// jetstream.New reads conn's options, so it cannot take nil.
		var err error
		if js, err = jetstream.New(conn); err != nil {
			return nil, fmt.Errorf("dead letters: %w", err)
		}
	}
	return newDeadLetters(pool, js, stream, NopMetrics{}), nil
}

func newDeadLetters(pool *pgxpool.Pool, js jetstream.JetStream, stream StreamConfig, m Metrics) *DeadLetters {
	return &DeadLetters{pool: pool, js: js, stream: stream, metrics: m}
}

const deadLetterColumns = `id, handler, event_id, event_type, stream_id, subject, error, deliveries, status,
	dead_count, redrive_count, payload, headers, created_at, updated_at`

func scanDeadLetter(row pgx.Row) (DeadLetter, error) {
	var d DeadLetter
	var status string
	err := row.Scan(&d.ID, &d.Handler, &d.EventID, &d.EventType, &d.StreamID, &d.Subject, &d.Error,
		&d.Deliveries, &status, &d.DeadCount, &d.RedriveCount, &d.Payload, &d.Headers, &d.CreatedAt, &d.UpdatedAt)
	d.Status = DeadLetterStatus(status)
	return d, err
}

// List returns dead letters in id order.
func (d *DeadLetters) List(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := d.pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM messaging_dead_letters
		WHERE ($1 = '' OR handler = $1) AND ($2 = '' OR status = $2) AND id > $3
		ORDER BY id LIMIT $4`, f.Handler, string(f.Status), f.AfterID, f.Limit)
	if noTable(err) {
		return nil, nil // no handler ever ran here: no dead letters
	}
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		dl, err := scanDeadLetter(rows)
		if err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		out = append(out, dl)
	}
	if err := rows.Err(); err != nil {
		if noTable(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// noTable reports whether err is Postgres's undefined_table: the schema
// was never ensured on this database.
func noTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}

// Get returns one dead letter; the error wraps ErrDeadLetterNotFound when
// there is none with id.
func (d *DeadLetters) Get(ctx context.Context, id int64) (DeadLetter, error) {
	dl, err := scanDeadLetter(d.pool.QueryRow(ctx, `SELECT `+deadLetterColumns+` FROM messaging_dead_letters WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) || noTable(err) {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", id, ErrDeadLetterNotFound)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", id, err)
	}
	return dl, nil
}

// Redrive sends the dead letter's message again to its handler alone (on
// <redrive prefix>.<handler>), with a fresh delivery count, and marks it
// re-driven. Handling it successfully marks it resolved; failing again makes
// it dead again. The error wraps ErrDeadLetterNotFound when there is none
// with id, and ErrDeadLetterResolved when its handler has handled it since
// (a re-drive still in flight, status redriven, may be sent again). A store
// made by NewDeadLetters with a nil conn cannot re-drive: it returns an
// error and changes nothing.
func (d *DeadLetters) Redrive(ctx context.Context, id int64) error {
	if d.js == nil {
		return fmt.Errorf("redrive dead letter %d: %w", id, errNoConn)
	}
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("redrive dead letter %d: %w", id, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // rollback after commit is a no-op
	dl, err := scanDeadLetter(tx.QueryRow(ctx, `SELECT `+deadLetterColumns+` FROM messaging_dead_letters
		WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("redrive dead letter %d: %w", id, ErrDeadLetterNotFound)
	}
	if err != nil {
		return fmt.Errorf("redrive dead letter %d: %w", id, err)
	}
	if dl.Status == DeadLetterResolved {
		return fmt.Errorf("redrive dead letter %d (handler %s): %w", id, dl.Handler, ErrDeadLetterResolved)
	}
	m := nats.NewMsg(d.stream.redriveSubject(dl.Handler))
	m.Data = dl.Payload
	for k, v := range dl.Headers {
		if strings.HasPrefix(k, "Onboard-") && !strings.HasPrefix(k, "Onboard-Dead-Letter-") || k == HeaderCorrelationID {
			m.Header.Set(k, v)
		}
	}
	m.Header.Set(HeaderMsgID, fmt.Sprintf("redrive:%d:%d", dl.ID, dl.RedriveCount+1))
	if _, err := d.js.PublishMsg(ctx, m, jetstream.WithExpectStream(d.stream.Name)); err != nil {
		return fmt.Errorf("redrive dead letter %d: publish: %w", id, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE messaging_dead_letters SET status = 'redriven',
		redrive_count = redrive_count + 1, updated_at = now() WHERE id = $1`, id); err != nil {
		return fmt.Errorf("redrive dead letter %d: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("redrive dead letter %d: %w", id, err)
	}
	return nil
}

// record stores a poisoned message and publishes it on the dead-letter
// subject of its handler.
func (d *DeadLetters) record(ctx context.Context, msg *message.Message) error {
	handler := msg.Metadata.Get(middleware.PoisonedHandlerKey)
	reason := msg.Metadata.Get(middleware.ReasonForPoisonedKey)
	// The payload names the event even when the message is a redrive,
	// whose Nats-Msg-Id is not the event id.
	var eventID uuid.UUID
	if e, err := UnmarshalEnvelope(msg.Payload); err == nil {
		eventID = e.ID
	} else {
		eventID, _ = uuid.Parse(msg.Metadata.Get(HeaderMsgID))
	}
	deliveries, _ := strconv.ParseInt(msg.Metadata.Get(MetadataNumDelivered), 10, 64)
	headers := map[string]string(msg.Metadata)
	hj, err := json.Marshal(headers)
	if err != nil {
		return fmt.Errorf("record dead letter: %w", err)
	}
	var id int64
	err = d.pool.QueryRow(ctx, `
		INSERT INTO messaging_dead_letters (handler, event_id, event_type, stream_id, subject, error,
			deliveries, payload, headers)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (handler, event_id) DO UPDATE SET error = excluded.error,
			deliveries = excluded.deliveries, subject = excluded.subject, payload = excluded.payload,
			headers = excluded.headers, status = 'dead',
			dead_count = messaging_dead_letters.dead_count + 1, updated_at = now()
		RETURNING id`,
		handler, eventID, msg.Metadata.Get(HeaderEventType), msg.Metadata.Get(HeaderStreamID),
		msg.Metadata.Get(MetadataSubject), reason, deliveries, []byte(msg.Payload), hj).Scan(&id)
	if err != nil {
		return fmt.Errorf("record dead letter of %s for %s: %w", eventID, handler, err)
	}
	m := nats.NewMsg(d.stream.deadLetterSubject(handler))
	m.Data = msg.Payload
	for k, v := range msg.Metadata {
		// Nats-* headers are JetStream's instructions for the original
		// publish (its id, the relay's expected last sequence): they must
		// not apply to this one.
		if !strings.HasPrefix(k, "Nats-") && !strings.HasPrefix(k, "nats_") {
			m.Header.Set(k, v)
		}
	}
	m.Header.Set(HeaderDeadLetterError, reason)
	m.Header.Set(HeaderDeadLetterHandler, handler)
	m.Header.Set(HeaderDeadLetterID, strconv.FormatInt(id, 10))
	if _, err := d.js.PublishMsg(ctx, m, jetstream.WithExpectStream(d.stream.DeadLetterName)); err != nil {
		return fmt.Errorf("publish dead letter %d: %w", id, err)
	}
	d.metrics.DeadLettered(handler, msg.Metadata.Get(HeaderEventType))
	return nil
}

// publisher adapts record to the Watermill poison-queue middleware.
func (d *DeadLetters) publisher() message.Publisher { return deadLetterPublisher{d} }

type deadLetterPublisher struct{ d *DeadLetters }

// Publish records each message; topic is ignored (the subject is per
// handler).
func (p deadLetterPublisher) Publish(_ string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		// The message context may be the expired handler timeout; the dead
		// letter must still be written.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), 30*time.Second)
		err := p.d.record(ctx, msg)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

func (p deadLetterPublisher) Close() error { return nil }
