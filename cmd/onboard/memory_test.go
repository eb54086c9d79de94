//go:build soak

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/onboard/onboard/internal/bench"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/projections"
)

// The idle-memory test's size. With the idle minute it takes longer than
// the ordinary suite allows (over two minutes on two cores), so it runs
// with the soak tag: `go test -tags soak -run TestLiveHeapFlatWhenIdle
// ./cmd/onboard/`.
const (
	memoryOnboardings = 5000
	memoryConcurrency = 50
	memoryIdle        = time.Minute
)

// TestLiveHeapFlatWhenIdle runs memoryOnboardings onboardings through the
// whole pipeline of onboard dev in this process, waits until the read
// models have caught up, then leaves it idle for memoryIdle: the live heap
// (bench.LiveHeap), read every tenth of it, stays within 10 % of its value
// at the start of the idle time. NATS runs in a process of its own, as in
// production: the embedded server's message-block caches (4 MiB and more,
// loaded for ten seconds after each read) would come and go in this heap.
func TestLiveHeapFlatWhenIdle(t *testing.T) {
	ctx := context.Background()
	n := startNATSProcess(t)
	env, err := bench.NewEnv(ctx, pgtest.NewDatabase(t), bench.Sizes{Events: 1, ReplayEvents: 1, Customers: 1,
		E2EConcurrency: []int{memoryConcurrency}}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	fresh := bench.LiveHeap()
	rig, err := startE2E(ctx, env, n)
	if err != nil {
		t.Fatal(err)
	}
	defer rig.close()
	start := time.Now()
	if _, _, err := rig.drive(ctx, memoryConcurrency, memoryOnboardings); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	waitReadModels(ctx, t, rig.w.store)
	idle, since := bench.LiveHeap(), time.Now()
	t.Logf("%d onboardings in %s; live heap %.1f MB before the pipeline started, %.1f MB after the onboardings",
		memoryOnboardings, took.Round(time.Second), bench.MB(fresh), bench.MB(idle))
	readings := []string{fmt.Sprintf("%.1f", bench.MB(idle))}
	for range 10 {
		time.Sleep(memoryIdle / 10)
		live := bench.LiveHeap()
		readings = append(readings, fmt.Sprintf("%.1f", bench.MB(live)))
		if d := float64(live)/float64(idle) - 1; d > 0.10 || d < -0.10 {
			t.Errorf("live heap %.1f MB after %s idle: %+.0f %% from %.1f MB", bench.MB(live), time.Since(since).Round(time.Second), 100*d, bench.MB(idle))
		}
	}
	t.Logf("live heap every %s of %s idle, MB: %s", memoryIdle/10, memoryIdle, strings.Join(readings, ", "))
}

// waitReadModels waits until every projection has applied the whole log
// of store: then nothing of the onboardings is in flight any more.
func waitReadModels(ctx context.Context, t *testing.T, store *bench.Store) {
	t.Helper()
	proj, err := projections.New(projections.Config{Pool: store.Pool(), Source: store})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, name := range projections.Names() {
		for {
			lag, err := proj.Lag(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if lag.Checkpoint.Compare(lag.Head) >= 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("projection %s still %d positions behind after two minutes", name, lag.Positions)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// startNATSProcess runs an embedded NATS server with JetStream in a child
// process (this test binary, running TestNATSHelperProcess) and returns
// its URL and credentials; the server stops with the test.
func startNATSProcess(t *testing.T) e2eNATS {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestNATSHelperProcess$")
	cmd.Env = append(os.Environ(), "ONBOARD_TEST_NATS_DIR="+t.TempDir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // the helper's signal to stop
		if err := cmd.Wait(); err != nil {
			t.Errorf("NATS helper process: %v", err)
		}
	})
	var url, devPassword, adminPassword string
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		line := lines.Text()
		if v, ok := strings.CutPrefix(line, "nats-url "); ok {
			url = v
		} else if v, ok := strings.CutPrefix(line, "nats-dev-password "); ok {
			devPassword = v
		} else if v, ok := strings.CutPrefix(line, "nats-admin-password "); ok {
			adminPassword = v
		}
		if url != "" && devPassword != "" && adminPassword != "" {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			admin := messaging.ClientAuth{User: string(messaging.RoleAdmin), Password: adminPassword}
			return e2eNATS{url: url, auth: messaging.ClientAuth{User: messaging.DevUser, Password: devPassword},
				admin: func(name string) (*nats.Conn, error) {
					opts, err := admin.Options()
					if err != nil {
						return nil, err
					}
					return messaging.Connect(url, name, opts...)
				}}
		}
	}
	t.Fatalf("the NATS helper process printed no URL and credentials: %v", lines.Err())
	return e2eNATS{}
}

// TestNATSHelperProcess is no test of its own: it is the child process of
// startNATSProcess, serving NATS until its stdin closes.
func TestNATSHelperProcess(t *testing.T) {
	dir := os.Getenv("ONBOARD_TEST_NATS_DIR")
	if dir == "" {
		t.Skip("the NATS server of startNATSProcess; runs only as its child process")
	}
	srv, err := messaging.StartEmbedded(messaging.EmbeddedConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	fmt.Println("nats-url " + srv.ClientURL())
	fmt.Println("nats-dev-password " + srv.Credentials(messaging.DevUser).Password)
	fmt.Println("nats-admin-password " + srv.Credentials(string(messaging.RoleAdmin)).Password)
	_, _ = io.Copy(io.Discard, os.Stdin)
}
