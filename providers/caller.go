package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sony/gobreaker/v2"
)

// Wire names shared with the simulator and the real providers' contracts.
const (
	// HeaderIdempotencyKey carries the idempotency key of a mutating call.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderIdempotentReplayed is set to "true" by a provider on a response
	// replayed for a repeated idempotency key.
	HeaderIdempotentReplayed = "Idempotent-Replayed"
	// CodeIdempotencyMismatch is the error code of a 422 answered for an
	// idempotency key reused with a different request.
	CodeIdempotencyMismatch = "idempotency_key_mismatch"
	// CodeIdempotencyInFlight is the error code of a 409 answered while a
	// request with the same idempotency key is still being processed.
	CodeIdempotencyInFlight = "idempotency_key_in_use"
)

// maxResponseBytes bounds what a client reads of a response: the providers'
// answers are small, and a runaway body must not exhaust memory.
const maxResponseBytes = 1 << 20

// Config configures one provider client.
type Config struct {
	// BaseURL is the provider's root, e.g. "https://api.payments.example"
	// or, against the simulator, "http://127.0.0.1:8080/sim/payments".
	BaseURL string
	// APIKey, when set, is sent as "Authorization: Bearer <APIKey>".
	APIKey string
	// HTTPClient defaults to a client with its own transport. Its Timeout
	// should be zero: Policy.Timeout bounds each attempt.
	HTTPClient *http.Client
	// Policy configures the resilience layer.
	Policy Policy
}

// caller is the resilience layer shared by the five clients: retry (outer),
// then per attempt bulkhead, breaker, timeout, HTTP.
type caller struct {
	provider string
	base     string
	apiKey   string
	hc       *http.Client
	p        Policy
	cb       *gobreaker.CircuitBreaker[response]
	slots    chan struct{}
}

// response is a 2xx answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

func newCaller(provider string, cfg Config) (*caller, error) {
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("%s client policy: %w", provider, err)
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s client: base url %q must be an absolute http(s) url", provider, cfg.BaseURL)
	}
	p := cfg.Policy
	p.setDefaults()
	hc := cfg.HTTPClient
	if hc == nil {
		// Keep as many idle connections as calls may run at once: with
		// the default two per host, every call beyond two concurrent ones
		// opened a connection and closed it afterwards.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = p.Bulkhead.MaxConcurrent
		t.MaxIdleConns = max(t.MaxIdleConns, p.Bulkhead.MaxConcurrent)
		hc = &http.Client{Transport: t}
	}
	c := &caller{
		provider: provider,
		base:     strings.TrimRight(cfg.BaseURL, "/"),
		apiKey:   cfg.APIKey,
		hc:       hc,
		p:        p,
		slots:    make(chan struct{}, p.Bulkhead.MaxConcurrent),
	}
	hook := p.Hooks.OnStateChange
	c.cb = gobreaker.NewCircuitBreaker[response](gobreaker.Settings{
		Name:        provider,
		MaxRequests: p.Breaker.HalfOpenRequests,
		Timeout:     p.Breaker.OpenTimeout,
		ReadyToTrip: func(counts gobreaker.Counts) bool {
			return counts.ConsecutiveFailures >= p.Breaker.FailureThreshold
		},
		IsSuccessful: func(err error) bool {
			// A permanent error proves the provider is up and answering.
			return err == nil || errors.Is(err, ErrPermanent)
		},
		IsExcluded: func(err error) bool {
			var e *Error
			return errors.As(err, &e) && e.callerGone
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if hook != nil {
				hook(provider, breakerState(from), breakerState(to))
			}
		},
	})
	if hook != nil {
		hook(provider, BreakerClosed, BreakerClosed)
	}
	return c, nil
}

func breakerState(s gobreaker.State) BreakerState {
	switch s {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	default:
		return BreakerClosed
	}
}

// state returns the breaker's state; reading it also moves an open breaker
// whose timeout has passed to half-open.
func (c *caller) state() BreakerState { return breakerState(c.cb.State()) }

