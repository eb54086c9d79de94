package commands_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
)

func newCommands(t *testing.T) (*commands.Handler, *postgres.Store) {
	t.Helper()
	ctx := context.Background()
	store, err := postgres.Open(ctx, pgtest.NewMigratedDatabase(t), postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cmds, err := commands.New(commands.Config{Store: store, MaxConflictRetries: 50})
	if err != nil {
		t.Fatal(err)
	}
	return cmds, store
}

var details = domain.SignupDetails{Email: "grace@example.com", Company: "Navy", ContactName: "Grace", Country: "US", Plan: domain.PlanEnterprise}

func TestSignUpReservesTheEmail(t *testing.T) {
	cmds, _ := newCommands(t)
	ctx := context.Background()
	first, err := cmds.SignUp(ctx, details, commands.Meta{Actor: "client:a"})
	if err != nil {
		t.Fatal(err)
	}
	// The signup requests verification in its own append.
	if first.State != domain.StateVerifying || first.Version != 2 || first.Position <= 0 ||
		len(first.Events) != 2 || first.Events[1] != (domain.StepRequested{Step: domain.StepVerification, Attempt: 1, AttemptGroup: 1, IdempotencyKey: first.CustomerID.String() + ":verification:1"}) {
		t.Fatalf("result %+v", first)
	}
	again := details
	again.Email = "  GRACE@example.com"
	_, err = cmds.SignUp(ctx, again, commands.Meta{Actor: "client:b"})
	var taken *commands.EmailTakenError
	if !errors.As(err, &taken) || taken.ExistingID != first.CustomerID {
		t.Fatalf("err = %v, want EmailTakenError naming %s", err, first.CustomerID)
	}
}

// TestExecuteRetriesConflicts runs concurrent commands on one customer: each
// conflict is reloaded and decided again, so every command lands, in some
// order, with contiguous versions.
func TestExecuteRetriesConflicts(t *testing.T) {
	cmds, store := newCommands(t)
	ctx := context.Background()
	res, err := cmds.SignUp(ctx, details, commands.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := cmds.Execute(ctx, res.CustomerID, nil, commands.Meta{Actor: "test"}, func(c *domain.Customer) error {
				return c.IgnoreResult(domain.StepCRM, "test", "concurrent")
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	envs, err := store.ReadStream(ctx, commands.StreamID(res.CustomerID), 1)
	if err != nil || len(envs) != 10 {
		t.Fatalf("%d events (%v), want 10", len(envs), err)
	}
}

func TestExecuteWithExpectedVersion(t *testing.T) {
	cmds, _ := newCommands(t)
	ctx := context.Background()
	res, err := cmds.SignUp(ctx, details, commands.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	stale := 3
	_, err = cmds.Execute(ctx, res.CustomerID, &stale, commands.Meta{}, func(c *domain.Customer) error { return c.Cancel("op", "r") })
	if !errors.Is(err, commands.ErrVersionMismatch) {
		t.Fatalf("err = %v, want ErrVersionMismatch", err)
	}
	current := 2
	out, err := cmds.Execute(ctx, res.CustomerID, &current, commands.Meta{}, func(c *domain.Customer) error { return c.Cancel("op", "r") })
	if err != nil || out.State != domain.StateCancelled || out.Version != 4 {
		t.Fatalf("cancel: %+v, %v", out, err)
	}
	_, err = cmds.Execute(ctx, res.CustomerID, nil, commands.Meta{}, func(c *domain.Customer) error { return c.Cancel("op", "r") })
	if !errors.Is(err, domain.ErrInvalidTransition) {
		t.Fatalf("err = %v, want ErrInvalidTransition", err)
	}
	if _, err := cmds.Load(ctx, [16]byte{1}); !errors.Is(err, commands.ErrCustomerNotFound) {
		t.Fatalf("load unknown: %v", err)
	}
}

// countingStore counts stream reads.
type countingStore struct {
	commands.CustomerStore
	mu    sync.Mutex
	reads int
}

func (s *countingStore) ReadStream(ctx context.Context, streamID string, from int64) ([]eventstore.Envelope, error) {
	s.mu.Lock()
	s.reads++
	s.mu.Unlock()
	return s.CustomerStore.ReadStream(ctx, streamID, from)
}

func (s *countingStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// TestLoadSinceTrustsARememberedHistory: where histories are trusted, a
// reaction to an event the remembered history holds reads nothing; one
// to a later event, or without trust, reads the stream, and sees what
// another process appended.
func TestLoadSinceTrustsARememberedHistory(t *testing.T) {
	ctx := context.Background()
	trusting, counted, store := newTrustingCounted(t)
	res, err := trusting.SignUp(ctx, details, commands.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := trusting.LoadSince(ctx, res.CustomerID, 2)
	if err != nil || c.Version() != 2 || counted.count() != 0 {
		t.Fatalf("remembered: version %v, %d reads, %v; want version 2 and no read", c, counted.count(), err)
	}
	// Another process moves the customer on.
	other, err := commands.New(commands.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Execute(ctx, res.CustomerID, nil, commands.Meta{}, func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk_1") }); err != nil {
		t.Fatal(err)
	}
	c, err = trusting.LoadSince(ctx, res.CustomerID, 3)
	if err != nil || c.CheckID() != "chk_1" || counted.count() != 1 {
		t.Fatalf("behind: %v, %d reads, %v; want the check after one read", c, counted.count(), err)
	}
	// Now remembered at version 3: no read for it.
	if c, err = trusting.LoadSince(ctx, res.CustomerID, 3); err != nil || c.Version() != 3 || counted.count() != 1 {
		t.Fatalf("caught up: %v, %d reads, %v", c, counted.count(), err)
	}

	distrusting, err := commands.New(commands.Config{Store: counted})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := distrusting.Load(ctx, res.CustomerID); err != nil {
		t.Fatal(err)
	}
	before := counted.count()
	if _, err := distrusting.LoadSince(ctx, res.CustomerID, 1); err != nil || counted.count() != before+1 {
		t.Fatalf("without trust: %d reads, %v; want one more read", counted.count()-before, err)
	}
}

// TestLastTraceIsTheRememberedLastEvents: the trace of the last event a
// process appended or read, without a read of its own.
func TestLastTraceIsTheRememberedLastEvents(t *testing.T) {
	cmds, store := newCommands(t)
	ctx := context.Background()
	first := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	res, err := cmds.SignUp(ctx, details, commands.Meta{Trace: first})
	if err != nil {
		t.Fatal(err)
	}
	if tr, ok := cmds.LastTrace(res.CustomerID); !ok || tr["traceparent"] != first["traceparent"] {
		t.Fatalf("after the signup: %v, %v", tr, ok)
	}
	other, err := commands.New(commands.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := other.LastTrace(res.CustomerID); ok {
		t.Fatal("a process that never saw the customer remembers a trace")
	}
	later := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01"}
	if _, err := other.Execute(ctx, res.CustomerID, nil, commands.Meta{Trace: later}, func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk_1") }); err != nil {
		t.Fatal(err)
	}
	if tr, ok := other.LastTrace(res.CustomerID); !ok || tr["traceparent"] != later["traceparent"] {
		t.Fatalf("after its own append: %v, %v", tr, ok)
	}
	if _, err := cmds.Load(ctx, res.CustomerID); err != nil {
		t.Fatal(err)
	}
	if tr, ok := cmds.LastTrace(res.CustomerID); !ok || tr["traceparent"] != later["traceparent"] {
		t.Fatalf("after reading the other's append: %v, %v", tr, ok)
	}
}

// TestAwaitRememberedHearsOfOwnAppends: a wait for news this process's own
// commands record ends with them, without reading the stream; without
// trust, or when the news does not come, it reports that done did not hold.
func TestAwaitRememberedHearsOfOwnAppends(t *testing.T) {
	ctx := context.Background()
	trusting, counted, store := newTrustingCounted(t)
	res, err := trusting.SignUp(ctx, details, commands.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	recorded := func(c *domain.Customer) bool { return c.CheckID() != "" }
	if trusting.AwaitRemembered(ctx, res.CustomerID, recorded, 10*time.Millisecond) {
		t.Fatal("the check is not recorded yet, but the wait says it is")
	}
	appended := make(chan error, 1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, err := trusting.Execute(ctx, res.CustomerID, nil, commands.Meta{}, func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk_1") })
		appended <- err
	}()
	if !trusting.AwaitRemembered(ctx, res.CustomerID, recorded, time.Minute) {
		t.Fatal("the wait did not hear of the check")
	}
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	if n := counted.count(); n != 0 {
		t.Fatalf("%d stream reads, want none", n)
	}

	plain, err := commands.New(commands.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if plain.AwaitRemembered(ctx, res.CustomerID, recorded, time.Minute) {
		t.Fatal("commands that do not trust their memory reported news from it")
	}
}

// newTrustingCounted returns commands that trust their memory over a
// store that counts stream reads, and the store under it.
func newTrustingCounted(t *testing.T) (*commands.Handler, *countingStore, *postgres.Store) {
	t.Helper()
	_, store := newCommands(t)
	counted := &countingStore{CustomerStore: store}
	trusting, err := commands.New(commands.Config{Store: counted, TrustHistories: true})
	if err != nil {
		t.Fatal(err)
	}
	return trusting, counted, store
}
