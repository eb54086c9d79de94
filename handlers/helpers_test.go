package handlers_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/external"
	"github.com/onboard/onboard/handlers"
)

// newTrustingCounted returns commands that trust their memory over a
// store that counts stream reads, and the store under it.
func newTrustingCounted(t *testing.T) (*handlers.Commands, *countingStore, *postgres.Store) {
	t.Helper()
	_, store := newCommands(t)
	counted := &countingStore{CustomerStore: store}
	trusting, err := handlers.NewCommands(handlers.CommandsConfig{Store: counted, TrustHistories: true})
	if err != nil {
		t.Fatal(err)
	}
	return trusting, counted, store
}

// newManager returns a process manager over a fresh store, with trusting
// commands, timers and providers configured by at(provider).
func newManager(t *testing.T, at func(provider string) external.Config) (*handlers.ProcessManager, *handlers.Commands, *handlers.Timers, *postgres.Store) {
	t.Helper()
	_, store := newCommands(t)
	cmds, err := handlers.NewCommands(handlers.CommandsConfig{Store: store, TrustHistories: true})
	if err != nil {
		t.Fatal(err)
	}
	timers := handlers.NewTimers(store.Pool())
	clients, err := external.NewClients(at("kyc"), at("payments"), at("provisioning"), at("crm"), at("email"))
	if err != nil {
		t.Fatal(err)
	}
	pm, err := handlers.NewProcessManager(handlers.ProcessConfig{Commands: cmds, Providers: clients.ForHandlers(), Timers: timers,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return pm, cmds, timers, store
}
