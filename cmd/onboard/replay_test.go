package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/projections/projectiontest"
)

// runOnboard runs the binary's command tree in-process as main does:
// stdout, stderr (where main prints a failed command's error) and whether
// the exit code would be non-zero.
func runOnboard(t *testing.T, args ...string) (stdout, stderr string, failed bool) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		if !errors.As(err, new(configErrors)) && strings.Contains(err.Error(), "\n") {
			t.Errorf("onboard %v: the error spans lines: %q", args, err)
		}
		printError(&errb, err)
		failed = true
	}
	return out.String(), errb.String(), failed
}

// replayEnv is a migrated database with seeded customers, DATABASE_URL
// pointing at it.
type replayEnv struct {
	url   string
	store *postgres.Store
	ids   []uuid.UUID
}

func newReplayEnv(t *testing.T) replayEnv {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewMigratedDatabase(t)
	t.Setenv("DATABASE_URL", url)
	store, err := postgres.Open(ctx, url, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	ids, err := projectiontest.Seed(ctx, store, projectiontest.Config{Customers: 12, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	return replayEnv{url: url, store: store, ids: ids}
}

// waitSafe waits until every committed event can be read through the safe
// horizon, which transactions of other tests in the cluster hold back.
func (e replayEnv) waitSafe(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for {
		last, err := lastCommitted(ctx, e.store)
		if err != nil {
			t.Fatal(err)
		}
		head, err := e.store.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if head.Compare(last) >= 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReplayBadInput: every subcommand's bad input fails with one clear
// line on stderr naming what is wrong, and a non-zero exit.
func TestReplayBadInput(t *testing.T) {
	e := newReplayEnv(t)
	id := e.ids[0].String()
	unknown := uuid.Must(uuid.NewV7()).String()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"replay", "bogus"}, `unknown replay command "bogus"`},
		{[]string{"replay", "customer"}, "want one customer id, got 0 arguments"},
		{[]string{"replay", "customer", "not-a-uuid"}, `customer id "not-a-uuid" is not a UUID`},
		{[]string{"replay", "customer", unknown}, "customer " + unknown + ": customer not found"},
		{[]string{"replay", "customer", id, "--at", "yesterday"}, `--at "yesterday" is not an RFC 3339 time`},
		{[]string{"replay", "customer", id, "--at", "2020-01-01T00:00:00Z"}, "did not exist yet at 2020-01-01T00:00:00Z"},
		{[]string{"replay", "customer", id, "--version", "0"}, "--version 0: versions start at 1"},
		{[]string{"replay", "customer", id, "--version", "9999"}, "version 9999 does not exist"},
		{[]string{"replay", "customer", id, "--version", "x"}, `invalid argument "x" for "--version"`},
		{[]string{"replay", "customer", id, "--version", "1", "--at", "2026-01-01T00:00:00Z"}, "give --at or --version, not both"},
		{[]string{"replay", "verify", "--customer", "nope"}, `customer id "nope" is not a UUID`},
		{[]string{"replay", "verify", "--customer", unknown}, "customer not found"},
		{[]string{"replay", "verify", "extra"}, `unknown command "extra"`},
		{[]string{"replay", "export", "--format", "xml"}, `--format: unknown export format "xml": want jsonl or csv`},
		{[]string{"replay", "export", "--from", "last week"}, `--from "last week" is not an RFC 3339 time`},
		{[]string{"replay", "export", "--from", "2026-02-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"}, "is not before to"},
		{[]string{"replay", "export", "--customer", unknown}, "customer not found"},
		{[]string{"replay", "rebuild", "nope"}, `unknown projection "nope"`},
		{[]string{"replay", "rebuild"}, "name one projection (customers, provider_stats) or give --all"},
		{[]string{"replay", "rebuild", "customers", "--all"}, "name one projection"},
		{[]string{"replay", "diff", "nope"}, `unknown projection "nope"`},
		{[]string{"replay", "diff"}, "want one projection"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[1:], " "), func(t *testing.T) {
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
}

func TestReplaySubcommands(t *testing.T) {
	e := newReplayEnv(t)
	id := e.ids[0]

	t.Run("customer", func(t *testing.T) {
		stdout, stderr, failed := runOnboard(t, "replay", "customer", id.String())
		if failed || !strings.Contains(stdout, "VERSION") || !strings.Contains(stdout, "signed_up.v1") {
			t.Fatalf("failed %t, stdout %q, stderr %q", failed, stdout, stderr)
		}
		stdout, _, failed = runOnboard(t, "replay", "customer", id.String(), "--version", "1", "--json")
		var rep audit.Replay
		if failed || json.Unmarshal([]byte(stdout), &rep) != nil || len(rep.Timeline) != 1 || rep.Customer.State != "pending" {
			t.Fatalf("--version 1 --json: failed %t, %q", failed, stdout)
		}
		at := rep.Timeline[0].RecordedAt.Format(time.RFC3339Nano)
		stdout, _, failed = runOnboard(t, "replay", "customer", id.String(), "--at", at)
		if failed || !strings.Contains(stdout, "state pending") {
			t.Fatalf("--at %s: failed %t, %q", at, failed, stdout)
		}
	})

	t.Run("verify", func(t *testing.T) {
		stdout, stderr, failed := runOnboard(t, "replay", "verify")
		if failed || !strings.Contains(stdout, "streams") || !strings.HasSuffix(stdout, ": OK\n") {
			t.Fatalf("failed %t, stdout %q, stderr %q", failed, stdout, stderr)
		}
		stdout, _, failed = runOnboard(t, "replay", "verify", "--customer", id.String())
		if failed || !strings.Contains(stdout, "in 1 streams") {
			t.Fatalf("--customer: failed %t, %q", failed, stdout)
		}
	})

	t.Run("export", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "audit.csv")
		stdout, stderr, failed := runOnboard(t, "replay", "export", "--format", "csv", "--out", out)
		if failed || !strings.HasPrefix(stdout, "exported ") {
			t.Fatalf("failed %t, stdout %q, stderr %q", failed, stdout, stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil || !strings.HasPrefix(string(b), "position,transaction_id,stream_id") {
			t.Fatalf("%v: %.100q", err, b)
		}
		stdout, _, failed = runOnboard(t, "replay", "export", "--customer", id.String())
		if failed || !strings.HasPrefix(stdout, `{"position":`) {
			t.Fatalf("jsonl to stdout: failed %t, %.100q", failed, stdout)
		}
	})

	t.Run("rebuild and diff", func(t *testing.T) {
		e.waitSafe(t)
		stdout, stderr, failed := runOnboard(t, "replay", "rebuild", "--all")
		if failed || strings.Count(stdout, "rebuilt ") != 2 || !strings.Contains(stdout, "events/s") {
			t.Fatalf("failed %t, stdout %q, stderr %q", failed, stdout, stderr)
		}
		for _, name := range []string{"customers", "provider_stats"} {
			stdout, stderr, failed = runOnboard(t, "replay", "diff", name)
			if failed || !strings.Contains(stdout, "0 differences") {
				t.Fatalf("diff %s: failed %t, stdout %q, stderr %q", name, failed, stdout, stderr)
			}
		}
		if _, err := e.store.Pool().Exec(context.Background(), `UPDATE customer_summary SET state = 'active' WHERE id = $1 AND state <> 'active'`, id); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.Pool().Exec(context.Background(), `UPDATE customer_summary SET company = 'Tampered' WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, failed = runOnboard(t, "replay", "diff", "customers")
		if !failed || !strings.Contains(stdout, id.String()) || !strings.Contains(stderr, "customers differs from a replay of the log") {
			t.Fatalf("diff after tampering: failed %t, stdout %q, stderr %q", failed, stdout, stderr)
		}
	})
}

// TestReplayVerifyReportsTampering: the CLI names the tampered stream and
// version and exits non-zero.
func TestReplayVerifyReportsTampering(t *testing.T) {
	e := newReplayEnv(t)
	ctx := context.Background()
	var stream string
	if err := e.store.Pool().QueryRow(ctx, `SELECT stream_id FROM events WHERE version = 2 LIMIT 1`).Scan(&stream); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, sql := range []string{
			`ALTER TABLE events DISABLE TRIGGER USER`,
			`UPDATE events SET correlation_id = 'forged' WHERE stream_id = '` + stream + `' AND version = 2`,
			`ALTER TABLE events ENABLE TRIGGER USER`,
		} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, failed := runOnboard(t, "replay", "verify")
	want := "FAIL " + stream + " version 2: content: content does not match its hash\n"
	if !failed || !strings.HasPrefix(stdout, want) || !strings.Contains(stdout, "1 FAILED") {
		t.Fatalf("failed %t, stdout %q, want it to start with %q", failed, stdout, want)
	}
	// The last line: a line about waiting for other transactions may
	// precede it on a busy database cluster.
	if !strings.HasSuffix(stderr, fmt.Sprintf("\nonboard: 1 of %d streams failed verification\n", len(e.ids))) &&
		stderr != fmt.Sprintf("onboard: 1 of %d streams failed verification\n", len(e.ids)) {
		t.Fatalf("stderr %q", stderr)
	}
}

// TestReplayReadsOnly: the audit commands never create or migrate a table.
// On a database without the event store they fail with one line that
// names it, instead of passing an audit of nothing, and a server they
// cannot reach is not reported as a failed migration.
func TestReplayReadsOnly(t *testing.T) {
	url := pgtest.NewDatabase(t)
	t.Setenv("DATABASE_URL", url)
	name := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	commands := [][]string{
		{"replay", "verify"},
		{"replay", "verify", "--customer", uuid.Must(uuid.NewV7()).String()},
		{"replay", "customer", uuid.Must(uuid.NewV7()).String()},
		{"replay", "export", "--format", "jsonl"},
		{"replay", "diff", "customers"},
	}
	for _, args := range commands {
		t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
			stdout, stderr, failed := runOnboard(t, args...)
			if !failed {
				t.Fatalf("succeeded on a database without the event store; stdout %q", stdout)
			}
			want := "onboard: no event store in database " + name + " (run `onboard migrate`)\n"
			if stderr != want {
				t.Fatalf("stderr %q, want %q", stderr, want)
			}
		})
	}
	if n := relations(t, pgtest.NewPool(t, url, 1)); n != 0 {
		t.Errorf("%d relations after the audit commands, want none", n)
	}

	t.Setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:1/onboard?sslmode=disable&connect_timeout=2")
	_, stderr, failed := runOnboard(t, "replay", "verify")
	if !failed || strings.Contains(stderr, "migrate") || !strings.Contains(stderr, "cannot reach Postgres at DATABASE_URL") {
		t.Errorf("unreachable server: failed %v, stderr %q", failed, stderr)
	}
}
