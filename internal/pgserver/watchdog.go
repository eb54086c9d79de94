package pgserver

import (
	"fmt"
	"os"
)

// watchdogScript waits for its standard input to close, which happens when
// the process holding the pipe's other end exits however it exits, then
// stops the server and removes its data ($0 is pg_ctl, $1 the directory).
const watchdogScript = `read -r _; "$0" stop -D "$1" -m immediate -w -t 60 >/dev/null 2>&1; rm -rf "$1"`

// startWatchdog starts the shell that stops an Ephemeral server and removes
// its data once this process is gone. It runs as the server's user, in a
// session of its own, so that a Ctrl-C of `go test` ends this process and
// not the watchdog.
func (s *Server) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := s.as.command("/bin/sh", "-c", watchdogScript, s.cfg.Binaries.path("pg_ctl"), s.cfg.DataDir)
	cmd.Stdin = r
	cmd.Dir = "/"
	detach(cmd)
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("start the watchdog of %s: %w", s.cfg.DataDir, err)
	}
	r.Close()
	go func() { _ = cmd.Wait() }()
	s.watchdog = w
	return nil
}
