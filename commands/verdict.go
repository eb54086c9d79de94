package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// ErrCheckNotRecorded: a verdict came before the check it answers was
// recorded, and the check was still missing after a short wait. The
// provider retries a webhook that is not acknowledged.
var ErrCheckNotRecorded = errors.New("the check is not recorded yet; retry later")

// Verdict is the identity provider's answer to a verification check.
type Verdict struct {
	CheckID  string
	Approved bool
	Reason   string
}

// checkRecordWait bounds how long a verdict waits for its check to be
// recorded before ErrCheckNotRecorded; checkRememberWait, how much of that
// it waits in memory first.
const (
	checkRecordWait   = 2 * time.Second
	checkRememberWait = 50 * time.Millisecond
)

// RecordVerdict records the identity provider's verdict on a check; an
// approval requests the next step in the same append. A verdict that is no
// longer news (a settled or superseded check, a customer that moved on) is
// recorded as ignored, so that its delivery is still acknowledged.
//
// A quick provider answers before the process manager has recorded the
// check: the verdict then waits a little for it (in memory first, where a
// worker in this process records it, then on the stream) rather than have
// the provider retry seconds later, and fails with ErrCheckNotRecorded when
// the check stays missing.
func (h *Handler) RecordVerdict(ctx context.Context, id uuid.UUID, v Verdict, meta Meta, opts ...eventstore.AppendOption) (Result, error) {
	decide := func(c *domain.Customer) error {
		err := c.RecordVerdict(v.CheckID, v.Approved, v.Reason)
		if err == nil {
			RequestNext(c) // billing, in the same append
			return nil
		}
		if !(errors.Is(err, domain.ErrStaleResult) || errors.Is(err, domain.ErrInvalidTransition)) {
			return err
		}
		if awaitingCheck(c) {
			return ErrCheckNotRecorded
		}
		status := "rejected"
		if v.Approved {
			status = "approved"
		}
		return c.IgnoreResult(domain.StepVerification, "kyc-webhook", fmt.Sprintf("verdict %s on check %s ignored: %v", status, v.CheckID, err))
	}
	h.AwaitRemembered(ctx, id, func(c *domain.Customer) bool { return !awaitingCheck(c) }, checkRememberWait)
	polls := &backoff.ExponentialBackOff{InitialInterval: time.Millisecond, Multiplier: 2, MaxInterval: 50 * time.Millisecond}
	return backoff.Retry(ctx, func() (Result, error) {
		res, err := h.Execute(ctx, id, nil, meta, decide, opts...)
		if err != nil && !errors.Is(err, ErrCheckNotRecorded) {
			return res, backoff.Permanent(err)
		}
		return res, err
	}, backoff.WithBackOff(polls), backoff.WithMaxElapsedTime(checkRecordWait))
}

// awaitingCheck reports whether the customer's verification was requested
// and its check is not recorded yet: a verdict for it came early.
func awaitingCheck(c *domain.Customer) bool {
	return c.State() == domain.StateVerifying && c.CheckID() == "" && c.InFlight(domain.StepVerification) != 0
}
