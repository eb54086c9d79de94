package process_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers"
)

// atBilling signs a customer up and brings it to its first billing
// attempt, in flight.
func atBilling(t *testing.T, cmds *commands.Handler, email string) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	d := details
	d.Email = email
	res, err := cmds.SignUp(ctx, d, commands.Meta{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.CustomerID
	steps := []func(c *domain.Customer) error{
		// The signup requested verification.
		func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk-"+email) },
		func(c *domain.Customer) error {
			if err := c.RecordVerdict("chk-"+email, true, ""); err != nil {
				return err
			}
			_, err := c.RequestStep(domain.StepBilling)
			return err
		},
	}
	for _, f := range steps {
		if _, err := cmds.Execute(ctx, id, nil, commands.Meta{Actor: "test"}, f); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// block makes the customer wait on payments, as the process managers do,
// and records its wait.
func block(t *testing.T, cmds *commands.Handler, o *process.Outages, id uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	if _, err := cmds.Execute(ctx, id, nil, commands.Meta{Actor: "test"}, func(c *domain.Customer) error {
		return c.Block(domain.StepBilling, c.InFlight(domain.StepBilling), "payments", "circuit breaker open")
	}); err != nil {
		t.Fatal(err)
	}
	if err := o.Wait(ctx, id, "payments", domain.StepBilling, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func providerEvents(t *testing.T, store *postgres.Store, provider string) []string {
	t.Helper()
	envs, err := store.ReadStream(context.Background(), domain.ProviderStreamID(provider), 1)
	if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range envs {
		out = append(out, e.Type)
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutageCycle: two supervisors run on one database (two workers); one
// alert is raised for the outage. The oldest waiting customer is resumed as
// a probe; once its call is answered the provider has recovered, the others
// resume oldest first, and the outage ends when nobody waits. A customer
// that starts to wait right after is a straggler, resumed without a new
// alert.
func TestOutageCycle(t *testing.T) {
	cmds, store := newCommands(t)
	var alerts atomic.Int32
	newOutages := func() *process.Outages {
		o, err := process.NewOutages(process.OutageConfig{Pool: store.Pool(), Store: store, Commands: cmds, Providers: []string{"payments"},
			ResumeRate: 200, ProbeEvery: 50 * time.Millisecond, Tick: 20 * time.Millisecond,
			OnAlert: func(string, int) { alerts.Add(1) }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	a, b := newOutages(), newOutages()
	var ids []uuid.UUID
	for _, email := range []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"} {
		id := atBilling(t, cmds, email)
		block(t, cmds, a, id)
		ids = append(ids, id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, o := range []*process.Outages{a, b} {
		go func() { _ = o.Run(ctx) }()
	}
	load := func(id uuid.UUID) *domain.Customer {
		c, err := cmds.Load(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The probe: the oldest customer resumes with its billing attempt
	// given back and asked again.
	eventually(t, "the oldest customer resumed as the probe", func() bool {
		c := load(ids[0])
		return c.BlockedOn() == "" && c.InFlight(domain.StepBilling) == 1
	})
	if got := providerEvents(t, store, "payments"); !slices.Equal(got, []string{domain.TypeOutageStarted}) {
		t.Fatalf("payments stream %v, want one outage_started", got)
	}
	for _, id := range ids[1:] {
		if load(id).BlockedOn() != "payments" {
			t.Fatalf("%s resumed while payments is down", id)
		}
	}
	// The probe's call is answered: payments is back.
	if _, err := cmds.Execute(context.Background(), ids[0], nil, commands.Meta{Actor: "test"}, func(c *domain.Customer) error {
		return c.RecordStepSucceeded(domain.StepBilling, 1, map[string]string{"account_id": "acct"})
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{domain.TypeOutageStarted, domain.TypeOutageRecovered, domain.TypeOutageEnded}
	eventually(t, "the outage's end", func() bool { return slices.Equal(providerEvents(t, store, "payments"), want) })
	// Oldest first: the positions of the resumes follow the waits' order.
	var last int64
	for _, id := range ids[1:] {
		envs, err := store.ReadStream(context.Background(), commands.StreamID(id), 1)
		if err != nil {
			t.Fatal(err)
		}
		var at int64
		for _, e := range envs {
			if e.Type == domain.TypeUnblocked {
				at = e.Position
			}
		}
		if at == 0 || at < last {
			t.Errorf("customer %s resumed at position %d, after %d: not oldest first", id, at, last)
		}
		last = at
		if c := load(id); c.BlockedOn() != "" || c.InFlight(domain.StepBilling) != 1 {
			t.Errorf("customer %s: blocked on %q, billing in flight %d", id, c.BlockedOn(), c.InFlight(domain.StepBilling))
		}
	}
	// A straggler (another worker's breaker still open) that starts to
	// wait just after the outage resumes without a second alert.
	late := atBilling(t, cmds, "late@example.com")
	block(t, cmds, a, late)
	eventually(t, "the straggler resumed", func() bool { return load(late).BlockedOn() == "" })
	if got := providerEvents(t, store, "payments"); !slices.Equal(got, want) {
		t.Errorf("payments stream %v after a straggler, want %v", got, want)
	}
	if n := alerts.Load(); n != 1 {
		t.Errorf("%d alerts, want 1", n)
	}
}

// TestWhoWaits: with an Outages board, a transient failure while payments
// is down makes the customer wait without spending its attempt, and a
// declined card still pauses it.
func TestWhoWaits(t *testing.T) {
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write([]byte(`{"error":{"type":"card_error","code":"card_declined","message":"declined"}}`))
	}))
	t.Cleanup(srv.Close)
	_, store := newCommands(t)
	cmds, err := commands.New(commands.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	conf := func(string) providers.Config {
		return providers.Config{BaseURL: srv.URL, Policy: providers.Policy{MaxAttempts: 1, Breaker: providers.BreakerPolicy{FailureThreshold: 100}}}
	}
	clients, err := providers.NewClients(conf(""), conf(""), conf(""), conf(""), conf(""))
	if err != nil {
		t.Fatal(err)
	}
	outages, err := process.NewOutages(process.OutageConfig{Pool: store.Pool(), Store: store, Commands: cmds})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := process.New(process.Config{Commands: cmds, Providers: process.ProvidersOf(clients), Timers: process.NewTimers(store.Pool()),
		Outages: outages, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Another process found payments down.
	data := []byte(`{"provider":"payments","waiting":1}`)
	if _, err := store.Append(ctx, domain.ProviderStreamID("payments"), eventstore.NoStream,
		[]eventstore.NewEvent{{ID: uuid.Must(uuid.NewV7()), Type: domain.TypeOutageStarted, SchemaVersion: 1, Data: data}}); err != nil {
		t.Fatal(err)
	}
	perform := func(id uuid.UUID) *domain.Customer {
		t.Helper()
		envs, err := store.ReadStream(ctx, commands.StreamID(id), 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := pm.Handle(ctx, envs[len(envs)-1]); err != nil { // the billing request
			t.Fatal(err)
		}
		c, err := cmds.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	status.Store(http.StatusServiceUnavailable)
	c := perform(atBilling(t, cmds, "waits@example.com"))
	if c.BlockedOn() != "payments" || c.Attempt(domain.StepBilling) != 0 || c.State() != domain.StateProvisioning {
		t.Errorf("503 while down: blocked on %q, attempt %d, state %s; want payments, 0, provisioning", c.BlockedOn(), c.Attempt(domain.StepBilling), c.State())
	}

	status.Store(http.StatusPaymentRequired)
	c = perform(atBilling(t, cmds, "declined@example.com"))
	envs, _ := store.ReadStream(ctx, commands.StreamID(c.ID()), 1)
	if err := pm.Handle(ctx, envs[len(envs)-1]); err != nil { // the failure: pause
		t.Fatal(err)
	}
	c, _ = cmds.Load(ctx, c.ID())
	if c.State() != domain.StatePaused || c.BlockedOn() != "" {
		t.Errorf("a declined card while payments is down: state %s, blocked on %q; want paused", c.State(), c.BlockedOn())
	}
}
