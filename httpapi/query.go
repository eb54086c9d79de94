package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/operator"
	"github.com/onboard/onboard/projections"
)

// QueryReads is what the query API reads from the read models;
// *projections.Projections implements it.
type QueryReads interface {
	Customer(ctx context.Context, id uuid.UUID) (projections.Customer, error)
	ListCustomers(ctx context.Context, q projections.ListQuery) (projections.CustomerPage, error)
	Funnel(ctx context.Context, q projections.FunnelQuery) (projections.Funnel, error)
	OperatorQueue(ctx context.Context, limit int) ([]projections.QueueEntry, error)
	ProviderCallStats(ctx context.Context) ([]projections.ProviderCalls, error)
	// WaitFor and CursorAt serve ?min_position= (read your own writes).
	WaitFor(ctx context.Context, projection string, target eventstore.Cursor) error
	CursorAt(ctx context.Context, position int64, streamID string) (eventstore.Cursor, error)
}

// QueryConfig configures the query API. Reads and Events are required.
type QueryConfig struct {
	Reads QueryReads
	// Events serves the audit timeline and time travel, straight from the
	// event store.
	Events eventstore.StreamReader
	// WaitTimeout bounds the wait of a ?min_position= query; default 2s.
	WaitTimeout time.Duration
	// FunnelWindow is the default window of the funnel's time to active;
	// default 7 days.
	FunnelWindow time.Duration
	// Health serves GET /v1/providers; without it the list is empty.
	Health ProviderHealth
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// Keys decrypts personal data for the timeline, past states and
	// the subject access endpoint; without it encrypted fields show as
	// domain.Encrypted.
	Keys eventstore.KeyReader
}

// QueryAPI serves the read side: customers, their audit timeline and past
// states, the funnel, provider statistics and the operator queue.
//
// Authorisation: each route's rule in Routes says which roles may call it,
// and a request without a principal gets 401. Operators see everything; a
// client sees only the customers it signed up (the actor of their
// signed_up event) and gets 404 for any other, so that ids do not leak.
type QueryAPI struct {
	cfg QueryConfig
}

