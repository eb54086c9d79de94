package commands_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
)

func newEncryptingCommands(t testing.TB) (*commands.Handler, *postgres.Store, *postgres.KeyStore) {
	t.Helper()
	ctx := context.Background()
	store, err := postgres.Open(ctx, pgtest.NewMigratedDatabase(t), postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	keys, err := postgres.NewKeyStore(store.Pool(), bytes.Repeat([]byte{3}, postgres.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := commands.New(commands.Config{Store: store, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return cmds, store, keys
}

// storedText is every stored byte of the customer's stream and of the
// reservations, lower-cased.
func storedText(t *testing.T, store *postgres.Store, id uuid.UUID) string {
	t.Helper()
	ctx := context.Background()
	envs, err := store.ReadStream(ctx, commands.StreamID(id), 1)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range envs {
		b.Write(e.Data)
	}
	rows, err := store.Pool().Query(ctx, `SELECT value FROM reservations`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		b.WriteString(v)
	}
	return strings.ToLower(b.String())
}

func TestSignUpEncryptsPersonalDataAndReservesAKeyedHash(t *testing.T) {
	cmds, store, keys := newEncryptingCommands(t)
	ctx := context.Background()
	res, err := cmds.SignUp(ctx, details, commands.Meta{Actor: "client:a"})
	if err != nil {
		t.Fatal(err)
	}
	text := storedText(t, store, res.CustomerID)
	for _, plain := range []string{details.Email, details.Company, details.ContactName} {
		if strings.Contains(text, strings.ToLower(plain)) {
			t.Fatalf("the store holds %q in plain text", plain)
		}
	}
	// The events read back decrypt with the customer's key.
	c, err := commands.LoadCustomer(ctx, store, res.CustomerID)
	if err != nil {
		t.Fatal(err)
	}
	key, err := keys.DataKey(ctx, commands.StreamID(res.CustomerID))
	if err != nil || key == nil {
		t.Fatalf("key %x, %v", key, err)
	}
	d, err := c.Details().Decrypt(res.CustomerID, key)
	if err != nil || d.Email != details.Email || d.ContactName != details.ContactName {
		t.Fatalf("decrypted %+v, %v", d, err)
	}
	// The keyed hash still keeps the email unique.
	again := details
	again.Email = " GRACE@Example.com"
	if _, err := cmds.SignUp(ctx, again, commands.Meta{}); !errors.Is(err, commands.ErrEmailTaken) {
		t.Fatalf("second signup: %v", err)
	}
}

func TestEraseCancelsDestroysTheKeyAndReleasesTheEmail(t *testing.T) {
	cmds, store, keys := newEncryptingCommands(t)
	ctx := context.Background()
	res, err := cmds.SignUp(ctx, details, commands.Meta{Actor: "client:a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmds.Erase(ctx, res.CustomerID, "", "", commands.Meta{}); !errors.Is(err, domain.ErrValidation) {
		t.Fatalf("erasure without operator and reason: %v", err)
	}
	erased, err := cmds.Erase(ctx, res.CustomerID, "op@example.com", "art. 17 request", commands.Meta{Actor: "operator:op"})
	if err != nil {
		t.Fatal(err)
	}
	// Verifying: cancelled first, with nothing to undo, then erased.
	var types []string
	for _, e := range erased.Events {
		types = append(types, e.EventType())
	}
	want := []string{domain.TypeCancellationRequested, domain.TypeCancelled, domain.TypePersonalDataErased}
	if strings.Join(types, " ") != strings.Join(want, " ") || erased.State != domain.StateCancelled {
		t.Fatalf("erasure raised %v in %s, want %v in cancelled", types, erased.State, want)
	}
	if key, err := keys.DataKey(ctx, commands.StreamID(res.CustomerID)); key != nil || err != nil {
		t.Fatalf("key after erasure: %x, %v", key, err)
	}
	c, err := commands.LoadCustomer(ctx, store, res.CustomerID)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := c.Details().Decrypt(res.CustomerID, nil); err != nil || d.Email != domain.Erased {
		t.Fatalf("details after erasure: %+v, %v", d, err)
	}
	if err := store.Verify(ctx, commands.StreamID(res.CustomerID)); err != nil {
		t.Fatalf("the chain after erasure: %v", err)
	}
	// Again: refused as a duplicate, the key stays destroyed.
	if _, err := cmds.Erase(ctx, res.CustomerID, "op@example.com", "again", commands.Meta{}); !errors.Is(err, domain.ErrDuplicateCommand) {
		t.Fatalf("second erasure: %v", err)
	}
	// The email is free again, for a new customer with a key of its own.
	again, err := cmds.SignUp(ctx, details, commands.Meta{})
	if err != nil {
		t.Fatalf("signup after erasure: %v", err)
	}
	if again.CustomerID == res.CustomerID {
		t.Fatal("same id")
	}
	if _, err := keys.CreateDataKey(ctx, commands.StreamID(res.CustomerID)); !errors.Is(err, eventstore.ErrKeyDestroyed) {
		t.Fatalf("a key again for the erased customer: %v", err)
	}
}

// newBenchCommands is a command handler that encrypts personal data, or
// stores it in plain text.
func newBenchCommands(b *testing.B, encrypted bool) *commands.Handler {
	cmds, store, _ := newEncryptingCommands(b)
	if encrypted {
		return cmds
	}
	plain, err := commands.New(commands.Config{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	return plain
}
