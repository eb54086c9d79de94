package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config says where a server keeps its data and how it runs.
type Config struct {
	// DataDir is the cluster's directory: created and initialised (initdb)
	// when missing or empty, reused otherwise.
	DataDir string
	// Binaries run the server; their major version must be the data's.
	Binaries Binaries
	// Settings are server settings (name → value) beside the ones the
	// package sets, e.g. max_connections.
	Settings map[string]string
	// Ephemeral stops the server and removes DataDir when this process
	// exits, however it exits (SIGKILL included): a server for one test
	// process. (When DataDir's parent is not writable by the server's
	// user, DataDir is emptied instead.)
	Ephemeral bool
	// User runs initdb and the server when this process is root; default
	// "postgres".
	User string
}

// Server is a private Postgres server on one data directory.
type Server struct {
	cfg     Config
	as      *account
	port    int
	inited  bool
	adopted bool
	// owner holds the lock that says this process owns the server.
	owner *os.File
	// watchdog is the write end of the pipe whose closing (this process
	// exiting) makes the watchdog of an Ephemeral server stop it.
	watchdog *os.File
}

// superuser is the role initdb creates; local connections are trusted.
const superuser = "postgres"

// startTimeout bounds pg_ctl's wait for the server to accept connections,
// crash recovery included.
const startTimeout = 180 * time.Second

// Start starts a server on cfg.DataDir, running initdb first when the
// directory holds no cluster yet. When a server already runs on it (its
// owner was killed), Start adopts it instead of starting a second one.
// While its owner lives, Start fails with ErrOwned.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.User == "" {
		cfg.User = superuser
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = dir
	as, err := serverAccount(cfg.User)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, as: as}
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	if s.owner, err = lockOwner(filepath.Join(dir, ownerLock)); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := s.start(ctx); err != nil {
		s.owner.Close()
		return nil, err
	}
	if cfg.Ephemeral {
		if err := s.startWatchdog(); err != nil {
			_ = s.Crash(ctx)
			return nil, err
		}
	}
	return s, nil
}

