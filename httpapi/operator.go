package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/onboard/onboard/operator"
	"github.com/onboard/onboard/projections"
)

// DeadLetterAdmin lists and re-drives the consumers' dead letters;
// cmd/onboard wires it to the messaging's, and leaves it nil without NATS.
type DeadLetterAdmin interface {
	List(ctx context.Context, status string, limit int) ([]operator.DeadLetterEntry, error)
	// Redrive returns an error wrapping ErrDeadLetterNotFound or
	// ErrDeadLetterResolved when it has nothing to do.
	Redrive(ctx context.Context, id int64) error
}

// Errors a DeadLetterAdmin returns for a request it cannot serve.
var (
	ErrDeadLetterNotFound = errors.New("no such dead letter")
	ErrDeadLetterResolved = errors.New("the dead letter was handled since")
	// ErrRedriveUnavailable: this process cannot publish (no NATS).
	ErrRedriveUnavailable = errors.New("this process has no NATS connection to re-drive with; use onboard deadletters redrive")
)

// OperatorConfig configures the operator API: bulk actions, the stuck
// list, explain and dead letters.
type OperatorConfig struct {
	Bulks     *operator.Bulks
	Reads     operator.CustomerLister
	Explainer operator.Explainer
	Stuck     operator.Detector
	// DeadLetters is nil where no NATS runs: the list is empty.
	DeadLetters DeadLetterAdmin
	Logger      *slog.Logger
}

// OperatorAPI serves the operators' tools over many customers, and explain.
type OperatorAPI struct {
	cfg OperatorConfig
}

// NewOperatorAPI returns the operator API. It panics when Bulks, Reads or
// the explainer's events are missing: a wiring mistake.
func NewOperatorAPI(cfg OperatorConfig) *OperatorAPI {
	if cfg.Bulks == nil || cfg.Reads == nil || cfg.Explainer.Events == nil || cfg.Stuck.Reads == nil {
		panic("httpapi: NewOperatorAPI needs Bulks, Reads, Explainer.Events and Stuck.Reads")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &OperatorAPI{cfg: cfg}
}

// Register adds the operator routes to mux, each behind its rule in Routes.
func (a *OperatorAPI) Register(mux Mux) {
	handle(mux, "POST /v1/operator/bulk", a.startBulk)
	handle(mux, "GET /v1/operator/bulk", a.listBulks)
	handle(mux, "GET /v1/operator/bulk/{id}", a.getBulk)
	handle(mux, "GET /v1/operator/queue/groups", a.groups)
	handle(mux, "GET /v1/operator/stuck", a.stuck)
	handle(mux, "GET /v1/customers/{id}/explain", a.explain)
	handle(mux, "GET /v1/operator/dead-letters", a.deadLetters)
	handle(mux, "POST /v1/operator/dead-letters/{id}/redrive", a.redrive)
}

// fail answers with the problem err stands for.
func (a *OperatorAPI) fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		reqErr   *requestError
		qErr     *queryError
		fieldErr *operator.FieldError
	)
	switch {
	case errors.As(err, &reqErr):
		writeProblem(w, reqErr.problem)
	case errors.As(err, &qErr):
		writeProblem(w, qErr.problem)
	case errors.As(err, &fieldErr):
		writeProblem(w, Problem{Type: ProblemValidation, Status: http.StatusUnprocessableEntity, Detail: "the request has invalid fields",
			Errors: []FieldProblem{{Pointer: fieldErr.Pointer, Detail: fieldErr.Detail}}})
	case errors.Is(err, operator.ErrTooMany):
		writeProblem(w, Problem{Type: ProblemValidation, Status: http.StatusUnprocessableEntity, Detail: err.Error() + "; narrow the filter",
			Errors: []FieldProblem{{Pointer: "/filter", Detail: err.Error()}}})
	case errors.Is(err, operator.ErrKeyReused):
		writeProblem(w, Problem{Type: ProblemIdempotencyReuse, Status: http.StatusUnprocessableEntity, Detail: "this Idempotency-Key was used for a different request"})
	case errors.Is(err, operator.ErrBulkNotFound):
		writeProblem(w, Problem{Type: ProblemNotFound, Status: http.StatusNotFound, Detail: "no bulk operation with this id"})
	case errors.Is(err, operator.ErrNotFound):
		writeProblem(w, errQueryNotFound.problem)
	case errors.Is(err, ErrDeadLetterNotFound):
		writeProblem(w, Problem{Type: ProblemNotFound, Status: http.StatusNotFound, Detail: "no dead letter with this id"})
	case errors.Is(err, ErrRedriveUnavailable):
		writeProblem(w, Problem{Type: ProblemUnavailable, Status: http.StatusServiceUnavailable, Detail: ErrRedriveUnavailable.Error()})
	case errors.Is(err, ErrDeadLetterResolved):
		writeProblem(w, Problem{Type: ProblemConflict, Status: http.StatusConflict, Detail: err.Error()})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeProblem(w, Problem{Type: ProblemUnavailable, Status: http.StatusServiceUnavailable, Detail: "the request was cancelled or timed out"})
	default:
		a.cfg.Logger.ErrorContext(r.Context(), "operator request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeProblem(w, Problem{Type: ProblemInternal, Status: http.StatusInternalServerError, Detail: "internal error; it has been logged"})
	}
}

