package pgserver_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/internal/pgserver"
)

// binaries returns the installed server binaries, or skips the test
// without them (fails it under CI=true).
func binaries(t *testing.T) pgserver.Binaries {
	t.Helper()
	b, err := pgserver.FindInstalled(context.Background(), 0)
	if errors.Is(err, pgserver.ErrNoBinaries) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dataDir is a fresh directory for a cluster that the server's user (when
// the test runs as root) can reach: t.TempDir's parent is private.
func dataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "pg")
}

func start(t *testing.T, cfg pgserver.Config) *pgserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := pgserver.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func stop(t *testing.T, s *pgserver.Server) {
	t.Helper()
	if err := s.Stop(context.Background()); err != nil {
		t.Error(err)
	}
}

func exec1(t *testing.T, url, sql string, args ...any) (n int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if strings.HasPrefix(sql, "SELECT") {
		if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
	return 0
}

// TestStartStopStart: a new directory is initialised, the server listens
// on a free port (never 5432) and a socket in the data directory, stops
// cleanly, and starts again on the same data with it intact.
func TestStartStopStart(t *testing.T) {
	cfg := pgserver.Config{DataDir: dataDir(t), Binaries: binaries(t)}
	s := start(t, cfg)
	if !s.Initialised() || s.Adopted() {
		t.Errorf("first start: initialised %v, adopted %v; want a new cluster", s.Initialised(), s.Adopted())
	}
	if s.Port() == 5432 || s.Port() == 0 {
		t.Errorf("port %d", s.Port())
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, ".s.PGSQL."+strconv.Itoa(s.Port()))); err != nil {
		t.Errorf("no socket in the data directory: %v", err)
	}
	exec1(t, s.URL("postgres"), "CREATE TABLE kept (x int)")
	exec1(t, s.URL("postgres"), "INSERT INTO kept VALUES (42)")
	stop(t, s)
	if pgserver.Answers(context.Background(), fmt.Sprintf("127.0.0.1:%d", s.Port())) {
		t.Fatal("the server still answers after Stop")
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "postmaster.pid")); err == nil {
		t.Error("postmaster.pid left after a clean stop")
	}

	again := start(t, cfg)
	defer stop(t, again)
	if again.Initialised() || again.Adopted() {
		t.Errorf("second start: initialised %v, adopted %v; want a plain start", again.Initialised(), again.Adopted())
	}
	if got := exec1(t, again.URL("postgres"), "SELECT sum(x)::int FROM kept"); got != 42 {
		t.Errorf("after the restart the table holds %d, want 42", got)
	}
}

// TestAdoptsRunningServer: a Start on a directory whose server still runs
// after its owner was killed (SIGKILL) takes that server over rather than
// starting a second one, and its Stop stops it. While the owner lives, a
// second Start is refused.
func TestAdoptsRunningServer(t *testing.T) {
	if dir := os.Getenv("PGSERVER_TEST_OWNER"); dir != "" {
		s := start(t, pgserver.Config{DataDir: dir, Binaries: binaries(t)})
		fmt.Printf("port %d\n", s.Port())
		time.Sleep(10 * time.Minute) // until the parent kills this process
		return
	}
	cfg := pgserver.Config{DataDir: dataDir(t), Binaries: binaries(t)}
	// Should the test fail midway, stop the server it would leave.
	t.Cleanup(func() { _ = pgserver.StopRunning(context.Background(), cfg.DataDir) })
	owner, port := startChild(t, "TestAdoptsRunningServer", "PGSERVER_TEST_OWNER="+cfg.DataDir)
	if _, err := pgserver.Start(context.Background(), cfg); !errors.Is(err, pgserver.ErrOwned) {
		t.Errorf("a Start while the owner lives: %v, want ErrOwned", err)
	}
	pid := postmasterPid(t, cfg.DataDir)
	_ = owner.Process.Kill()
	_ = owner.Wait()

	s := start(t, cfg)
	if !s.Adopted() || s.Port() != port {
		t.Fatalf("adopted %v on port %d; want the running server on %d", s.Adopted(), s.Port(), port)
	}
	if got := postmasterPid(t, cfg.DataDir); got != pid {
		t.Errorf("postmaster pid %d, want the running %d", got, pid)
	}
	exec1(t, s.URL("postgres"), "SELECT 1")
	stop(t, s)
	if pgserver.Answers(context.Background(), fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Error("the adopted server still answers after Stop")
	}
}

