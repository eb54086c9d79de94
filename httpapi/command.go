package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/providers"
)

// CommandStore is what the command API reads besides running commands:
// stored idempotency records, and streams to rebuild a replayed response.
type CommandStore interface {
	eventstore.IdempotencyReader
	eventstore.StreamReader
}

// CommandConfig configures the command API.
type CommandConfig struct {
	Commands *commands.Handler
	Store    CommandStore
	// WebhookSecret verifies the KYC provider's webhooks.
	WebhookSecret string
	// WebhookTolerance is how old a webhook's timestamp may be; default 5m.
	WebhookTolerance time.Duration
	// IdempotencyTTL is how long an Idempotency-Key is remembered; default
	// 24h.
	IdempotencyTTL time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
	// Tracer starts a span per command request, continuing the caller's
	// W3C traceparent; its context goes into the events' metadata, so the
	// customer's whole onboarding is one trace. Default: no tracing.
	Tracer trace.Tracer
}

// CommandAPI serves the write side: signup, provider webhooks and operator
// commands.
type CommandAPI struct {
	cfg      CommandConfig
	inFlight inFlight
}

// NewCommandAPI returns the command API, or an error naming every missing
// setting.
func NewCommandAPI(cfg CommandConfig) (*CommandAPI, error) {
	var errs []error
	if cfg.Commands == nil {
		errs = append(errs, errors.New("command api: Commands is required"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("command api: Store is required"))
	}
	if cfg.WebhookSecret == "" {
		errs = append(errs, errors.New("command api: WebhookSecret is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.WebhookTolerance <= 0 {
		cfg.WebhookTolerance = 5 * time.Minute
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = eventstore.DefaultIdempotencyTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("onboard")
	}
	return &CommandAPI{cfg: cfg}, nil
}

// Register adds the command routes to mux, each behind its rule in Routes.
func (a *CommandAPI) Register(mux Mux) {
	for _, r := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"POST /v1/customers", a.signUp},
		{"POST /v1/customers/{id}/retry", a.operatorCommand(actionRetry)},
		{"POST /v1/customers/{id}/skip", a.operatorCommand(actionSkip)},
		{"POST /v1/customers/{id}/cancel", a.operatorCommand(actionCancel)},
		{"POST /v1/customers/{id}/erasure", a.operatorCommand(actionErase)},
	} {
		handle(mux, r.pattern, a.traced(r.pattern, r.h))
	}
	handle(mux, kycWebhookRoute, a.kycWebhook) // its span continues the customer's trace: see kycWebhook
}

const kycWebhookRoute = "POST /v1/webhooks/kyc"

// traced runs h in a server span named after its route.
func (a *CommandAPI) traced(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := commands.ContextWithTrace(r.Context(), map[string]string{"traceparent": r.Header.Get("Traceparent"), "tracestate": r.Header.Get("Tracestate")})
		ctx, span := a.cfg.Tracer.Start(ctx, route, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		h(w, r.WithContext(ctx))
	}
}

// commandResponse is the body of every accepted command. It is rebuilt
// from the append's result alone, so that a replayed response is the same,
// byte for byte, as the first one.
type commandResponse struct {
	ID       string       `json:"id"`
	State    domain.State `json:"state"`
	Version  int          `json:"version"`
	Position int64        `json:"position"`
}

type signupRequest struct {
	Email       string `json:"email"`
	Company     string `json:"company"`
	ContactName string `json:"contact_name"`
	Country     string `json:"country"`
	Plan        string `json:"plan"`
}

func (a *CommandAPI) signUp(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	key, err := idempotencyKey(r, true)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req signupRequest
	if err := decodeStrict(body, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	details := domain.SignupDetails{Email: req.Email, Company: req.Company, ContactName: req.ContactName, Country: req.Country, Plan: domain.Plan(req.Plan)}
	a.idempotent(w, r, p.Actor()+" POST /v1/customers", key, fingerprint(r, body), http.StatusAccepted,
		func(ctx context.Context, opts []eventstore.AppendOption) (commands.Result, error) {
			return a.cfg.Commands.SignUp(ctx, details, a.meta(r, p, key), opts...)
		})
}

type operatorAction string

const (
	actionRetry  operatorAction = "retry"
	actionSkip   operatorAction = "skip"
	actionCancel operatorAction = "cancel"
	// actionErase erases the customer's personal data (commands.Erase);
	// it needs an Idempotency-Key, and a reason like every erasure.
	actionErase operatorAction = "erase"
)

type operatorRequest struct {
	Reason string `json:"reason"`
}

func (a *CommandAPI) operatorCommand(action operatorAction) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// handle has checked that there is one, and that it is an operator's.
		p, _ := principalFrom(r.Context())
		id, err := uuid.Parse(r.PathValue("id"))
		if err != nil {
			a.fail(w, r, badRequest(ProblemMalformed, http.StatusBadRequest, "customer id %q is not a UUID", r.PathValue("id")))
			return
		}
		key, err := idempotencyKey(r, action == actionErase)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		expected, err := ifMatch(r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		body := []byte("{}")
		if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
			if body, err = readBody(w, r); err != nil {
				a.fail(w, r, err)
				return
			}
		}
		var req operatorRequest
		if err := decodeStrict(body, &req); err != nil {
			a.fail(w, r, err)
			return
		}
		operator := p.Actor()
		decide := func(c *domain.Customer) error {
			switch action {
			case actionRetry:
				return c.RetryStep(operator, req.Reason)
			case actionSkip:
				return c.SkipStep(operator, req.Reason)
			default:
				return c.Cancel(operator, req.Reason)
			}
		}
		a.idempotent(w, r, operator+" POST "+r.URL.Path, key, fingerprint(r, body), http.StatusAccepted,
			func(ctx context.Context, opts []eventstore.AppendOption) (commands.Result, error) {
				if action == actionErase {
					return a.cfg.Commands.Erase(ctx, id, operator, req.Reason, a.meta(r, p, key), opts...)
				}
				return a.cfg.Commands.Execute(ctx, id, expected, a.meta(r, p, key), decide, opts...)
			})
	}
}

