package main

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/messaging"
)

// TestReplaySealAnchorAndNATS runs the relay with a seal key over a seeded
// store, exports the anchor, then deletes the newest events together with
// the seals covering them, as a superuser: verify alone then sees only
// unsealed events, while verify with the anchor or with NATS fails.
func TestReplaySealAnchorAndNATS(t *testing.T) {
	e := newReplayEnv(t)
	e.waitSafe(t)
	ctx := context.Background()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := messaging.StartEmbedded(messaging.EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	relayAuth, err := srv.Credentials(string(messaging.RoleRelay)).Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := messaging.Connect(srv.ClientURL(), t.Name(), relayAuth...)
	if err != nil {
		t.Fatal(err)
	}
	// verify --nats reads the seals as the auditor.
	t.Setenv("NATS_USER", string(messaging.RoleAuditor))
	t.Setenv("NATS_PASSWORD", srv.Credentials(string(messaging.RoleAuditor)).Password)
	defer nc.Close()
	relay, err := messaging.NewRelay(messaging.RelayConfig{Store: e.store, Pool: e.store.Pool(), Conn: nc,
		Seal: &messaging.SealConfig{Store: e.store, Key: key, Interval: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	last, err := lastCommitted(ctx, e.store)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		s, _, err := e.store.LastSeal(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Cursor == last.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no seal of the whole log; last %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-done

	t.Setenv("ONBOARD_SEAL_PUBLIC_KEY", eventstore.EncodePublicKey(key.Public().(ed25519.PublicKey)))
	anchor, stderr, failed := runOnboard(t, "replay", "seal", "--export")
	if failed {
		t.Fatal(stderr)
	}
	path := filepath.Join(t.TempDir(), "anchor.json")
	if err := os.WriteFile(path, []byte(anchor), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{}, {"--anchor", path}, {"--nats", srv.ClientURL()}} {
		if out, stderr, failed := runOnboard(t, append([]string{"replay", "verify"}, args...)...); failed || !strings.Contains(out, "OK") {
			t.Fatalf("verify %v of the intact store: %s %s", args, out, stderr)
		}
	}

	conn, err := pgx.Connect(ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`SET session_replication_role = replica`,
		`DELETE FROM events WHERE (transaction_id, position) IN
			(SELECT transaction_id, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 5)`,
		`DELETE FROM seals`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, failed := runOnboard(t, "replay", "verify")
	if failed || !strings.Contains(out, "events after position 0/0 are not sealed yet") {
		t.Fatalf("verify without the anchor: %s %s", out, stderr)
	}
	for _, args := range [][]string{{"--anchor", path}, {"--nats", srv.ClientURL()}} {
		out, _, failed := runOnboard(t, append([]string{"replay", "verify"}, args...)...)
		if !failed || !strings.Contains(out, "seal_missing") || !strings.Contains(out, "log_truncated") {
			t.Fatalf("verify %v after the seals were deleted: %s", args, out)
		}
	}
}
