package process_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers"
)

// newCommands returns commands over a fresh store, and the store.
func newCommands(t *testing.T) (*commands.Handler, *postgres.Store) {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewMigratedDatabase(t)
	store, err := postgres.Open(ctx, url, postgres.Config{})
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

// newEncryptingCommands is newCommands with personal data encrypted under a
// key store.
func newEncryptingCommands(t *testing.T) (*commands.Handler, *postgres.Store, *postgres.KeyStore) {
	t.Helper()
	_, store := newCommands(t)
	keys, err := postgres.NewKeyStore(store.Pool(), bytes.Repeat([]byte{5}, postgres.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := commands.New(commands.Config{Store: store, MaxConflictRetries: 50, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return cmds, store, keys
}

var details = domain.SignupDetails{Email: "grace@example.com", Company: "Navy", ContactName: "Grace", Country: "US", Plan: domain.PlanEnterprise}

// newManager returns a process manager over a fresh store, with trusting
// commands, migrated timers and providers configured by at(provider).
func newManager(t *testing.T, at func(provider string) providers.Config) (*process.Manager, *commands.Handler, *process.Timers, *postgres.Store) {
	t.Helper()
	_, store := newCommands(t)
	cmds, err := commands.New(commands.Config{Store: store, TrustHistories: true})
	if err != nil {
		t.Fatal(err)
	}
	timers := process.NewTimers(store.Pool())
	clients, err := providers.NewClients(at("kyc"), at("payments"), at("provisioning"), at("crm"), at("email"))
	if err != nil {
		t.Fatal(err)
	}
	pm, err := process.New(process.Config{Commands: cmds, Providers: process.ProvidersOf(clients), Timers: timers,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return pm, cmds, timers, store
}