// prepare creates and initialises the data directory when it holds no
// cluster, and checks the binaries' version against it when it does.
func (s *Server) prepare(ctx context.Context) error {
	dir := s.cfg.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := s.as.own(dir); err != nil {
		return err
	}
	if major := DataMajor(dir); major != 0 {
		if major != s.cfg.Binaries.Major {
			return fmt.Errorf("the data in %s is of PostgreSQL %d, the binaries are %s", dir, major, s.cfg.Binaries)
		}
		return nil
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		return fmt.Errorf("%s is neither empty nor a PostgreSQL data directory", dir)
	}
	args := []string{"-D", dir, "-U", superuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"}
	if s.cfg.Ephemeral {
		args = append(args, "--no-sync") // the data goes with the process
	}
	if out, err := s.run(ctx, "initdb", args...); err != nil {
		return fmt.Errorf("initdb %s: %w: %s", dir, err, lastLines(out, 5))
	}
	s.inited = true
	conf, err := os.OpenFile(filepath.Join(dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer conf.Close()
	_, err = fmt.Fprintf(conf, "\n# Written by onboard at each start (internal/pgserver).\ninclude_if_exists = '%s'\n", onboardConf)
	return err
}

// ErrOwned is returned by Start when a live process already runs the
// server on the data directory.
var ErrOwned = errors.New("another live process runs the server on this data directory")

// ownerLock is the file in the data directory that its owner holds locked
// for as long as it lives.
const ownerLock = "onboard.owner.lock"

// onboardConf is the settings file the package writes at each start.
const onboardConf = "postgresql.onboard.conf"

// start adopts the server running on the data directory, or starts one.
func (s *Server) start(ctx context.Context) error {
	if port, ok, err := s.running(ctx); err != nil {
		return err
	} else if ok {
		s.port, s.adopted = port, true
		return nil
	}
	var err error
	for try := 0; try < 3; try++ {
		if err = s.writeConf(try == 0); err != nil {
			return err
		}
		var out []byte
		out, err = s.run(ctx, "pg_ctl", "start", "-D", s.cfg.DataDir, "-w", "-t", strconv.Itoa(int(startTimeout.Seconds())),
			"-l", s.logFile(), "-s")
		if err == nil {
			return nil
		}
		log, _ := os.ReadFile(s.logFile())
		err = fmt.Errorf("pg_ctl start %s: %w: %s %s", s.cfg.DataDir, err, bytes.TrimSpace(out), lastLines(log, 5))
		if !bytes.Contains(log, []byte("could not bind")) {
			return err
		}
		// Another process took the free port first: pick another.
	}
	return err
}

// writeConf writes the settings file: the port (the last one when
// reuseOld and it is still free), the listen addresses, and cfg.Settings.
func (s *Server) writeConf(reuseOld bool) error {
	path := filepath.Join(s.cfg.DataDir, onboardConf)
	s.port = 0
	if old, err := os.ReadFile(path); err == nil && reuseOld {
		for line := range strings.Lines(string(old)) {
			if v, ok := strings.CutPrefix(line, "port = "); ok {
				if p, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && p != 5432 && portFree(p) {
					s.port = p
				}
			}
		}
	}
	if s.port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		s.port = p
	}
	// A socket path longer than the kernel's limit (about 107 bytes) cannot
	// be bound: then the server listens on TCP only.
	socketDir := s.cfg.DataDir
	if len(socketDir)+len("/.s.PGSQL.65535") > 103 {
		socketDir = ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by onboard (internal/pgserver) at each start: changes here are lost.\nport = %d\n", s.port)
	settings := map[string]string{"listen_addresses": "127.0.0.1", "unix_socket_directories": socketDir}
	for k, v := range s.cfg.Settings {
		settings[k] = v
	}
	for k, v := range settings {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(v, "'", "''"))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return s.as.chown(path)
}

// running reports the port of a server already running on the data
// directory, waiting while one starts or stops (it cannot be adopted
// then).
func (s *Server) running(ctx context.Context) (int, bool, error) {
	deadline := time.Now().Add(startTimeout)
	for {
		pid, port, status, ok := readPidFile(s.cfg.DataDir)
		if !ok || !alive(pid) {
			return 0, false, nil
		}
		if status == "ready" {
			return port, true, nil
		}
		if time.Now().After(deadline) {
			return 0, false, fmt.Errorf("the server on %s (pid %d) stays %q", s.cfg.DataDir, pid, status)
		}
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readPidFile reads postmaster.pid: the postmaster's pid (line 1), its
// port (4) and its status (8: starting, stopping, ready or standby).
func readPidFile(dir string) (pid, port int, status string, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, 0, "", false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, 0, "", false
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(lines[0]))
	port, err2 := strconv.Atoi(strings.TrimSpace(lines[3]))
	if len(lines) >= 8 {
		status = strings.TrimSpace(lines[7])
	}
	return pid, port, status, err1 == nil && err2 == nil
}

// Stop shuts the server down cleanly (pg_ctl stop -m fast): sessions are
// ended, their transactions rolled back, and a checkpoint written.
func (s *Server) Stop(ctx context.Context) error {
	err := s.stop(ctx, "fast")
	if s.owner != nil {
		s.owner.Close()
		s.owner = nil
	}
	if s.watchdog != nil {
		s.watchdog.Close() // the watchdog removes the data
		s.watchdog = nil
	}
	return err
}

// Crash stops the server as a crash would (pg_ctl stop -m immediate): no
// checkpoint, so the next start recovers from the WAL.
func (s *Server) Crash(ctx context.Context) error { return s.stop(ctx, "immediate") }

// Restart starts the server again after Stop or Crash, on the same port
// when it is still free.
func (s *Server) Restart(ctx context.Context) error {
	s.adopted = false
	if s.owner == nil {
		var err error
		if s.owner, err = lockOwner(filepath.Join(s.cfg.DataDir, ownerLock)); err != nil {
			return fmt.Errorf("lock %s: %w", s.cfg.DataDir, err)
		}
	}
	return s.start(ctx)
}

func (s *Server) stop(ctx context.Context, mode string) error {
	out, err := s.run(ctx, "pg_ctl", "stop", "-D", s.cfg.DataDir, "-m", mode, "-w", "-t", "120", "-s")
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s %s: %w: %s", mode, s.cfg.DataDir, err, bytes.TrimSpace(out))
	}
	return nil
}

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// URL is a connection URL for database on the server.
func (s *Server) URL(database string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, s.port, database)
}

// DataDir is the cluster's directory.
func (s *Server) DataDir() string { return s.cfg.DataDir }

// Binaries are the binaries the server runs.
func (s *Server) Binaries() Binaries { return s.cfg.Binaries }

// Initialised reports whether Start ran initdb: the data directory was new.
func (s *Server) Initialised() bool { return s.inited }

// Adopted reports whether Start found the server already running (its
// owner was killed) and took it over.
func (s *Server) Adopted() bool { return s.adopted }

func (s *Server) logFile() string { return filepath.Join(s.cfg.DataDir, "server.log") }

// run runs one of the binaries as the server's user and returns its
// combined output.
func (s *Server) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := s.as.command(s.cfg.Binaries.path(name), args...)
	cmd.Dir = s.cfg.DataDir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-ctx.Done():
		// pg_ctl's own timeouts bound it; killing it midway would leave a
		// server half started, so let it finish.
		err := <-done
		return out.Bytes(), errors.Join(ctx.Err(), err)
	}
}

// DataMajor is the major version of the cluster in dir, or 0 when dir
// holds none.
func DataMajor(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "PG_VERSION"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// StopRunning stops (fast shutdown) a server running on dir, if any, and
// waits until it is gone: before a data directory is removed.
func StopRunning(ctx context.Context, dir string) error {
	pid, _, _, ok := readPidFile(dir)
	if !ok || !alive(pid) {
		return nil
	}
	if err := interrupt(pid); err != nil {
		return fmt.Errorf("stop the server on %s (pid %d): %w", dir, pid, err)
	}
	for alive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop the server on %s (pid %d): %w", dir, pid, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func freePort() (int, error) {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port != 5432 {
			return port, nil
		}
	}
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "; ")
}
