//go:build !unix

package pgserver

import (
	"errors"
	"os"
	"os/exec"
)

type account struct{}

func serverAccount(string) (*account, error) {
	return nil, errors.New("a private Postgres is supported on Unix only: set DATABASE_URL")
}

func (a *account) command(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
func (a *account) own(string) error                              { return nil }
func (a *account) chown(string) error                            { return nil }
func detach(*exec.Cmd)                                           {}
func alive(int) bool                                             { return false }
func interrupt(int) error                                        { return errors.New("unsupported") }

func lockOwner(string) (*os.File, error) { return nil, errors.New("unsupported") }
