package process_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

// forgetfulStore stands for a database that crashes after a Deferred
// append committed and before it was flushed: while forget is set, it
// answers a Deferred append as committed and stores nothing. It records
// whether each append it saw was Deferred.
type forgetfulStore struct {
	commands.CustomerStore
	mu       sync.Mutex
	forget   bool
	deferred []bool
}

func (s *forgetfulStore) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.NewEvent, opts ...eventstore.AppendOption) (eventstore.AppendResult, error) {
	o := eventstore.ApplyAppendOptions(streamID, opts...)
	s.mu.Lock()
	s.deferred = append(s.deferred, o.Deferred)
	lost := s.forget && o.Deferred
	s.mu.Unlock()
	if !lost {
		return s.CustomerStore.Append(ctx, streamID, expected, events, opts...)
	}
	first := int64(expected) + 1
	res := eventstore.AppendResult{StreamID: streamID, TransactionID: 1, FirstVersion: first, LastVersion: first + int64(len(events)) - 1}
	for i := range events {
		res.Positions = append(res.Positions, int64(1_000_000+i))
	}
	return res, nil
}

func (s *forgetfulStore) seen() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.deferred...)
}

// TestRedeliveryAfterLostDeferredAppendDoesTheStepAgain: a process
// manager's reaction appends Deferred (the router makes it durable before
// the ack); a database crash takes the append back, so the message comes
// again. The commands still remember the lost success: deciding on that
// memory, the redelivery would find the step answered and do nothing, and
// the customer would wait for ever. With ReadFromStore it decides on the
// stream, calls the provider again with the same idempotency key (one
// billing account in the ledger) and records the success for good.
func TestRedeliveryAfterLostDeferredAppendDoesTheStepAgain(t *testing.T) {
	ctx := context.Background()
	_, store := newCommands(t)
	forgetful := &forgetfulStore{CustomerStore: store}
	cmds, err := commands.New(commands.Config{Store: forgetful, TrustHistories: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sim.Config{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	at := func(p string) providers.Config { return providers.Config{BaseURL: srv.URL + "/" + p} }
	clients, err := providers.NewClients(at("kyc"), at("payments"), at("provisioning"), at("crm"), at("email"))
	if err != nil {
		t.Fatal(err)
	}
	timers := process.NewTimers(store.Pool())
	pm, err := process.New(process.Config{Commands: cmds, Providers: process.ProvidersOf(clients), Timers: timers,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}

	res, err := cmds.SignUp(ctx, details, commands.Meta{Actor: "client:test"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.CustomerID
	if _, err := cmds.Execute(ctx, id, nil, commands.Meta{Actor: "test"}, func(c *domain.Customer) error {
		if err := c.RecordCheckStarted(1, "chk-1"); err != nil {
			return err
		}
		if err := c.RecordVerdict("chk-1", true, ""); err != nil {
			return err
		}
		commands.RequestNext(c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stream, err := store.ReadStream(ctx, commands.StreamID(id), 1)
	if err != nil {
		t.Fatal(err)
	}
	request := stream[len(stream)-1]
	if request.Type != domain.TypeStepRequested {
		t.Fatalf("the customer's last event is %s, want the billing request", request.Type)
	}

	forgetful.mu.Lock()
	forgetful.forget = true
	forgetful.mu.Unlock()
	if err := pm.Handle(commands.DeferAppends(ctx), request); err != nil {
		t.Fatal(err)
	}
	if seen := forgetful.seen(); !seen[len(seen)-1] {
		t.Fatal("the reaction under DeferAppends appended without eventstore.Deferred")
	}
	forgetful.mu.Lock()
	forgetful.forget = false
	forgetful.mu.Unlock()

	if err := pm.Handle(commands.ReadFromStore(commands.DeferAppends(ctx)), request); err != nil {
		t.Fatal(err)
	}
	c, err := commands.LoadCustomer(ctx, store, id)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Snapshot().Steps[1].Succeeded {
		t.Fatalf("after the redelivery billing is not recorded as succeeded: the customer is %s at %s, version %d", c.State(), c.CurrentStep(), c.Version())
	}
	if n := s.Ledger().Customers[id.String()].BillingAccounts; n != 1 {
		t.Errorf("%d billing accounts for the customer, want 1: the second call must reuse the first's idempotency key", n)
	}
	// The commands that remembered the lost append learn the stored
	// stream again on their next decision, without ReadFromStore.
	again, err := cmds.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if again.Version() != c.Version() {
		t.Errorf("the commands load version %d, the store holds %d", again.Version(), c.Version())
	}
}
