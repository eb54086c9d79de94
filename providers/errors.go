package providers

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Class says whether a failed call may succeed if it is tried again with the
// same idempotency key. Process managers branch on it: transient errors are
// retried durably, permanent ones pause the customer for an operator.
type Class int

// The error classes. The zero value is not a valid class so that an Error
// built by hand without a class is noticed.
const (
	// ClassTransient: timeouts, 5xx, 429, connection failures, an open
	// breaker, a full bulkhead, a request of the same key still in flight.
	ClassTransient Class = iota + 1
	// ClassPermanent: validation errors, declines, rejections, an
	// idempotency key reused with another body, an unknown resource.
	ClassPermanent
)

// String returns "transient" or "permanent"; it is the form recorded in
// ...Failed events.
func (c Class) String() string {
	switch c {
	case ClassTransient:
		return "transient"
	case ClassPermanent:
		return "permanent"
	default:
		return "class(" + strconv.Itoa(int(c)) + ")"
	}
}

// Class sentinels: errors.Is(err, ErrTransient) holds for every *Error of
// class ClassTransient, and likewise for ErrPermanent.
var (
	ErrTransient = errors.New("transient provider error")
	ErrPermanent = errors.New("permanent provider error")
)

// Cause sentinels, wrapped by Error.Err, for callers that need to know more
// than the class (an audit reason, a metric label).
var (
	// ErrTimeout: the per-call timeout expired before the provider answered.
	ErrTimeout = errors.New("provider call timed out")
	// ErrConnection: the connection was refused, reset or closed before a
	// complete response arrived; the effect may or may not have happened.
	ErrConnection = errors.New("provider connection failed")
	// ErrUnavailable: the provider answered 5xx.
	ErrUnavailable = errors.New("provider unavailable")
	// ErrRateLimited: the provider answered 429; Error.RetryAfter holds its
	// Retry-After.
	ErrRateLimited = errors.New("provider rate limited")
	// ErrInFlight: the provider answered 409 because a request with the
	// same idempotency key is still being processed.
	ErrInFlight = errors.New("request with the same idempotency key in flight")
	// ErrCircuitOpen: the provider's breaker is open (or half-open and
	// already probing), so the call was not sent.
	ErrCircuitOpen = errors.New("circuit breaker open")
	// ErrBulkheadFull: the provider's concurrency limit was reached and no
	// slot freed up in time, so the call was not sent.
	ErrBulkheadFull = errors.New("bulkhead full")

	// ErrInvalid: the provider rejected the request as invalid (400, 422).
	ErrInvalid = errors.New("request rejected as invalid")
	// ErrDeclined: the provider declined the request (402: card declined).
	ErrDeclined = errors.New("request declined")
	// ErrIdempotencyMismatch: the idempotency key was already used with a
	// different request (422); a bug in key derivation, never retried.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	// ErrNotFound: the resource does not exist (404).
	ErrNotFound = errors.New("resource not found")
	// ErrBadResponse: a 2xx answer that could not be decoded. Permanent,
	// since a retry with the same key replays the same answer.
	ErrBadResponse = errors.New("undecodable provider response")
	// ErrUnauthorized: the provider refused the credentials (401, 403).
	ErrUnauthorized = errors.New("provider refused credentials")
)

// Error is the error every client returns for a failed call. Both
// errors.Is(err, ErrTransient)/ErrPermanent and errors.As(err, &*Error) work,
// and Err wraps one of the cause sentinels above.
type Error struct {
	Provider   string        // "kyc", "payments", "provisioning", "crm", "email"
	Op         string        // the client method, e.g. "CreateBillingAccount"
	Class      Class         // transient or permanent
	StatusCode int           // HTTP status of the last attempt, 0 when none arrived
	Code       string        // the provider's error code, e.g. "card_declined", when it sent one
	RetryAfter time.Duration // the provider's Retry-After of the last attempt, 0 when none
	Attempts   int           // in-process attempts made, including the last one
	Err        error         // the cause, wrapping a cause sentinel

	// callerGone marks a failure caused by the caller's own ctx ending: it
	// is not retried and not held against the provider's breaker.
	callerGone bool
}

// Error describes the failure on one line.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %s", e.Provider, e.Op, e.Class)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (status %d", e.StatusCode)
		if e.Code != "" {
			fmt.Fprintf(&b, ", code %s", e.Code)
		}
		b.WriteString(")")
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the class sentinels, so that callers need not errors.As to
// branch on the class.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrTransient:
		return e.Class == ClassTransient
	case ErrPermanent:
		return e.Class == ClassPermanent
	}
	return false
}

// errorBody is the provider error envelope, modelled on Stripe's.
type errorBody struct {
	Error struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// classifyStatus maps a non-2xx response to a class and cause. code is the
// provider's error code, used to tell an idempotency mismatch from a
// validation error (both 422).
func classifyStatus(status int, code string) (Class, error) {
	switch {
	case status == http.StatusTooManyRequests:
		return ClassTransient, ErrRateLimited
	case status == http.StatusConflict:
		// Stripe answers 409 while a request with the same key is in
		// flight; retrying later replays its response.
		return ClassTransient, ErrInFlight
	case status == http.StatusRequestTimeout:
		return ClassTransient, ErrTimeout
	case status >= 500:
		return ClassTransient, ErrUnavailable
	case status == http.StatusPaymentRequired:
		return ClassPermanent, ErrDeclined
	case status == http.StatusNotFound:
		return ClassPermanent, ErrNotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ClassPermanent, ErrUnauthorized
	case status == http.StatusUnprocessableEntity && code == CodeIdempotencyMismatch:
		return ClassPermanent, ErrIdempotencyMismatch
	default:
		return ClassPermanent, ErrInvalid
	}
}

// parseRetryAfter reads a Retry-After header in either of its forms
// (seconds, or an HTTP date relative to now). It returns 0 when absent or
// unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