type bulkRequest struct {
	Action operator.Action `json:"action"`
	Filter operator.Filter `json:"filter"`
	Reason string          `json:"reason"`
	DryRun bool            `json:"dry_run"`
	// Rate lowers the configured rate for this operation.
	Rate float64 `json:"rate"`
}

// bulkSample is how many customers a dry run shows.
const bulkSample = 10

func (a *OperatorAPI) startBulk(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	body, err := readBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req bulkRequest
	if err := decodeStrict(body, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Rate < 0 {
		a.fail(w, r, &operator.FieldError{Pointer: "/rate", Detail: "rate must be positive"})
		return
	}
	if req.DryRun {
		n, sample, err := a.cfg.Bulks.DryRun(r.Context(), req.Action, req.Filter, bulkSample)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if sample == nil {
			sample = []projections.Customer{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"dry_run": true, "count": n, "sample": sample, "rate": a.cfg.Bulks.Rate()})
		return
	}
	key, err := idempotencyKey(r, true)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	op, replayed, err := a.cfg.Bulks.Start(r.Context(), operator.BulkRequest{Action: req.Action, Filter: req.Filter, Reason: req.Reason,
		Operator: p.Actor(), IdempotencyKey: key, Fingerprint: fingerprint(r, body), Rate: req.Rate})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Location", "/v1/operator/bulk/"+op.ID.String())
	writeJSON(w, http.StatusAccepted, op)
}

func (a *OperatorAPI) getBulk(w http.ResponseWriter, r *http.Request) {
	if _, err := readQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		a.fail(w, r, badRequest(ProblemMalformed, http.StatusBadRequest, "bulk operation id %q is not a UUID", r.PathValue("id")))
		return
	}
	op, err := a.cfg.Bulks.Get(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, op)
}

func (a *OperatorAPI) listBulks(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r, "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	limit, err := q.limit()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ops, err := a.cfg.Bulks.List(r.Context(), projections.ClampLimit(limit))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": ops})
}

// maxGrouped bounds the paused customers the groups count.
const maxGrouped = 10000

func (a *OperatorAPI) groups(w http.ResponseWriter, r *http.Request) {
	if _, err := readQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	groups, err := operator.PausedGroups(r.Context(), a.cfg.Reads, maxGrouped)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": groups})
}

func (a *OperatorAPI) stuck(w http.ResponseWriter, r *http.Request) {
	if _, err := readQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	items, err := a.cfg.Stuck.Stuck(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (a *OperatorAPI) explain(w http.ResponseWriter, r *http.Request) {
	id, err := queryID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := readQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	x, err := a.cfg.Explainer.Explain(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, x)
}

func (a *OperatorAPI) deadLetters(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r, "status", "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	status, _ := q.value("status")
	switch status {
	case "", "dead", "redriven", "resolved":
	default:
		a.fail(w, r, queryBad("status", "status %q is not one of dead, redriven, resolved", status))
		return
	}
	limit, err := q.limit()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	items := []operator.DeadLetterEntry{}
	if a.cfg.DeadLetters != nil {
		got, err := a.cfg.DeadLetters.List(r.Context(), status, projections.ClampLimit(limit))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		items = append(items, got...)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (a *OperatorAPI) redrive(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		a.fail(w, r, badRequest(ProblemMalformed, http.StatusBadRequest, "dead letter id %q is not a positive integer", r.PathValue("id")))
		return
	}
	if a.cfg.DeadLetters == nil {
		a.fail(w, r, fmt.Errorf("dead letter %d: %w", id, ErrDeadLetterNotFound))
		return
	}
	if err := a.cfg.DeadLetters.Redrive(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "status": "redriven"})
}
