package operator_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/projections"
)

// env is a migrated database with the event store, the command side and
// the read models kept up to date by a running projector.
type env struct {
	pool  *pgxpool.Pool
	store *postgres.Store
	cmds  *commands.Handler
	proj  *projections.Projections
}

func newEnv(t *testing.T) env {
	t.Helper()
	url := pgtest.NewMigratedDatabase(t)
	pool := pgtest.NewPool(t, url, 12)
	store, err := postgres.New(pool, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cmds, err := commands.New(commands.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	proj, err := projections.New(projections.Config{Pool: pool, Source: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = proj.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return env{pool: pool, store: store, cmds: cmds, proj: proj}
}

// signUp signs a customer up: it is verifying, its check requested.
func (e env) signUp(t *testing.T, name string) uuid.UUID {
	t.Helper()
	res, err := e.cmds.SignUp(context.Background(), domain.SignupDetails{Email: name + "@example.com", Company: name,
		ContactName: "Tester", Country: "SE", Plan: domain.PlanGrowth}, commands.Meta{Actor: "client:test"})
	if err != nil {
		t.Fatal(err)
	}
	return res.CustomerID
}

// pause pauses a verifying customer with reason.
func (e env) pause(t *testing.T, id uuid.UUID, reason string) {
	t.Helper()
	_, err := e.cmds.Execute(context.Background(), id, nil, commands.Meta{Actor: "system:verification"}, func(c *domain.Customer) error {
		return c.Pause(domain.StepVerification, domain.ErrorPermanent, reason)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds, failing after a generous timeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPaused waits until the read model shows n paused customers.
func (e env) waitPaused(t *testing.T, n int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d paused customers in the read model", n), func() bool {
		f, err := e.proj.Funnel(context.Background(), projections.FunnelQuery{})
		return err == nil && f.States["paused"] == n
	})
}

func metaOf(actor string) commands.Meta { return commands.Meta{Actor: actor} }
