package eventstoretest

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/onboard/onboard/eventstore"
)

// Harness is one store under test plus the hooks that reach below the
// contract. The hooks are optional: tests that need a missing one are
// skipped.
type Harness struct {
	// Store is the store under test. The suite's tests run in parallel on
	// it and use stream ids of their own, so it may be shared, and may hold
	// other events.
	Store eventstore.Store
	// HoldAppend, if set, appends as Store.Append does, through the same
	// statements, but leaves the transaction open: when it returns, the
	// events (and the writes opts ask for) have taken their global
	// positions but are not committed. The suite uses it to make a later
	// append commit first.
	HoldAppend func(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.NewEvent, opts ...eventstore.AppendOption) (*HeldAppend, error)
	// Tamper, if set, overwrites the data of one stored event behind the
	// store's back (as a superuser would, with the immutability trigger
	// disabled), so the suite can check that Verify notices.
	Tamper func(ctx context.Context, streamID string, version int64, data json.RawMessage) error
}

// HeldAppend is an append whose transaction is still open.
type HeldAppend struct {
	// Result is what Append would return once committed.
	Result eventstore.AppendResult
	// Commit commits the append and wakes the store's subscribers as an
	// ordinary Append does.
	Commit func(ctx context.Context) error
	// Rollback abandons the append.
	Rollback func(ctx context.Context) error
}

// Factory returns the harness for one test of the suite. It may return the
// same store every time. Clean-up belongs in t.Cleanup.
type Factory func(t *testing.T) Harness