// startChild runs this test binary's test as a child process with env
// added, and returns it once it has printed its server's port.
func startChild(t *testing.T, test string, env ...string) (*exec.Cmd, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var port int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "port %d", &port); err == nil {
			return cmd, port
		}
	}
	_ = cmd.Process.Kill()
	t.Fatalf("the child printed no port (%v)", cmd.Wait())
	return nil, 0
}

func postmasterPid(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	return pid
}

// TestCrashThenRestart: after an immediate stop (no checkpoint), a
// restart recovers every committed row from the WAL.
func TestCrashThenRestart(t *testing.T) {
	cfg := pgserver.Config{DataDir: dataDir(t), Binaries: binaries(t)}
	s := start(t, cfg)
	defer stop(t, s)
	exec1(t, s.URL("postgres"), "CREATE TABLE kept AS SELECT generate_series(1, 1000) AS x")
	ctx := context.Background()
	if err := s.Crash(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := exec1(t, s.URL("postgres"), "SELECT count(*)::int FROM kept"); got != 1000 {
		t.Errorf("%d rows after the crash, want 1000", got)
	}
}

// TestDataVersionMismatch: binaries of another major version refuse the
// data rather than fail obscurely.
func TestDataVersionMismatch(t *testing.T) {
	b := binaries(t)
	dir := dataDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte(strconv.Itoa(b.Major-1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := pgserver.Start(context.Background(), pgserver.Config{DataDir: dir, Binaries: b})
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL "+strconv.Itoa(b.Major-1)) {
		t.Errorf("got %v, want an error naming the data's version", err)
	}
}

// TestEphemeralGoesWithProcess: an Ephemeral server is stopped and its data
// removed when the process that started it dies, SIGKILL included.
func TestEphemeralGoesWithProcess(t *testing.T) {
	if dir := os.Getenv("PGSERVER_TEST_EPHEMERAL"); dir != "" {
		s := start(t, pgserver.Config{DataDir: dir, Binaries: binaries(t), Ephemeral: true})
		fmt.Printf("port %d\n", s.Port())
		time.Sleep(10 * time.Minute) // until the parent kills this process
		return
	}
	binaries(t)
	dir := dataDir(t)
	cmd, port := startChild(t, "TestEphemeralGoesWithProcess", "PGSERVER_TEST_EPHEMERAL="+dir)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if !pgserver.Answers(context.Background(), addr) {
		t.Fatal("the child's server does not answer")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(time.Minute)
	for {
		// The directory itself stays when its parent is not the server
		// user's to change (here, the test's), but it is emptied.
		entries, statErr := os.ReadDir(dir)
		gone := errors.Is(statErr, os.ErrNotExist) || statErr == nil && len(entries) == 0
		if !pgserver.Answers(context.Background(), addr) && gone {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after SIGKILL of its owner: server answers %v, data dir: %d entries, %v",
				pgserver.Answers(context.Background(), addr), len(entries), statErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFindInstalledHonoursOverride: ONBOARD_PG_BIN alone is searched, so an
// empty one finds nothing.
func TestFindInstalledHonoursOverride(t *testing.T) {
	b := binaries(t)
	t.Setenv("ONBOARD_PG_BIN", t.TempDir())
	if _, err := pgserver.FindInstalled(context.Background(), 0); !errors.Is(err, pgserver.ErrNoBinaries) {
		t.Errorf("got %v, want ErrNoBinaries", err)
	}
	t.Setenv("ONBOARD_PG_BIN", b.Dir)
	got, err := pgserver.FindInstalled(context.Background(), b.Major)
	if err != nil || got.Dir != b.Dir {
		t.Errorf("got %v, %v; want %s", got, err, b.Dir)
	}
	if _, err := pgserver.FindInstalled(context.Background(), b.Major+1); !errors.Is(err, pgserver.ErrNoBinaries) {
		t.Errorf("major %d: got %v, want ErrNoBinaries", b.Major+1, err)
	}
}
