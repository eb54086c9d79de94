// Package pgserver runs a private PostgreSQL server: for `onboard dev` when
// no server is given, for the tests when none answers (package pgtest), and
// for the crash test, which needs a server of its own to crash.
//
// It uses installed server binaries (FindInstalled: PATH, Debian's
// /usr/lib/postgresql/*/bin, Homebrew, Postgres.app, or ONBOARD_PG_BIN), or
// binaries that github.com/fergusstrange/embedded-postgres fetches once and
// caches (Fetch). Run as root, it runs initdb and pg_ctl as the
// unprivileged user "postgres", since Postgres refuses to run as root.
//
// A server listens on 127.0.0.1 at a free port (never 5432) and on a socket
// in its data directory, and trusts local connections as user postgres: it
// is for a developer's machine and tests, never for production. Start finds
// a server already running on the data directory (one whose owner was
// killed with SIGKILL) through its postmaster.pid and adopts it, so there
// is never a second server on the same data; a lock that the owner holds
// while it lives keeps a second owner out (ErrOwned).
//
// It may import no package of this module.
package pgserver
