package commands_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
)

// TestRememberedHistoriesFollowOtherWriters: two Commands over one store
// stand for two processes. Each remembers what it read and appended; each
// still sees what the other appended since, decides on the whole history,
// and a small memory forgets customers without losing anything. The second
// trusts its memory (decides before reading), which is always one event
// behind here: its refusals and conflicts must be checked on the stream.
func TestRememberedHistoriesFollowOtherWriters(t *testing.T) {
	a, store := newCommands(t)
	b, err := commands.New(commands.Config{Store: store, MaxConflictRetries: 50, Histories: 2, TrustHistories: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []domain.Customer
	for i := range 5 {
		d := details
		d.Email = fmt.Sprintf("writer%d@example.com", i)
		res, err := a.SignUp(ctx, d, commands.Meta{Actor: "client:a"})
		if err != nil {
			t.Fatal(err)
		}
		c, err := b.Load(ctx, res.CustomerID) // b remembers at most two
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, *c)
	}
	steps := []func(*domain.Customer) error{
		func(c *domain.Customer) error { return c.RecordCheckStarted(1, "check-1") },
		func(c *domain.Customer) error { return c.RecordVerdict("check-1", true, "") },
		func(c *domain.Customer) error { _, err := c.RequestStep(domain.StepBilling); return err },
	}
	// The writers take turns, concurrently across customers: each
	// decision needs the other's last event.
	var wg sync.WaitGroup
	for _, c := range ids {
		wg.Go(func() {
			for i, step := range steps {
				w := []*commands.Handler{a, b}[i%2]
				if _, err := w.Execute(ctx, c.ID(), nil, commands.Meta{Actor: "system:test"}, step); err != nil {
					t.Errorf("%s step %d: %v", c.ID(), i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, c := range ids {
		want, err := commands.LoadCustomer(ctx, store, c.ID())
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []*commands.Handler{a, b} {
			got, err := w.Load(ctx, c.ID())
			if err != nil {
				t.Fatal(err)
			}
			if got.Version() != 5 || !reflect.DeepEqual(got.Snapshot(), want.Snapshot()) {
				t.Errorf("%s: remembered load at v%d %+v, the stream says v%d %+v", c.ID(), got.Version(), got.Snapshot(), want.Version(), want.Snapshot())
			}
		}
	}
}

// TestTerminalCustomersAreForgotten: a process that remembers the
// histories of its customers forgets each one that reaches a terminal
// state (memory that would otherwise hold every finished customer up to
// the limit), waking whoever waits for news of it; a later command reads
// the stream.
func TestTerminalCustomersAreForgotten(t *testing.T) {
	ctx := context.Background()
	trusting, counted, _ := newTrustingCounted(t)
	res, err := trusting.SignUp(ctx, details, commands.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := trusting.LastTrace(res.CustomerID); !ok {
		t.Fatal("the signed-up customer is not remembered")
	}
	waited := make(chan bool, 1)
	go func() {
		recorded := func(c *domain.Customer) bool { return c.CheckID() != "" }
		waited <- trusting.AwaitRemembered(ctx, res.CustomerID, recorded, 10*time.Minute)
	}()
	cancelled, err := trusting.Execute(ctx, res.CustomerID, nil, commands.Meta{}, func(c *domain.Customer) error { return c.Cancel("op", "r") })
	if err != nil || cancelled.State != domain.StateCancelled {
		t.Fatalf("cancel: %+v, %v", cancelled, err)
	}
	if _, ok := trusting.LastTrace(res.CustomerID); ok {
		t.Error("the cancelled customer is still remembered")
	}
	select {
	case ok := <-waited:
		if ok {
			t.Error("the wait reports the check recorded")
		}
	case <-time.After(time.Minute):
		t.Fatal("the wait for news of the customer did not end when it was forgotten")
	}
	before := counted.count()
	c, err := trusting.LoadSince(ctx, res.CustomerID, cancelled.Version)
	if err != nil || c.State() != domain.StateCancelled || counted.count() != before+1 {
		t.Fatalf("after the cancel: %v, %d reads, %v; want cancelled after one read", c, counted.count()-before, err)
	}
	if _, ok := trusting.LastTrace(res.CustomerID); ok {
		t.Error("reading the cancelled customer remembered it again")
	}
}
