package eventstore

import (
	"context"
	"strconv"
	"time"
)

// ExpectedVersion is the optimistic-concurrency condition of an append: the
// version the stream must be at (its number of events) for the append to
// succeed. Besides an exact version it may be NoStream or Any.
type ExpectedVersion int64

const (
	// Any appends whatever the stream's version is.
	Any ExpectedVersion = -1
	// NoStream requires that the stream has no events yet. It is the same
	// as the exact version 0.
	NoStream ExpectedVersion = 0
)

// String returns "any", "no stream" or the exact version.
func (v ExpectedVersion) String() string {
	switch {
	case v == Any:
		return "any"
	case v == NoStream:
		return "no stream"
	}
	return strconv.FormatInt(int64(v), 10)
}

// Appender appends events to a stream.
type Appender interface {
	// Append atomically appends events (at least one) to the stream at
	// streamID if the stream is at the expected version, together with the
	// writes its options ask for (idempotency record, reservations), in one
	// transaction: either all of them commit or none does. When it returns
	// successfully the transaction is durable: a crash of the store
	// afterwards does not take it back.
	//
	// Errors: a *ConcurrencyError (ErrConcurrencyConflict) when the stream
	// is at another version or a concurrent append won; a
	// *ReservationError (ErrReservationTaken); an *IdempotencyError
	// (ErrIdempotencyKeyUsed or ErrIdempotencyKeyMismatch); an
	// *EventIDError (ErrEventIDConflict) when an event id is already stored
	// with other content; ErrInvalidEvent for malformed input.
	//
	// Re-appending events that are all already stored in this stream with
	// the same content succeeds without writing anything and returns the
	// original result with Duplicate set, whatever the expected version.
	//
	// Append must be safe for concurrent use.
	Append(ctx context.Context, streamID string, expected ExpectedVersion, events []NewEvent, opts ...AppendOption) (AppendResult, error)
}

// StreamReader reads one stream.
type StreamReader interface {
	// ReadStream returns the events of the stream with version >=
	// fromVersion (1 or less reads the whole stream), in version order. It
	// returns an error wrapping ErrStreamNotFound when the stream has no
	// events at all, and an empty slice when it has none from fromVersion.
	ReadStream(ctx context.Context, streamID string, fromVersion int64) ([]Envelope, error)
}

// AllReader reads the global log.
type AllReader interface {
	// ReadAll returns at most limit events that sort after the cursor, in
	// global order (see Cursor). It returns only events that are safe to
	// read: every event it will ever return later sorts after the last one
	// returned now, so a reader that checkpoints the Cursor of the last
	// event it processed never skips one. An append still in flight delays
	// the events committed after it began, but never hides them for good.
	ReadAll(ctx context.Context, after Cursor, limit int) ([]Envelope, error)
	// Head returns the cursor of the last event that is safe to read now,
	// or the zero Cursor when there is none. Reading after Head yields only
	// events that commit (or become safe) later: it is where a reader that
	// wants "from now on" starts.
	Head(ctx context.Context) (Cursor, error)
}

// Handler processes one delivered event. Returning an error stops the
// subscription.
type Handler func(ctx context.Context, e Envelope) error

// Subscriber delivers the global log as it grows.
type Subscriber interface {
	// Subscribe calls handler for every event after the cursor, in global
	// order, each exactly once, first catching up and then waiting for new
	// appends (woken by notifications, polling as a fallback). Handler calls
	// are sequential. It blocks until ctx is done, returning ctx.Err(), or
	// until handler returns an error, returning it wrapped. Delivery across
	// restarts is at-least-once: the caller persists e.Cursor() after
	// handling e and subscribes after it again.
	Subscribe(ctx context.Context, after Cursor, handler Handler) error
}

// Verifier checks the hash chain of a stream.
type Verifier interface {
	// Verify recomputes the hash chain of the stream. It returns nil when
	// every event is intact, an *IntegrityError (ErrIntegrity) naming the
	// first version whose stored content, hash or link to its predecessor
	// does not match, and an error wrapping ErrStreamNotFound when the
	// stream has no events.
	Verify(ctx context.Context, streamID string) error
}

// IdempotencyReader looks up stored idempotency records.
type IdempotencyReader interface {
	// LookupIdempotency returns the unexpired record stored under scope
	// and key; found is false when there is none.
	LookupIdempotency(ctx context.Context, scope, key string) (rec StoredIdempotency, found bool, err error)
}

// ReservationReader looks up reservations.
type ReservationReader interface {
	// ReservationOwner returns the stream that holds the reservation of
	// value in kind; found is false when nobody holds it.
	ReservationOwner(ctx context.Context, kind, value string) (ownerStreamID string, found bool, err error)
}

// Store is the whole event store. Consumers should depend on the small role
// interface they need instead.
type Store interface {
	Appender
	StreamReader
	AllReader
	Subscriber
	Verifier
	IdempotencyReader
	ReservationReader
}