func (a *CommandAPI) kycWebhook(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := providers.VerifyWebhook(a.cfg.WebhookSecret, r.Header.Get(providers.HeaderWebhookSignature), body, a.cfg.Now(), a.cfg.WebhookTolerance); err != nil {
		a.fail(w, r, badRequest(ProblemUnauthorized, http.StatusUnauthorized, "webhook rejected: %v", err))
		return
	}
	ev, err := providers.ParseWebhook(body)
	if err != nil {
		a.fail(w, r, badRequest(ProblemMalformed, http.StatusBadRequest, "%v", err))
		return
	}
	id, err := uuid.Parse(ev.CustomerID)
	if err != nil {
		a.fail(w, r, badRequest(ProblemMalformed, http.StatusBadRequest, "customer_id %q is not a UUID", ev.CustomerID))
		return
	}
	if ev.Status != providers.VerdictApproved && ev.Status != providers.VerdictRejected {
		a.fail(w, r, badRequest(ProblemMalformed, http.StatusBadRequest, "status must be approved or rejected, got %q", ev.Status))
		return
	}
	// The provider knows nothing of our traces: the verdict continues the
	// customer's, so that the onboarding stays one trace from signup to
	// welcome email.
	ctx := commands.ContextWithTrace(r.Context(), a.cfg.Commands.CustomerTrace(r.Context(), id))
	ctx, span := a.cfg.Tracer.Start(ctx, kycWebhookRoute, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("onboard.customer_id", id.String())))
	defer span.End()
	r = r.WithContext(ctx)
	provider := Principal{Name: "kyc", Role: RoleProvider}
	verdict := commands.Verdict{CheckID: ev.CheckID, Approved: ev.Status == providers.VerdictApproved, Reason: ev.Reason}
	a.idempotent(w, r, "provider:kyc webhook", ev.ID, fingerprint(r, body), http.StatusOK,
		func(ctx context.Context, opts []eventstore.AppendOption) (commands.Result, error) {
			return a.cfg.Commands.RecordVerdict(ctx, id, verdict, a.meta(r, provider, ev.ID), opts...)
		})
}

