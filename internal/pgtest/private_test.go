package pgtest_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/onboard/onboard/internal/pgserver"
)

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// runSelf runs this test binary's TestNewDatabase with TEST_DATABASE_URL
// unset, the default address at a closed port, and env added.
func runSelf(t *testing.T, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestNewDatabase$", "-test.v", "-test.count=1")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TEST_DATABASE_URL=") && !strings.HasPrefix(kv, "ONBOARD_PG_BIN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, append([]string{"ONBOARD_DEFAULT_PG_ADDR=" + closedAddr(t)}, env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPrivateServerWhenNoneAnswers: with no TEST_DATABASE_URL and nothing
// at the default address, a test still gets its database, from a private
// server the test process starts from the installed binaries, instead of
// skipping (under CI=true as without).
func TestPrivateServerWhenNoneAnswers(t *testing.T) {
	if _, err := pgserver.FindInstalled(context.Background(), 0); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	out, err := runSelf(t, "CI=")
	if err != nil || !strings.Contains(out, "--- PASS: TestNewDatabase") || strings.Contains(out, "SKIP") {
		t.Fatalf("TestNewDatabase without a server: %v\n%s", err, out)
	}
}

// TestNoServerNoBinaries: with neither a server nor binaries, a test skips,
// and under CI=true it fails.
func TestNoServerNoBinaries(t *testing.T) {
	none := "ONBOARD_PG_BIN=" + t.TempDir()
	out, err := runSelf(t, none, "CI=")
	if err != nil || !strings.Contains(out, "--- SKIP: TestNewDatabase") {
		t.Errorf("outside CI: %v, want a skip\n%s", err, out)
	}
	out, err = runSelf(t, none, "CI=true")
	if err == nil || !strings.Contains(out, "--- FAIL: TestNewDatabase") || !strings.Contains(out, "unreachable") {
		t.Errorf("under CI=true: %v, want a failure naming the unreachable server\n%s", err, out)
	}
}
