package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/messaging"
)

// deadLetterEnv is a migrated database, an embedded NATS server, a relay
// and a router whose handlers "billing" and "crm" fail permanently until
// fixed, with DATABASE_URL pointing at the database and NATS_URL unset.
type deadLetterEnv struct {
	natsURL string
	nats    messaging.ClientAuth // the operator's credentials
	dl      *messaging.DeadLetters
	fixed   atomic.Bool
	// events are the appended events' ids in order; each died once per
	// handler.
	events []uuid.UUID
}

const deadLetterEvents = 3

// setNATSUser gives `onboard deadletters redrive` the operator's
// credentials.
func (env *deadLetterEnv) setNATSUser(t *testing.T) {
	t.Setenv("NATS_USER", env.nats.User)
	t.Setenv("NATS_PASSWORD", env.nats.Password)
}

func newDeadLetterEnv(t *testing.T) *deadLetterEnv {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewMigratedDatabase(t)
	t.Setenv("DATABASE_URL", url)
	t.Setenv("NATS_URL", "")
	pool := pgtest.NewPool(t, url, 10)
	store, err := postgres.New(pool, postgres.Config{Channel: "onboard_events"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	srv, err := messaging.StartEmbedded(messaging.EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	// The relay and the router connect as their roles: their permissions
	// are enough for relaying, dead letters and (as operator) re-drives.
	connectAs := func(role messaging.Role) *nats.Conn {
		auth, err := srv.Credentials(string(role)).Options()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := messaging.Connect(srv.ClientURL(), t.Name()+"-"+string(role), auth...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	nc, relayConn := connectAs(messaging.RoleWorker), connectAs(messaging.RoleRelay)
	// The relay creates the streams; the worker's user may not.
	relayJS, err := jetstream.New(relayConn)
	if err != nil {
		t.Fatal(err)
	}
	if err := messaging.EnsureStreams(ctx, relayJS, messaging.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	relay, err := messaging.NewRelay(messaging.RelayConfig{Store: store, Pool: pool, Conn: relayConn,
		NotifyChannel: "onboard_events", LockRetryInterval: 100 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	router, err := messaging.NewRouter(ctx, messaging.RouterConfig{Pool: pool, Events: store, Conn: nc, Logger: log,
		MaxDeliver: 2, BackOff: []time.Duration{10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	env := &deadLetterEnv{natsURL: srv.ClientURL(), nats: srv.Credentials(string(messaging.RoleOperator)), dl: router.DeadLetters()}
	for _, name := range []string{"billing", "crm"} {
		err := router.AddHandler(ctx, name, func(context.Context, pgx.Tx, eventstore.Envelope) error {
			if env.fixed.Load() {
				return nil
			}
			// Two lines, so that list shows it folded onto one.
			return messaging.Permanent(errors.New(name + " provider said no:\nplan unknown"))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- relay.Run(runCtx) }()
	go func() { done <- router.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("relay or router: %v", err)
			}
		}
	})
	<-router.Running()

	prefix := uuid.NewString()[:8]
	for i := range deadLetterEvents {
		e := eventstore.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: "customer.test_happened", SchemaVersion: 1,
			Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), Metadata: eventstore.Metadata{Actor: "test"}}
		if _, err := store.Append(ctx, fmt.Sprintf("customer-%s-%d", prefix, i), eventstore.NoStream, []eventstore.NewEvent{e}); err != nil {
			t.Fatal(err)
		}
		env.events = append(env.events, e.ID)
	}
	env.waitFor(t, "a dead letter per event and handler", func() (bool, error) {
		got, err := env.dl.List(ctx, messaging.DeadLetterFilter{Status: messaging.DeadLetterDead})
		return len(got) == 2*deadLetterEvents, err
	})
	return env
}

// waitFor polls cond until it holds; the timeout is generous because the
// machine is shared, and no timing is asserted.
func (env *deadLetterEnv) waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// list returns the dead letters as `list --json` prints them.
func (env *deadLetterEnv) list(t *testing.T, args ...string) []deadLetterJSON {
	t.Helper()
	stdout, stderr, failed := runOnboard(t, append([]string{"deadletters", "list", "--json"}, args...)...)
	if failed {
		t.Fatalf("list %v: %s", args, stderr)
	}
	var out []deadLetterJSON
	for line := range strings.Lines(stdout) {
		var d deadLetterJSON
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("list %v: line %q: %v", args, line, err)
		}
		out = append(out, d)
	}
	return out
}

func TestDeadLettersCommands(t *testing.T) {
	env := newDeadLetterEnv(t)
	all := env.list(t)
	if len(all) != 2*deadLetterEvents {
		t.Fatalf("list --json: %d dead letters, want %d", len(all), 2*deadLetterEvents)
	}
	var billing []deadLetterJSON
	for i, d := range all {
		if i > 0 && d.ID <= all[i-1].ID {
			t.Errorf("list is not in id order: %d after %d", d.ID, all[i-1].ID)
		}
		if d.Status != messaging.DeadLetterDead || d.DeadCount != 1 || d.RedriveCount != 0 ||
			d.EventType != "customer.test_happened" || !strings.Contains(d.Error, "provider said no:\nplan unknown") {
			t.Errorf("dead letter %+v: want dead once with the handler's error", d)
		}
		if d.Handler == "billing" {
			billing = append(billing, d)
		}
	}

	t.Run("list table", func(t *testing.T) {
		stdout, stderr, failed := runOnboard(t, "deadletters", "list")
		if failed {
			t.Fatal(stderr)
		}
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if len(lines) != 1+len(all) {
			t.Fatalf("table has %d lines, want a header and %d rows:\n%s", len(lines), len(all), stdout)
		}
		for _, col := range []string{"ID", "HANDLER", "EVENT TYPE", "STREAM ID", "STATUS", "DEAD", "REDRIVES", "UPDATED AT", "ERROR"} {
			if !strings.Contains(lines[0], col) {
				t.Errorf("header %q has no %s", lines[0], col)
			}
		}
		for i, d := range all {
			row := lines[i+1]
			for _, want := range []string{strconv.FormatInt(d.ID, 10), d.Handler, d.StreamID, "dead",
				d.Handler + " provider said no: plan unknown"} {
				if !strings.Contains(row, want) {
					t.Errorf("row %q does not show %q", row, want)
				}
			}
		}
	})

	t.Run("list filters and pages", func(t *testing.T) {
		defer func(n int) { deadLetterPage = n }(deadLetterPage)
		deadLetterPage = 2 // three pages for six
		if got := env.list(t); len(got) != len(all) || got[len(got)-1].ID != all[len(all)-1].ID {
			t.Errorf("paged list: %d dead letters, want all %d", len(got), len(all))
		}
		got := env.list(t, "--handler", "billing")
		if len(got) != len(billing) {
			t.Errorf("--handler billing: %d dead letters, want %d", len(got), len(billing))
		}
		for _, d := range got {
			if d.Handler != "billing" {
				t.Errorf("--handler billing listed %s's %d", d.Handler, d.ID)
			}
		}
		if got := env.list(t, "--status", "resolved"); len(got) != 0 {
			t.Errorf("--status resolved: %d dead letters, want none", len(got))
		}
		stdout, stderr, failed := runOnboard(t, "deadletters", "list", "--json", "--limit", "3")
		if failed || strings.Count(stdout, "\n") != 3 || !strings.Contains(stderr, "raise --limit") {
			t.Errorf("--limit 3: failed %t, %d lines, stderr %q; want 3 and a note that there are more",
				failed, strings.Count(stdout, "\n"), stderr)
		}
		stdout, _, _ = runOnboard(t, "deadletters", "list", "--status", "resolved")
		if stdout != "no dead letters\n" {
			t.Errorf("empty table: %q", stdout)
		}
	})

	t.Run("show", func(t *testing.T) {
		d := billing[0]
		stdout, stderr, failed := runOnboard(t, "deadletters", "show", strconv.FormatInt(d.ID, 10))
		if failed {
			t.Fatal(stderr)
		}
		for _, want := range []string{"handler", "billing", "event id", d.EventID.String(), d.StreamID, d.Subject,
			"redrive count", "headers", "Onboard-Event-Type", "envelope",
			`"type": "customer.test_happened"`, `"stream_id": "` + d.StreamID + `"`, `"actor": "test"`, `"data": {`, `"n": `} {
			if !strings.Contains(stdout, want) {
				t.Errorf("show does not print %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("redrive one", func(t *testing.T) {
		t.Setenv("NATS_URL", env.natsURL)
		env.setNATSUser(t)
		env.fixed.Store(true)
		defer env.fixed.Store(false)
		d := billing[0]
		stdout, stderr, failed := runOnboard(t, "deadletters", "redrive", strconv.FormatInt(d.ID, 10))
		if failed || stdout != fmt.Sprintf("redriven %d (handler billing, customer.test_happened of %s)\n", d.ID, d.StreamID) {
			t.Fatalf("failed %t, stdout %q, stderr %q", failed, stdout, stderr)
		}
		env.waitFor(t, "the re-driven one to resolve", func() (bool, error) {
			got, err := env.dl.Get(context.Background(), d.ID)
			return got.Status == messaging.DeadLetterResolved && got.RedriveCount == 1, err
		})
		if got := env.list(t, "--status", "dead"); len(got) != len(all)-1 {
			t.Errorf("after one redrive: %d dead, want %d", len(got), len(all)-1)
		}
	})

	t.Run("redrive all of a handler", func(t *testing.T) {
		t.Setenv("NATS_URL", env.natsURL)
		env.setNATSUser(t)
		// Still failing: the re-driven ones die again, so each shows both
		// a redrive and a second death.
		stdout, stderr, failed := runOnboard(t, "deadletters", "redrive", "--all", "--handler", "crm")
		if failed || strings.Count(stdout, "\n") != deadLetterEvents || strings.Contains(stdout, "billing") {
			t.Fatalf("failed %t, stdout %q, stderr %q; want a line per crm dead letter", failed, stdout, stderr)
		}
		env.waitFor(t, "crm's dead letters to die again", func() (bool, error) {
			got, err := env.dl.List(context.Background(), messaging.DeadLetterFilter{Handler: "crm", Status: messaging.DeadLetterDead})
			n := 0
			for _, d := range got {
				if d.DeadCount == 2 && d.RedriveCount == 1 {
					n++
				}
			}
			return n == deadLetterEvents, err
		})
		for _, d := range env.list(t, "--handler", "billing", "--status", "dead") {
			if d.RedriveCount != 0 {
				t.Errorf("billing's %d was re-driven by --handler crm", d.ID)
			}
		}
	})
}

// TestDeadLettersBadInput: bad input fails with one clear line on stderr
// and a non-zero exit, and sends nothing.
func TestDeadLettersBadInput(t *testing.T) {
	env := newDeadLetterEnv(t)
	first := env.list(t)[0]
	id := strconv.FormatInt(first.ID, 10)
	tests := []struct {
		args     []string
		natsURL  string
		want     string
		password string // instead of the operator's
	}{
		{[]string{"deadletters", "bogus"}, "", `unknown deadletters command "bogus"`, ""},
		{[]string{"deadletters", "list", "--status", "gone"}, "", `--status "gone": want dead, redriven or resolved`, ""},
		{[]string{"deadletters", "list", "--limit", "0"}, "", "--limit 0: list at least 1", ""},
		{[]string{"deadletters", "list", "extra"}, "", `unknown command "extra"`, ""},
		{[]string{"deadletters", "show"}, "", "want one dead letter id, got 0 arguments", ""},
		{[]string{"deadletters", "show", "abc"}, "", `dead letter id "abc" is not a positive number`, ""},
		{[]string{"deadletters", "show", "999999"}, "", "dead letter 999999: messaging: dead letter not found", ""},
		{[]string{"deadletters", "redrive"}, env.natsURL, "name dead letter ids or give --all", ""},
		{[]string{"deadletters", "redrive", id, "--all"}, env.natsURL, "not both", ""},
		{[]string{"deadletters", "redrive", id, "--handler", "crm"}, env.natsURL, "--handler selects with --all only", ""},
		{[]string{"deadletters", "redrive", "-3"}, env.natsURL, "unknown shorthand flag", ""},
		{[]string{"deadletters", "redrive", "0"}, env.natsURL, `dead letter id "0" is not a positive number`, ""},
		{[]string{"deadletters", "redrive", id}, "", "set NATS_URL", ""},
		{[]string{"deadletters", "redrive", "--all"}, "", "set NATS_URL", ""},
		{[]string{"deadletters", "redrive", "nats://127.0.0.1:1"}, "", `dead letter id "nats://127.0.0.1:1" is not a positive number`, ""},
		{[]string{"deadletters", "redrive", id}, "nats://127.0.0.1:1", "connect to nats at nats://127.0.0.1:1", ""},
		{[]string{"deadletters", "redrive", id}, env.natsURL, "Authorization Violation", "not-the-password"},
		// The known id comes first: it must not be sent when a later one
		// is unknown.
		{[]string{"deadletters", "redrive", id, "999999"}, env.natsURL, "dead letter 999999: messaging: dead letter not found", ""},
	}
	for _, tt := range tests {
		name := strings.Join(tt.args[1:], " ")
		if tt.natsURL == "" {
			name += " without NATS_URL"
		}
		t.Run(name, func(t *testing.T) {
			t.Setenv("NATS_URL", tt.natsURL)
			env.setNATSUser(t)
			if tt.password != "" {
				t.Setenv("NATS_PASSWORD", tt.password)
			}
			stdout, stderr, failed := runOnboard(t, tt.args...)
			if !failed {
				t.Fatalf("succeeded; stdout %q", stdout)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "onboard: ") {
				t.Fatalf("stderr is not one line: %q", stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q does not say %q", stderr, tt.want)
			}
		})
	}
	got, err := env.dl.Get(context.Background(), first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != messaging.DeadLetterDead || got.RedriveCount != 0 {
		t.Errorf("dead letter %d after bad input: status %s, redrive count %d; want untouched", first.ID, got.Status, got.RedriveCount)
	}
}