// call sends one logical request through the resilience layer and decodes a
// 2xx JSON answer into out (when out is not nil). in, when not nil, is sent
// as the JSON body. Every failure is an *Error.
func (c *caller) call(ctx context.Context, op, method, path, idemKey string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return &Error{Provider: c.provider, Op: op, Class: ClassPermanent, Err: fmt.Errorf("%w: encode request: %w", ErrInvalid, err)}
		}
		body = b
	}
	var last *Error
	attempts := 0
	operation := func() (response, error) {
		attempts++
		start := time.Now()
		res, e := c.attempt(ctx, op, method, path, idemKey, body)
		if h := c.p.Hooks.OnAttempt; h != nil {
			h(c.provider, op, outcomeOf(e), time.Since(start))
		}
		if e == nil {
			return res, nil
		}
		last = e
		switch {
		case e.Class == ClassPermanent, e.callerGone:
			return res, backoff.Permanent(e)
		case errors.Is(e, ErrCircuitOpen), errors.Is(e, ErrBulkheadFull):
			// Local rejections: retrying within milliseconds defeats
			// their purpose; the durable retry comes back later.
			return res, backoff.Permanent(e)
		case e.RetryAfter > c.p.MaxRetryAfter:
			return res, backoff.Permanent(e)
		case e.RetryAfter > 0:
			return res, &backoff.RetryAfterError{Duration: e.RetryAfter}
		}
		return res, e
	}
	opts := []backoff.RetryOption{
		backoff.WithBackOff(c.p.backOff()),
		backoff.WithMaxTries(uint(c.p.MaxAttempts)),
		backoff.WithMaxElapsedTime(c.p.MaxElapsed),
	}
	if h := c.p.Hooks.OnRetry; h != nil {
		opts = append(opts, backoff.WithNotify(func(_ error, d time.Duration) { h(c.provider, op, last, d) }))
	}
	res, err := backoff.Retry(ctx, operation, opts...)
	if err != nil {
		switch {
		case last == nil:
			// Only a ctx that ended before the first attempt gets here.
			last = &Error{Provider: c.provider, Op: op, Class: ClassTransient, Err: err, callerGone: true}
		case ctx.Err() != nil && !last.callerGone:
			// The ctx ended while waiting to retry: say so, keeping
			// the last attempt's cause.
			last.Err = fmt.Errorf("%w; last attempt: %w", context.Cause(ctx), last.Err)
			last.callerGone = true
		}
		last.Attempts = attempts
		return last
	}
	if out != nil && len(res.body) > 0 {
		if err := json.Unmarshal(res.body, out); err != nil {
			return &Error{Provider: c.provider, Op: op, Class: ClassPermanent, StatusCode: res.status, Attempts: attempts,
				Err: fmt.Errorf("%w: decode response: %w", ErrBadResponse, err)}
		}
	}
	return nil
}

func outcomeOf(e *Error) Outcome {
	switch {
	case e == nil:
		return OutcomeSuccess
	case errors.Is(e, ErrCircuitOpen), errors.Is(e, ErrBulkheadFull):
		return OutcomeRejected
	case e.Class == ClassPermanent:
		return OutcomePermanent
	default:
		return OutcomeTransient
	}
}

// attempt makes one try: take a bulkhead slot, pass the breaker, send with
// the per-attempt timeout.
func (c *caller) attempt(ctx context.Context, op, method, path, idemKey string, body []byte) (response, *Error) {
	if !c.acquire(ctx) {
		if ctx.Err() != nil {
			return response{}, &Error{Provider: c.provider, Op: op, Class: ClassTransient, Err: context.Cause(ctx), callerGone: true}
		}
		return response{}, &Error{Provider: c.provider, Op: op, Class: ClassTransient, Err: ErrBulkheadFull}
	}
	defer func() { <-c.slots }()

	res, err := c.cb.Execute(func() (response, error) {
		r, e := c.send(ctx, op, method, path, idemKey, body)
		if e != nil {
			return r, e
		}
		return r, nil
	})
	if err == nil {
		return res, nil
	}
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return response{}, &Error{Provider: c.provider, Op: op, Class: ClassTransient, Err: fmt.Errorf("%w: %w", ErrCircuitOpen, err)}
	}
	var e *Error
	if errors.As(err, &e) {
		return res, e
	}
	return res, &Error{Provider: c.provider, Op: op, Class: ClassTransient, Err: err}
}

func (c *caller) acquire(ctx context.Context) bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	if c.p.Bulkhead.MaxWait <= 0 {
		return false
	}
	t := time.NewTimer(c.p.Bulkhead.MaxWait)
	defer t.Stop()
	select {
	case c.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (c *caller) send(ctx context.Context, op, method, path, idemKey string, body []byte) (response, *Error) {
	actx, cancel := context.WithTimeout(ctx, c.p.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, c.base+path, rd)
	if err != nil {
		return response{}, &Error{Provider: c.provider, Op: op, Class: ClassPermanent, Err: fmt.Errorf("%w: build request: %w", ErrInvalid, err)}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	if idemKey != "" {
		req.Header.Set(HeaderIdempotencyKey, idemKey)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return response{}, c.transportError(ctx, actx, op, 0, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		return response{}, c.transportError(ctx, actx, op, res.StatusCode, err)
	}
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		return response{status: res.StatusCode, header: res.Header, body: b}, nil
	}
	var eb errorBody
	_ = json.Unmarshal(b, &eb) // a body that is not the envelope still has a status
	class, cause := classifyStatus(res.StatusCode, eb.Error.Code)
	msg := eb.Error.Message
	if msg == "" {
		msg = http.StatusText(res.StatusCode)
	}
	return response{}, &Error{
		Provider:   c.provider,
		Op:         op,
		Class:      class,
		StatusCode: res.StatusCode,
		Code:       eb.Error.Code,
		RetryAfter: parseRetryAfter(res.Header.Get("Retry-After"), c.p.Now()),
		Err:        fmt.Errorf("%w: %s", cause, msg),
	}
}

// transportError classifies a failure to get a complete response. The
// effect may have happened, so it is always transient: a retry with the
// same idempotency key is what resolves the ambiguity.
func (c *caller) transportError(ctx, actx context.Context, op string, status int, err error) *Error {
	e := &Error{Provider: c.provider, Op: op, Class: ClassTransient, StatusCode: status}
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		e.Err = context.Cause(ctx)
		e.callerGone = true
	case errors.Is(actx.Err(), context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		e.Err = fmt.Errorf("%w after %s: %w", ErrTimeout, c.p.Timeout, err)
	default:
		e.Err = fmt.Errorf("%w: %w", ErrConnection, err)
	}
	return e
}
