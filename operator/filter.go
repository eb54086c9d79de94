package operator

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/projections"
)

// Filter selects the customers of a bulk action. Every field that is set
// must match; the zero Filter selects every customer, so a bulk action
// requires at least one field (Validate).
type Filter struct {
	State string `json:"state,omitempty"`
	// Step is the customer's current step (the paused step of a paused
	// customer).
	Step string `json:"step,omitempty"`
	// Provider is the provider of the current step (kyc, payments,
	// provisioning, crm, email).
	Provider string `json:"provider,omitempty"`
	// ErrorCode is the cause of the pause or the last error, as CauseCode
	// names it: a provider's code such as card_declined, http_503,
	// timeout, no_verdict, ...
	ErrorCode string `json:"error_code,omitempty"`
	// PausedBefore and PausedAfter bound the time of the pause: a customer
	// that is not paused matches neither.
	PausedBefore *time.Time `json:"paused_before,omitempty"`
	PausedAfter  *time.Time `json:"paused_after,omitempty"`
}

// FieldError is a filter or request field that is not acceptable; Pointer
// is its JSON pointer within the request.
type FieldError struct {
	Pointer, Detail string
}

func (e *FieldError) Error() string { return e.Pointer + ": " + e.Detail }

// Validate reports the first unacceptable field, as a *FieldError.
func (f Filter) Validate() error {
	if f == (Filter{}) {
		return &FieldError{"/filter", "name at least one of state, step, provider, error_code, paused_before, paused_after"}
	}
	if f.State != "" {
		if _, err := domain.ParseState(f.State); err != nil {
			return &FieldError{"/filter/state", fmt.Sprintf("state %q is not one of %v", f.State, domain.States())}
		}
	}
	if f.Step != "" {
		if _, err := domain.ParseStep(f.Step); err != nil {
			return &FieldError{"/filter/step", fmt.Sprintf("step %q is not one of %v", f.Step, domain.Steps())}
		}
	}
	if f.Provider != "" && stepOfProvider(f.Provider) == "" {
		return &FieldError{"/filter/provider", fmt.Sprintf("provider %q is not one of kyc, payments, provisioning, crm, email", f.Provider)}
	}
	if len(f.ErrorCode) > 100 {
		return &FieldError{"/filter/error_code", "error_code is longer than 100 bytes"}
	}
	return nil
}

func stepOfProvider(provider string) domain.Step {
	for _, s := range domain.Steps() {
		if projections.ProviderOf(s) == provider {
			return s
		}
	}
	return ""
}

// matches reports whether c matches f in the fields the read model's
// query does not filter on.
func (f Filter) matches(c projections.Customer) bool {
	step := c.Step
	if c.PausedStep != "" {
		step = c.PausedStep
	}
	switch {
	case f.Step != "" && step != f.Step:
		return false
	case f.Provider != "" && projections.ProviderOf(domain.Step(step)) != f.Provider:
		return false
	case f.ErrorCode != "" && CauseOf(c) != f.ErrorCode:
		return false
	case f.PausedBefore != nil && (c.PausedAt == nil || !c.PausedAt.Before(*f.PausedBefore)):
		return false
	case f.PausedAfter != nil && (c.PausedAt == nil || c.PausedAt.Before(*f.PausedAfter)):
		return false
	}
	return true
}

// CauseOf names why a customer is paused, or failed last: CauseCode of
// its pause reason, or of its last error when it is not paused.
func CauseOf(c projections.Customer) string {
	if c.PauseReason != "" {
		return CauseCode(c.PauseReason)
	}
	if c.LastError != "" {
		return CauseCode(c.LastError)
	}
	return ""
}

var (
	codeRe   = regexp.MustCompile(`\bcode ([A-Za-z0-9_.-]+)\)`)
	statusRe = regexp.MustCompile(`\(status (\d{3})\b`)
)

// causes name the provider clients' cause sentinels (package providers)
// and the process managers' own reasons by the text they put in a
// message, in the order they are looked for.
var causes = []struct{ text, code string }{
	{"no verdict from the identity provider", "no_verdict"},
	{"circuit breaker open", "circuit_open"},
	{"bulkhead full", "bulkhead_full"},
	{"provider call timed out", "timeout"},
	{"provider connection failed", "connection"},
	{"request declined", "declined"},
	{"request rejected as invalid", "invalid"},
	{"provider refused credentials", "unauthorized"},
	{"undecodable provider response", "bad_response"},
}

// CauseCode names the cause of a failure from its message, so that pauses
// of one cause group together: the provider's own error code where it sent
// one (card_declined), else the HTTP status (http_503), else the kind of
// failure (timeout, connection, circuit_open, no_verdict, ...), else
// "other".
func CauseCode(message string) string {
	if m := codeRe.FindStringSubmatch(message); m != nil {
		return m[1]
	}
	if m := statusRe.FindStringSubmatch(message); m != nil {
		return "http_" + m[1]
	}
	for _, c := range causes {
		if strings.Contains(message, c.text) {
			return c.code
		}
	}
	if message == "" {
		return ""
	}
	return "other"
}

// CustomerLister pages through the read model's customers;
// *projections.Projections is one.
type CustomerLister interface {
	ListCustomers(ctx context.Context, q projections.ListQuery) (projections.CustomerPage, error)
}

// ErrTooMany means a filter selects more customers than one bulk action
// may act on.
var ErrTooMany = errors.New("the filter selects too many customers")

// Select returns the customers f selects, newest first, at most limit (an
// error wrapping ErrTooMany when there are more).
func Select(ctx context.Context, reads CustomerLister, f Filter, limit int) ([]projections.Customer, error) {
	q := projections.ListQuery{State: f.State, Step: f.Step, Limit: projections.MaxListLimit}
	var out []projections.Customer
	for {
		page, err := reads.ListCustomers(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, c := range page.Items {
			if !f.matches(c) {
				continue
			}
			if len(out) == limit {
				return nil, fmt.Errorf("%w: more than %d", ErrTooMany, limit)
			}
			out = append(out, c)
		}
		if page.Next == uuid.Nil {
			return out, nil
		}
		q.After = page.Next
	}
}
