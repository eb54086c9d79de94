package audit

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
)

// Format is an export format.
type Format string

// The export formats.
const (
	// FormatJSONL writes one JSON object per line, the event data as the
	// JSON it was stored as.
	FormatJSONL Format = "jsonl"
	// FormatCSV writes a header and one row per event, the event data and
	// trace as JSON text in their columns.
	FormatCSV Format = "csv"
)

// ParseFormat returns the Format named by s, or an error wrapping
// ErrBadFormat.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatJSONL, FormatCSV:
		return f, nil
	}
	return "", fmt.Errorf("%w %q: want jsonl or csv", ErrBadFormat, s)
}

// Record is one exported event: everything stored, so that an export can
// be checked offline with eventstore.VerifyChain. Data is exported as
// stored, not upcast: an audit export shows the facts as written.
type Record struct {
	Position       int64             `json:"position"`
	TransactionID  uint64            `json:"transaction_id"`
	StreamID       string            `json:"stream_id"`
	StreamType     string            `json:"stream_type"`
	Version        int64             `json:"version"`
	EventID        uuid.UUID         `json:"event_id"`
	Type           string            `json:"type"`
	SchemaVersion  int               `json:"schema_version"`
	RecordedAt     time.Time         `json:"recorded_at"`
	Actor          string            `json:"actor"`
	CorrelationID  string            `json:"correlation_id"`
	CausationID    string            `json:"causation_id"`
	RequestID      string            `json:"request_id"`
	IdempotencyKey string            `json:"idempotency_key"`
	Trace          map[string]string `json:"trace,omitempty"`
	Data           json.RawMessage   `json:"data"`
	PrevHash       string            `json:"prev_hash"`
	Hash           string            `json:"hash"`
}

// csvHeader names the CSV columns, in Record's order.
var csvHeader = []string{
	"position", "transaction_id", "stream_id", "stream_type", "version", "event_id", "type", "schema_version",
	"recorded_at", "actor", "correlation_id", "causation_id", "request_id", "idempotency_key", "trace", "data",
	"prev_hash", "hash",
}

// NewRecord returns the export record of a stored event.
func NewRecord(e eventstore.Envelope) Record {
	m := e.Metadata
	return Record{
		Position: e.Position, TransactionID: e.TransactionID, StreamID: e.StreamID, StreamType: e.StreamType,
		Version: e.Version, EventID: e.ID, Type: e.Type, SchemaVersion: e.SchemaVersion,
		RecordedAt: e.RecordedAt.UTC(), Actor: m.Actor, CorrelationID: m.CorrelationID,
		CausationID: m.CausationID, RequestID: m.RequestID, IdempotencyKey: m.IdempotencyKey, Trace: m.Trace,
		Data: e.Data, PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash),
	}
}

// ExportOptions select what to export and how.
type ExportOptions struct {
	// Customer, when set, exports that customer's stream only (in version
	// order); otherwise the whole store in global order.
	Customer uuid.UUID
	// From and To, when set, keep the events recorded at or after From and
	// before To.
	From, To time.Time
	// Format is jsonl or csv.
	Format Format
	// PageSize is how many events one ReadAll call returns. Default 10000.
	PageSize int
	// Until, when set, is the cursor of the last event of a whole-store
	// export, normally the last one committed when it starts; see
	// VerifyOptions.Until.
	Until eventstore.Cursor
}

// Validate reports every invalid option.
func (o ExportOptions) Validate() error {
	var errs []error
	if _, err := ParseFormat(string(o.Format)); err != nil {
		errs = append(errs, err)
	}
	if !o.From.IsZero() && !o.To.IsZero() && !o.From.Before(o.To) {
		errs = append(errs, fmt.Errorf("from %s is not before to %s", o.From.Format(time.RFC3339), o.To.Format(time.RFC3339)))
	}
	return errors.Join(errs...)
}

// ExportSource is what an export reads.
type ExportSource interface {
	eventstore.StreamReader
	eventstore.AllReader
}

// Export writes the selected events to w and returns how many it wrote.
// An unknown customer is an error wrapping ErrCustomerNotFound.
func Export(ctx context.Context, src ExportSource, w io.Writer, opts ExportOptions) (int64, error) {
	if err := opts.Validate(); err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 10000
	}
	out := newRecordWriter(w, opts.Format)
	var n int64
	keep := func(e eventstore.Envelope) bool {
		return (opts.From.IsZero() || !e.RecordedAt.Before(opts.From)) && (opts.To.IsZero() || e.RecordedAt.Before(opts.To))
	}
	write := func(events []eventstore.Envelope) error {
		for _, e := range events {
			if !keep(e) {
				continue
			}
			if err := out.write(NewRecord(e)); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			n++
		}
		return nil
	}

	if opts.Customer != uuid.Nil {
		events, err := src.ReadStream(ctx, CustomerStreamID(opts.Customer), 1)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return 0, fmt.Errorf("export: customer %s: %w", opts.Customer, ErrCustomerNotFound)
		}
		if err != nil {
			return 0, fmt.Errorf("export: %w", err)
		}
		if err := write(events); err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		return n, out.flush()
	}

	if err := readLog(ctx, src, opts.PageSize, opts.Until, 50*time.Millisecond, nil, write); err != nil {
		return n, fmt.Errorf("export: %w", err)
	}
	return n, out.flush()
}

type recordWriter struct {
	format Format
	enc    *json.Encoder
	csv    *csv.Writer
	header bool
}

func newRecordWriter(w io.Writer, f Format) *recordWriter {
	if f == FormatCSV {
		return &recordWriter{format: f, csv: csv.NewWriter(w)}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &recordWriter{format: f, enc: enc}
}

func (rw *recordWriter) write(r Record) error {
	if rw.format != FormatCSV {
		return rw.enc.Encode(r)
	}
	if !rw.header {
		rw.header = true
		if err := rw.csv.Write(csvHeader); err != nil {
			return err
		}
	}
	var trace string
	if len(r.Trace) > 0 {
		b, err := json.Marshal(r.Trace)
		if err != nil {
			return err
		}
		trace = string(b)
	}
	return rw.csv.Write([]string{
		strconv.FormatInt(r.Position, 10), strconv.FormatUint(r.TransactionID, 10), r.StreamID, r.StreamType,
		strconv.FormatInt(r.Version, 10), r.EventID.String(), r.Type, strconv.Itoa(r.SchemaVersion),
		r.RecordedAt.Format(time.RFC3339Nano), r.Actor, r.CorrelationID, r.CausationID, r.RequestID,
		r.IdempotencyKey, trace, string(r.Data), r.PrevHash, r.Hash,
	})
}

// flush writes the CSV header even when no event was selected, so that an
// empty export is still a valid CSV file.
func (rw *recordWriter) flush() error {
	if rw.format != FormatCSV {
		return nil
	}
	if !rw.header {
		rw.header = true
		if err := rw.csv.Write(csvHeader); err != nil {
			return err
		}
	}
	rw.csv.Flush()
	return rw.csv.Error()
}