// idempotent runs a command once per (scope, key): a repeated request with
// the same content gets the stored response replayed, one with other
// content a 422, and one that arrives while the first is still being
// handled a 409. The key's record commits with the command's events.
//
// The record is looked up only when the command fails: a repeated request
// either fails its append (the append checks the key first) or is refused
// by the customer it already changed, and then finds the record. A new
// request, the common case, costs no look-up.
func (a *CommandAPI) idempotent(w http.ResponseWriter, r *http.Request, scope, key, fp string, status int,
	run func(context.Context, []eventstore.AppendOption) (commands.Result, error)) {
	ctx := r.Context()
	var opts []eventstore.AppendOption
	if key != "" {
		if !a.inFlight.begin(scope + "\x00" + key) {
			a.fail(w, r, badRequest(ProblemIdempotencyBusy, http.StatusConflict, "a request with this Idempotency-Key is still being handled"))
			return
		}
		defer a.inFlight.end(scope + "\x00" + key)
		opts = append(opts, eventstore.WithIdempotency(eventstore.IdempotencyRecord{
			Scope: scope, Key: key, Fingerprint: fp, StatusCode: status, TTL: a.cfg.IdempotencyTTL,
		}))
	}
	res, err := run(ctx, opts)
	if err != nil && key != "" && a.replayed(w, r, scope, key, fp) {
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, status, commandResponse{ID: res.CustomerID.String(), State: res.State, Version: res.Version, Position: res.Position})
}

// replayed answers from the stored record of (scope, key), if there is one.
func (a *CommandAPI) replayed(w http.ResponseWriter, r *http.Request, scope, key, fp string) bool {
	rec, found, err := a.cfg.Store.LookupIdempotency(r.Context(), scope, key)
	if err != nil {
		a.fail(w, r, err)
		return true
	}
	if !found {
		return false
	}
	if rec.Fingerprint != fp {
		a.fail(w, r, badRequest(ProblemIdempotencyReuse, http.StatusUnprocessableEntity, "this Idempotency-Key was used for a different request"))
		return true
	}
	resp, err := a.responseOf(r.Context(), rec.Result)
	if err != nil {
		a.fail(w, r, err)
		return true
	}
	w.Header().Set("Idempotent-Replayed", "true")
	writeJSON(w, rec.StatusCode, resp)
	return true
}

// responseOf rebuilds the response of an earlier append from the stream as
// it was right after it.
func (a *CommandAPI) responseOf(ctx context.Context, ar eventstore.AppendResult) (commandResponse, error) {
	id, err := commands.ParseStreamID(ar.StreamID)
	if err != nil {
		return commandResponse{}, err
	}
	envs, err := a.cfg.Store.ReadStream(ctx, ar.StreamID, 1)
	if err != nil {
		return commandResponse{}, err
	}
	if int64(len(envs)) > ar.LastVersion {
		envs = envs[:ar.LastVersion]
	}
	events, err := commands.DecodeEnvelopes(envs)
	if err != nil {
		return commandResponse{}, err
	}
	c, err := domain.FromHistory(id, events)
	if err != nil {
		return commandResponse{}, err
	}
	resp := commandResponse{ID: id.String(), State: c.State(), Version: int(ar.LastVersion)}
	if n := len(ar.Positions); n > 0 {
		resp.Position = ar.Positions[n-1]
	}
	return resp, nil
}

func (a *CommandAPI) meta(r *http.Request, p Principal, key string) commands.Meta {
	requestID := r.Header.Get("X-Request-Id")
	if requestID == "" {
		requestID = uuid.Must(uuid.NewV7()).String()
	}
	correlation := r.Header.Get("X-Correlation-Id")
	if correlation == "" {
		correlation = requestID
	}
	return commands.Meta{Actor: p.Actor(), CorrelationID: correlation, CausationID: requestID, RequestID: requestID, IdempotencyKey: key,
		Trace: commands.TraceOf(r.Context())}
}