// AppendResult describes a successful append.
type AppendResult struct {
	// StreamID is the stream appended to.
	StreamID string
	// FirstVersion and LastVersion are the versions of the first and last
	// appended event; LastVersion is the expected version for the next
	// append.
	FirstVersion, LastVersion int64
	// Positions are the global positions of the events, in order.
	Positions []int64
	// TransactionID is the transaction that recorded the events.
	TransactionID uint64
	// Duplicate is true when every event was already stored and nothing was
	// written; the other fields then describe the original append.
	Duplicate bool
}

// Cursor returns the cursor of the last appended event: a reader whose
// checkpoint has reached it has seen every event of this append.
func (r AppendResult) Cursor() Cursor {
	if len(r.Positions) == 0 {
		return Cursor{}
	}
	return Cursor{TransactionID: r.TransactionID, Position: r.Positions[len(r.Positions)-1]}
}

// AppendOptions are the extra writes and settings of one append. Callers set
// them with AppendOption functions; implementations read them with
// ApplyAppendOptions.
type AppendOptions struct {
	// StreamType is the kind of stream. When empty it is the part of the
	// stream id before its first "-" ("customer-0192..." → "customer"),
	// or the whole id when it has none.
	StreamType string
	// Idempotency, when set, is stored in the same transaction.
	Idempotency *IdempotencyRecord
	// Reservations are claimed in the same transaction.
	Reservations []Reservation
	// Releases are reservations given up in the same transaction; a release
	// of a value held by another stream, or by nobody, is a no-op.
	Releases []Reservation
}

// AppendOption sets an option of one append.
type AppendOption func(*AppendOptions)

// WithStreamType sets the stream type recorded with the events.
func WithStreamType(streamType string) AppendOption {
	return func(o *AppendOptions) { o.StreamType = streamType }
}

// WithIdempotency stores rec in the same transaction as the events. If a
// record with the same scope and key exists and has not expired, the append
// fails with an *IdempotencyError: ErrIdempotencyKeyUsed when the
// fingerprints match (replay the stored response) and
// ErrIdempotencyKeyMismatch when they differ.
func WithIdempotency(rec IdempotencyRecord) AppendOption {
	return func(o *AppendOptions) { o.Idempotency = &rec }
}

// WithReservation claims a unique value for a stream in the same
// transaction as the events, for example one customer per email. Claiming a
// value the same stream already holds succeeds; a value held by another
// stream fails the append with a *ReservationError (ErrReservationTaken).
func WithReservation(r Reservation) AppendOption {
	return func(o *AppendOptions) { o.Reservations = append(o.Reservations, r) }
}

// WithRelease gives up a reservation in the same transaction as the events.
func WithRelease(r Reservation) AppendOption {
	return func(o *AppendOptions) { o.Releases = append(o.Releases, r) }
}

// ApplyAppendOptions returns the options set by opts, with StreamType
// defaulted from streamID.
func ApplyAppendOptions(streamID string, opts ...AppendOption) AppendOptions {
	var o AppendOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.StreamType == "" {
		o.StreamType = DefaultStreamType(streamID)
	}
	return o
}

// DefaultStreamType returns the part of streamID before its first "-", or
// streamID when it has none.
func DefaultStreamType(streamID string) string {
	for i := 0; i < len(streamID); i++ {
		if streamID[i] == '-' {
			return streamID[:i]
		}
	}
	return streamID
}

// IdempotencyRecord is the stored outcome of a deduplicated request,
// written in the same transaction as the events the request appended.
type IdempotencyRecord struct {
	// Scope separates key spaces, for example the API key id plus the
	// route; Key is the client's Idempotency-Key.
	Scope, Key string
	// Fingerprint identifies the request content (for example a SHA-256 of
	// method, path and body): the same key with another fingerprint is a
	// client error.
	Fingerprint string
	// StatusCode and Response are what to replay for a repeated request.
	// The append's positions are stored with the record (see
	// StoredIdempotency), so a response that must include them can be
	// completed on replay.
	StatusCode int
	Response   []byte
	// TTL is how long the record is kept; zero means DefaultIdempotencyTTL.
	TTL time.Duration
}

// DefaultIdempotencyTTL is how long an idempotency record is kept when its
// TTL is zero.
const DefaultIdempotencyTTL = 24 * time.Hour

// StoredIdempotency is an idempotency record as stored.
type StoredIdempotency struct {
	Scope, Key  string
	Fingerprint string
	StatusCode  int
	Response    []byte
	// Result is the result of the append the record was stored with.
	Result AppendResult
	// CreatedAt and ExpiresAt are from the store's clock.
	CreatedAt, ExpiresAt time.Time
}

// Reservation is a claim on a value that must be unique across streams.
type Reservation struct {
	// Kind is the namespace of the value, for example "email".
	Kind string
	// Value is the claimed value, already normalised by the caller (for
	// example a lower-cased email address).
	Value string
	// OwnerStreamID is the stream that holds the claim; when empty it is
	// the stream appended to.
	OwnerStreamID string
}
