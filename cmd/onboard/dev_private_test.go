package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onboard/onboard/internal/pgserver"
)

// devProc is an `onboard dev` process of the test.
type devProc struct {
	cmd    *exec.Cmd
	base   string
	dbAddr string
	banner string
	ready  time.Duration
	exited chan error
}

// privateDevEnv is the environment of a dev that finds no Postgres: no
// DATABASE_URL, and the default address (ONBOARD_DEFAULT_PG_ADDR, the
// documented test-only setting) at a closed port.
func privateDevEnv(t *testing.T) []string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "NATS_URL=") {
			env = append(env, kv)
		}
	}
	return append(env, "ONBOARD_DEFAULT_PG_ADDR="+closed, "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=")
}

// startDevProc starts `onboard dev` and waits until it is ready: the
// banner printed and /readyz answering with NATS connected.
func startDevProc(t *testing.T, bin string, env []string, args ...string) *devProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"dev", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = env
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &devProc{cmd: cmd, exited: make(chan error, 1)}
	var mu sync.Mutex
	var banner strings.Builder
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		var once sync.Once
		for sc.Scan() {
			mu.Lock()
			banner.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.HasPrefix(sc.Text(), "The relay seals") {
				once.Do(func() { close(found) })
			}
		}
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	select {
	case <-found:
	case err := <-p.exited:
		t.Fatalf("dev exited: %v\n%s", err, banner.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("dev printed no banner in 3 minutes:\n%s", banner.String())
	}
	mu.Lock()
	p.banner = banner.String()
	mu.Unlock()
	p.base = regexp.MustCompile(`console\s+(http://\S+)/`).FindStringSubmatch(p.banner)[1]
	if m := regexp.MustCompile(`database\s+onboard at (\S+)`).FindStringSubmatch(p.banner); m != nil {
		p.dbAddr = m[1]
	}
	waitReady(t, p.base, true)
	p.ready = time.Since(began)
	return p
}

// interrupt stops dev as Ctrl-C does and waits for it to exit cleanly.
func (p *devProc) interrupt(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("dev exited with %v after Ctrl-C", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("dev did not exit within 2 minutes of Ctrl-C")
	}
}

// TestDevPrivatePostgres runs `onboard dev` on a machine where no
// Postgres answers: it starts its own under --data-dir, and customers
// signed up there are found again after a clean stop and after a SIGKILL
// (the orphaned server is reused, not doubled); --reset wipes them.
func TestDevPrivatePostgres(t *testing.T) {
	if _, err := pgserver.FindInstalled(context.Background(), 0); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	bin := buildOnboard(t)
	env := privateDevEnv(t)
	dataDir := reachableTempDir(t)
	args := []string{"--data-dir", dataDir}
	// Should the test fail midway, stop the server a killed dev would leave.
	t.Cleanup(func() { _ = pgserver.StopRunning(context.Background(), filepath.Join(dataDir, "postgres")) })

	first := startDevProc(t, bin, env, args...)
	t.Logf("first start (initdb): ready in %v", first.ready.Round(time.Millisecond))
	for _, want := range []string{"private PostgreSQL", ", new; data in " + filepath.Join(dataDir, "postgres")} {
		if !strings.Contains(first.banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, first.banner)
		}
	}
	if first.dbAddr == "" || strings.HasSuffix(first.dbAddr, ":5432") {
		t.Fatalf("database at %q, want a private port:\n%s", first.dbAddr, first.banner)
	}
	ids := signUpActive(t, first.base, "private", 3)
	first.interrupt(t)
	if pgserver.Answers(context.Background(), first.dbAddr) {
		t.Error("the private Postgres still answers after dev's Ctrl-C")
	}

	warm := startDevProc(t, bin, env, args...)
	t.Logf("warm restart: ready in %v", warm.ready.Round(time.Millisecond))
	if strings.Contains(warm.banner, ", new;") {
		t.Errorf("the restart made a new cluster:\n%s", warm.banner)
	}
	findActive(t, warm.base, ids)

	// SIGKILL: dev cannot stop its server, which stays running on the data.
	_ = warm.cmd.Process.Kill()
	<-warm.exited
	if !pgserver.Answers(context.Background(), warm.dbAddr) {
		t.Fatal("the private Postgres died with dev: nothing to reuse")
	}
	orphan := startDevProc(t, bin, env, args...)
	t.Logf("restart after SIGKILL: ready in %v", orphan.ready.Round(time.Millisecond))
	if !strings.Contains(orphan.banner, "reused") || orphan.dbAddr != warm.dbAddr {
		t.Errorf("want the orphaned server at %s reused:\n%s", warm.dbAddr, orphan.banner)
	}
	findActive(t, orphan.base, ids)
	orphan.interrupt(t)
	if pgserver.Answers(context.Background(), orphan.dbAddr) {
		t.Error("the reused Postgres still answers after dev's Ctrl-C")
	}

	reset := startDevProc(t, bin, env, append(args, "--reset")...)
	if !strings.Contains(reset.banner, ", new;") {
		t.Errorf("--reset kept the cluster:\n%s", reset.banner)
	}
	if status, body := call(t, "GET", reset.base+"/v1/customers/"+ids[0], devOperatorKey, ""); status != http.StatusNotFound {
		t.Errorf("after --reset customer %s: %d %s, want 404", ids[0], status, body)
	}
	reset.interrupt(t)
}

// reachableTempDir is a fresh directory that Postgres's unprivileged user
// can reach when the test runs as root (t.TempDir's parent is private).
func reachableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "data")
}

// signUpActive signs n customers up over HTTP with KYC approving them all,
// and waits until each is active.
func signUpActive(t *testing.T, base, prefix string, n int) []string {
	t.Helper()
	if status, body := call(t, "PUT", base+"/sim/admin/config", devOperatorKey, `{"kyc":{"approve":1,"reject":0,"silent":0}}`); status != http.StatusOK {
		t.Fatalf("sim config: %d %s", status, body)
	}
	var ids []string
	for i := range n {
		status, body := call(t, "POST", base+"/v1/customers", devClientKey,
			fmt.Sprintf(`{"email":"%s%d@example.com","company":"Private %d","contact_name":"Tester","country":"NO","plan":"growth"}`, prefix, i, i),
			"Idempotency-Key", fmt.Sprintf("%s-%d", prefix, i))
		if status != http.StatusAccepted {
			t.Fatalf("signup: %d %s", status, body)
		}
		var out struct{ ID string }
		_ = json.Unmarshal(body, &out)
		ids = append(ids, out.ID)
	}
	findActive(t, base, ids)
	return ids
}

// findActive waits until every customer of ids reads active.
func findActive(t *testing.T, base string, ids []string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for _, id := range ids {
		for {
			status, body := call(t, "GET", base+"/v1/customers/"+id, devOperatorKey, "")
			var c struct{ State string }
			_ = json.Unmarshal(body, &c)
			if status == http.StatusOK && c.State == "active" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("customer %s not active: %d %s", id, status, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