// mayRead reports whether the caller may learn that customer id exists:
// an operator may, and a client for the customers it signed up (the actor
// of their signed_up event), as the query API answers. Emails are unique
// across clients, so a client learns that another's customer holds an
// email, but never that customer's id.
func (a *CommandAPI) mayRead(r *http.Request, id uuid.UUID) bool {
	p, ok := principalFrom(r.Context())
	if !ok {
		return false
	}
	if p.Role == RoleOperator {
		return true
	}
	envs, err := a.cfg.Store.ReadStream(r.Context(), commands.StreamID(id), 1)
	if err != nil {
		a.cfg.Logger.WarnContext(r.Context(), "reading the holder of an email failed", "customer", id, "err", err)
		return false
	}
	return len(envs) > 0 && envs[0].Metadata.Actor == p.Actor()
}

// ifMatch returns the version named by If-Match ("5", "\"5\"" or
// W/"5"), or nil when the header is absent.
func ifMatch(r *http.Request) (*int, error) {
	raw := strings.TrimSpace(r.Header.Get("If-Match"))
	if raw == "" {
		return nil, nil
	}
	v := strings.Trim(strings.TrimPrefix(raw, "W/"), `"`)
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return nil, badRequest(ProblemMalformed, http.StatusBadRequest, "If-Match must be a customer version, got %q", raw)
	}
	return &n, nil
}

// fail answers with the problem err stands for.
func (a *CommandAPI) fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		reqErr   *requestError
		valErr   *domain.ValidationError
		cmdErr   *domain.CommandError
		taken    *commands.EmailTakenError
		mismatch *commands.VersionMismatchError
	)
	switch {
	case errors.As(err, &reqErr):
		writeProblem(w, reqErr.problem)
	case errors.As(err, &valErr):
		p := Problem{Type: ProblemValidation, Status: http.StatusUnprocessableEntity, Detail: "the request has invalid fields"}
		for _, f := range valErr.Fields {
			p.Errors = append(p.Errors, FieldProblem{Pointer: f.Pointer, Detail: f.Detail})
		}
		writeProblem(w, p)
	case errors.As(err, &cmdErr):
		writeProblem(w, Problem{Type: ProblemInvalidState, Status: http.StatusConflict, Detail: cmdErr.Error(),
			Extra: map[string]any{"state": cmdErr.State, "command": cmdErr.Command}})
	case errors.As(err, &taken):
		p := Problem{Type: ProblemEmailTaken, Status: http.StatusConflict, Detail: "a customer with this email already signed up"}
		if a.mayRead(r, taken.ExistingID) {
			p.Extra = map[string]any{"existing_id": taken.ExistingID.String()}
		}
		writeProblem(w, p)
	case errors.As(err, &mismatch):
		writeProblem(w, Problem{Type: ProblemPrecondition, Status: http.StatusPreconditionFailed, Detail: mismatch.Error(),
			Extra: map[string]any{"version": mismatch.Actual}})
	case errors.Is(err, commands.ErrCustomerNotFound):
		writeProblem(w, Problem{Type: ProblemNotFound, Status: http.StatusNotFound, Detail: "no customer with this id"})
	case errors.Is(err, commands.ErrCheckNotRecorded):
		writeProblem(w, Problem{Type: ProblemConflict, Status: http.StatusConflict, Detail: err.Error()})
	case errors.Is(err, eventstore.ErrIdempotencyKeyMismatch):
		writeProblem(w, Problem{Type: ProblemIdempotencyReuse, Status: http.StatusUnprocessableEntity, Detail: "this Idempotency-Key was used for a different request"})
	case errors.Is(err, eventstore.ErrConcurrencyConflict):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, Problem{Type: ProblemConflict, Status: http.StatusConflict, Detail: "the customer changed concurrently; retry"})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeProblem(w, Problem{Type: ProblemUnavailable, Status: http.StatusServiceUnavailable, Detail: "the request was cancelled or timed out"})
	default:
		a.cfg.Logger.ErrorContext(r.Context(), "command failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeProblem(w, Problem{Type: ProblemInternal, Status: http.StatusInternalServerError, Detail: "internal error; it has been logged"})
	}
}