// NewQueryAPI returns the query API. It panics when Reads or Events is
// missing: that is a wiring mistake, not a runtime condition.
func NewQueryAPI(cfg QueryConfig) *QueryAPI {
	if cfg.Reads == nil || cfg.Events == nil {
		panic("httpapi: NewQueryAPI needs Reads and Events")
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 2 * time.Second
	}
	if cfg.FunnelWindow <= 0 {
		cfg.FunnelWindow = 7 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &QueryAPI{cfg: cfg}
}

// Register adds the query routes to mux, each behind its rule in Routes.
func (a *QueryAPI) Register(mux Mux) {
	handle(mux, "GET /v1/customers", a.list)
	handle(mux, "GET /v1/customers/{id}", a.get)
	handle(mux, "GET /v1/customers/{id}/events", a.timeline)
	handle(mux, "GET /v1/customers/{id}/state", a.stateAt)
	handle(mux, "GET /v1/customers/{id}/personal-data", a.personalData)
	handle(mux, "GET /v1/stats/funnel", a.funnel)
	handle(mux, "GET /v1/stats/providers", a.providers)
	handle(mux, "GET /v1/operator/queue", a.queue)
	handle(mux, "GET /v1/providers", a.providerHealth)
}

// queryScope returns whose customers the caller may read: "" for all. The
// route's rule has made sure there is a principal; the zero one's scope
// matches no customer.
func queryScope(r *http.Request) (createdBy string, operator bool) {
	p, _ := principalFrom(r.Context())
	if p.Role == RoleOperator {
		return "", true
	}
	return p.Actor(), false
}

// queryError is a problem found while reading a request or the models.
type queryError struct{ problem Problem }

func (e *queryError) Error() string { return e.problem.Detail }

var errQueryNotFound = &queryError{Problem{Type: ProblemNotFound, Status: http.StatusNotFound, Detail: "no customer with this id"}}

func (a *QueryAPI) fail(w http.ResponseWriter, r *http.Request, err error) {
	var qe *queryError
	switch {
	case errors.As(err, &qe):
		writeProblem(w, qe.problem)
	case errors.Is(err, projections.ErrNotFound), errors.Is(err, eventstore.ErrStreamNotFound):
		writeProblem(w, errQueryNotFound.problem)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeProblem(w, Problem{Type: ProblemUnavailable, Status: http.StatusServiceUnavailable, Detail: "the request was cancelled or timed out"})
	default:
		a.cfg.Logger.ErrorContext(r.Context(), "query failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeProblem(w, Problem{Type: ProblemInternal, Status: http.StatusInternalServerError, Detail: "internal error; it has been logged"})
	}
}

func queryID(r *http.Request) (uuid.UUID, error) {
	raw := r.PathValue("id")
	id, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		return uuid.Nil, &queryError{Problem{Type: ProblemMalformed, Status: http.StatusBadRequest,
			Detail: fmt.Sprintf("customer id %q is not a UUID", raw)}}
	}
	return id, nil
}

// waitForPosition serves ?min_position=N (a global position, as the command
// API returns it) or ?min_position=tx/pos (a cursor): it waits, at most
// WaitTimeout, until the read model has applied that event. streamID is the
// stream the event probably belongs to, "" when unknown.
func (a *QueryAPI) waitForPosition(r *http.Request, q queryParams, streamID string) error {
	target, resolved, wait, err := q.minPosition()
	if err != nil || !wait {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.WaitTimeout)
	defer cancel()
	// The event exists once the client holds its position (the append
	// committed first); looking again covers a store that answers late.
	for !resolved {
		c, err := a.cfg.Reads.CursorAt(ctx, target.Position, streamID)
		switch {
		case err == nil:
			target, resolved = c, true
		case errors.Is(err, projections.ErrPositionNotFound):
			t := time.NewTimer(20 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return a.behind(target, eventstore.Cursor{}, false)
			case <-t.C:
			}
		case ctx.Err() != nil && r.Context().Err() == nil:
			return a.behind(target, eventstore.Cursor{}, false)
		default:
			return err
		}
	}
	err = a.cfg.Reads.WaitFor(ctx, projections.Customers, target)
	var be *projections.BehindError
	if errors.As(err, &be) && r.Context().Err() == nil {
		return a.behind(target, be.Checkpoint, true)
	}
	return err
}

// behind is the problem of a wait that timed out.
func (a *QueryAPI) behind(target, checkpoint eventstore.Cursor, found bool) error {
	p := Problem{Type: ProblemNotCaughtUp, Status: http.StatusGatewayTimeout, Title: "Projection behind"}
	p.Extra = map[string]any{
		"min_position":        target.Position,
		"projection_position": checkpoint.Position,
		"wait_seconds":        a.cfg.WaitTimeout.Seconds(),
	}
	if !found {
		p.Detail = fmt.Sprintf("no event at position %d was found within %v", target.Position, a.cfg.WaitTimeout)
		return &queryError{p}
	}
	behind := max(0, target.Position-checkpoint.Position)
	p.Extra["behind"] = behind
	p.Extra["projection_cursor"] = checkpoint.String()
	p.Detail = fmt.Sprintf("the read model has not reached position %d within %v: it is at position %d, about %d events behind; retry",
		target.Position, a.cfg.WaitTimeout, checkpoint.Position, behind)
	return &queryError{p}
}

func (a *QueryAPI) get(w http.ResponseWriter, r *http.Request) {
	id, err := queryID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q, err := readQuery(r, "min_position")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.waitForPosition(r, q, projections.CustomerStreamID(id)); err != nil {
		a.fail(w, r, err)
		return
	}
	c, err := a.cfg.Reads.Customer(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if by, op := queryScope(r); !op && c.CreatedBy != by {
		a.fail(w, r, errQueryNotFound)
		return
	}
	w.Header().Set("ETag", fmt.Sprintf(`"%d"`, c.Version))
	writeJSON(w, http.StatusOK, c)
}

// queryPage is the body of the list endpoint.
type queryPage struct {
	Items []projections.Customer `json:"items"`
	// NextCursor is the cursor of the next page, absent on the last.
	NextCursor string `json:"next_cursor,omitempty"`
}

func (a *QueryAPI) list(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r, "state", "step", "q", "limit", "cursor", "min_position")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var lq projections.ListQuery
	if lq.Limit, err = q.limit(); err != nil {
		a.fail(w, r, err)
		return
	}
	// An empty state, step or q filters nothing, as an HTML form's empty
	// field means.
	if s, _ := q.value("state"); s != "" {
		if _, err := domain.ParseState(s); err != nil {
			a.fail(w, r, queryBad("state", "state %q is not one of %v", s, domain.States()))
			return
		}
		lq.State = s
	}
	if s, _ := q.value("step"); s != "" {
		if _, err := domain.ParseStep(s); err != nil {
			a.fail(w, r, queryBad("step", "step %q is not one of %v", s, domain.Steps()))
			return
		}
		lq.Step = s
	}
	if lq.Search, _ = q.value("q"); len(lq.Search) > 200 {
		a.fail(w, r, queryBad("q", "q is longer than 200 bytes"))
		return
	}
	if c, ok := q.value("cursor"); ok {
		if lq.After, err = decodeQueryCursor(c); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	lq.CreatedBy, _ = queryScope(r)
	if err := a.waitForPosition(r, q, ""); err != nil {
		a.fail(w, r, err)
		return
	}
	page, err := a.cfg.Reads.ListCustomers(r.Context(), lq)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	body := queryPage{Items: page.Items}
	if body.Items == nil {
		body.Items = []projections.Customer{}
	}
	if page.Next != uuid.Nil {
		body.NextCursor = encodeQueryCursor(page.Next)
	}
	writeJSON(w, http.StatusOK, body)
}

// readStream returns the customer's events, or a not-found error when the
// customer does not exist or the caller may not see it.
func (a *QueryAPI) readStream(r *http.Request, id uuid.UUID) ([]eventstore.Envelope, error) {
	envs, err := a.cfg.Events.ReadStream(r.Context(), projections.CustomerStreamID(id), 1)
	if err != nil {
		return nil, err
	}
	if len(envs) == 0 {
		return nil, errQueryNotFound
	}
	if by, op := queryScope(r); !op && envs[0].Metadata.Actor != by {
		return nil, errQueryNotFound
	}
	return envs, nil
}

// timelineEvent is one entry of the audit timeline.
type timelineEvent struct {
	ID            uuid.UUID       `json:"id"`
	Type          string          `json:"type"`
	Version       int64           `json:"version"`
	Position      int64           `json:"position"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Actor         string          `json:"actor"`
	Reason        string          `json:"reason,omitempty"`
	CorrelationID string          `json:"correlation_id,omitempty"`
	CausationID   string          `json:"causation_id,omitempty"`
	RequestID     string          `json:"request_id,omitempty"`
	Data          json.RawMessage `json:"data"`
}

func (a *QueryAPI) timeline(w http.ResponseWriter, r *http.Request) {
	id, envs, events, err := a.customerEvents(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]timelineEvent, len(envs))
	for i, e := range envs {
		ev := events[i]
		data, err := operator.EventData(e, ev)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		m := e.Metadata
		out[i] = timelineEvent{ID: e.ID, Type: e.Type, Version: e.Version, Position: e.Position, RecordedAt: e.RecordedAt,
			Actor: m.Actor, Reason: operator.ReasonOf(ev), CorrelationID: m.CorrelationID, CausationID: m.CausationID,
			RequestID: m.RequestID, Data: data}
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "events": out})
}

// pastState is the body of the time-travel endpoint: the customer as it was
// after the event at AsOf.
type pastState struct {
	domain.Snapshot
	// AsOf is the recording time of the last event replayed; Position its
	// global position.
	AsOf     time.Time `json:"as_of"`
	Position int64     `json:"position"`
}

func (a *QueryAPI) stateAt(w http.ResponseWriter, r *http.Request) {
	id, err := queryID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q, err := readQuery(r, "at", "version")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	rawAt, hasAt := q.value("at")
	rawVersion, hasVersion := q.value("version")
	if hasAt && hasVersion {
		a.fail(w, r, queryBad("at", "give at or version, not both"))
		return
	}
	var (
		at      time.Time
		version int64
	)
	if hasAt {
		if at, err = time.Parse(time.RFC3339Nano, rawAt); err != nil {
			a.fail(w, r, queryBad("at", "at %q is not an RFC 3339 timestamp", rawAt))
			return
		}
	}
	if hasVersion {
		if version, err = strconv.ParseInt(rawVersion, 10, 64); err != nil || version < 1 {
			a.fail(w, r, queryBad("version", "version %q is not a positive integer", rawVersion))
			return
		}
	}
	envs, err := a.readStream(r, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	n := len(envs)
	switch {
	case version > 0:
		if version > int64(n) {
			a.fail(w, r, &queryError{Problem{Type: ProblemNotFound, Status: http.StatusNotFound,
				Detail: fmt.Sprintf("the customer has %d versions, not %d", n, version)}})
			return
		}
		n = int(version)
	case !at.IsZero():
		for n > 0 && envs[n-1].RecordedAt.After(at) {
			n--
		}
		if n == 0 {
			a.fail(w, r, &queryError{Problem{Type: ProblemNotFound, Status: http.StatusNotFound,
				Detail: fmt.Sprintf("the customer did not exist yet at %s", at.Format(time.RFC3339Nano))}})
			return
		}
	}
	// The whole stream is decrypted: a later erasure erases the past too.
	decrypted, err := a.decryptEvents(r.Context(), id, envs)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	history := decrypted[:n]
	c, err := domain.FromHistory(id, history)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	last := envs[n-1]
	writeJSON(w, http.StatusOK, pastState{Snapshot: c.Snapshot(), AsOf: last.RecordedAt, Position: last.Position})
}

func (a *QueryAPI) funnel(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r, "window", "min_position")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	window := a.cfg.FunnelWindow
	if raw, ok := q.value("window"); ok {
		d, err := time.ParseDuration(raw)
		if err != nil || d <= 0 {
			a.fail(w, r, queryBad("window", "window %q is not a positive duration such as 24h", raw))
			return
		}
		window = d
	}
	if err := a.waitForPosition(r, q, ""); err != nil {
		a.fail(w, r, err)
		return
	}
	f, err := a.cfg.Reads.Funnel(r.Context(), projections.FunnelQuery{Since: a.cfg.Now().Add(-window)})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (a *QueryAPI) providers(w http.ResponseWriter, r *http.Request) {
	if _, err := readQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	stats, err := a.cfg.Reads.ProviderCallStats(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": stats})
}

func (a *QueryAPI) queue(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r, "limit", "min_position")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	limit, err := q.limit()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.waitForPosition(r, q, ""); err != nil {
		a.fail(w, r, err)
		return
	}
	items, err := a.cfg.Reads.OperatorQueue(r.Context(), limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if items == nil {
		items = []projections.QueueEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}
