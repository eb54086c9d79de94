//go:build unix

package pgserver

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// account is the unprivileged user the server runs as when this process is
// root; nil when it is not.
type account struct {
	name     string
	uid, gid uint32
}

// serverAccount returns nil unless this process runs as root, and then the
// user named name, which must exist.
func serverAccount(name string) (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root, Postgres needs an unprivileged user to run as: %w (create one: useradd --system %s)", err, name)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &account{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
}

// command is exec.Command, run as a when a is not nil.
func (a *account) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if a != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: a.uid, Gid: a.gid, NoSetGroups: true}
		cmd.Env = append(os.Environ(), "HOME=/", "USER="+a.name, "LOGNAME="+a.name)
	}
	return cmd
}

// chown gives path to a (a no-op when a is nil).
func (a *account) chown(path string) error {
	if a == nil {
		return nil
	}
	return os.Chown(path, int(a.uid), int(a.gid))
}

// own makes dir a's (a no-op when a is nil) and checks that a can reach it:
// every directory above it must be searchable by a.
func (a *account) own(dir string) error {
	if a == nil {
		return nil
	}
	if err := os.Chown(dir, int(a.uid), int(a.gid)); err != nil {
		return err
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		ok := mode&0o001 != 0 ||
			st != nil && st.Uid == a.uid && mode&0o100 != 0 ||
			st != nil && st.Gid == a.gid && mode&0o010 != 0
		if !ok {
			return fmt.Errorf("user %s, which runs the private Postgres, cannot reach %s: %s is not searchable by it (choose a data directory it can reach, e.g. under /tmp)", a.name, dir, p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// detach puts cmd in a session of its own, so that a Ctrl-C sent to the
// terminal's process group does not reach it.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr.Setsid = true }

// alive reports whether process pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// interrupt asks the postmaster pid for a fast shutdown.
func interrupt(pid int) error { return syscall.Kill(pid, syscall.SIGINT) }

// lockOwner takes the exclusive lock that says this process owns the
// server on dir; the kernel releases it when the process dies.
func lockOwner(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, ErrOwned
		}
		return nil, err
	}
	return f, nil
}
