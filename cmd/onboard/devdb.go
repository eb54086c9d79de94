package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/onboard/onboard/internal/pgserver"
)

// devDB is the database onboard dev runs on.
type devDB struct {
	url string
	// private is the server dev started or adopted in --data-dir, nil when
	// it uses DATABASE_URL or the server at the default address.
	private *pgserver.Server
}

// openDevDB picks dev's database: DATABASE_URL when set; else the server at
// the default address when one answers; else a private server in
// dataDir/postgres, started here (or adopted, when an earlier dev was
// killed and left it running). Its data stays there across restarts.
func openDevDB(ctx context.Context, dataDir string, out io.Writer) (devDB, error) {
	u, err := secretEnv("DATABASE_URL")
	if err != nil {
		return devDB{}, err
	}
	if u != "" {
		return devDB{url: u}, nil
	}
	if pgserver.Answers(ctx, pgserver.DefaultAddr()) {
		return devDB{url: defaultDatabaseURL()}, nil
	}
	dir := filepath.Join(dataDir, "postgres")
	major := pgserver.DataMajor(dir)
	bin, err := pgserver.FindInstalled(ctx, major)
	if errors.Is(err, pgserver.ErrNoBinaries) && (major == 0 || major == fetchedMajor()) {
		bin, err = pgserver.Fetch(ctx, pgserver.DefaultCacheDir(), os.Getenv("ONBOARD_PG_REPOSITORY"), out)
	}
	if err != nil {
		return devDB{}, fmt.Errorf("nothing answers at %s and no private Postgres can start (set DATABASE_URL, or install PostgreSQL's server): %w",
			pgserver.DefaultAddr(), err)
	}
	if err := markDataDir(dataDir); err != nil {
		return devDB{}, err
	}
	srv, err := pgserver.Start(ctx, pgserver.Config{DataDir: dir, Binaries: bin})
	if err != nil {
		return devDB{}, fmt.Errorf("start the private Postgres: %w", err)
	}
	return devDB{url: srv.URL("onboard"), private: srv}, nil
}

// fetchedMajor is the major version of the binaries pgserver.Fetch brings.
func fetchedMajor() int {
	var major int
	fmt.Sscanf(string(pgserver.FetchedVersion), "%d", &major)
	return major
}

// close stops the private server cleanly, if dev runs one.
func (d devDB) close() {
	if d.private == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := d.private.Stop(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "onboard: stop the private Postgres:", err)
	}
}

// about says, for the banner, which Postgres dev started and where its
// data lives; "" for a server it was given.
func (d devDB) about() string {
	if d.private == nil {
		return ""
	}
	how := "started"
	switch {
	case d.private.Initialised():
		how = "new"
	case d.private.Adopted():
		how = "left running by an earlier dev, reused"
	}
	return fmt.Sprintf("private %s, %s; data in %s", d.private.Binaries(), how, d.private.DataDir())
}

// dataDirMark names onboard dev's data directories, so that --reset never
// wipes a directory that is not one.
const dataDirMark = ".onboard-data-dir"

func markDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, dataDirMark), []byte("onboard dev keeps its Postgres, NATS and keys here.\n"), 0o644)
}

// resetDataDir wipes dev's data directory: the private Postgres's events
// (its server stopped first if one still runs), NATS's files and the keys.
// With DATABASE_URL, or a server at the default address, the events live
// elsewhere: it refuses rather than leave a log whose seals and NATS
// stream no longer match.
func resetDataDir(ctx context.Context, dir string) error {
	url, err := databaseURL()
	if err != nil {
		return err
	}
	if url != defaultDatabaseURL() || pgserver.Answers(ctx, pgserver.DefaultAddr()) {
		return fmt.Errorf("--reset wipes the private Postgres in --data-dir, but the events are in the server at %s: drop that database instead",
			describeDatabase(url))
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, dataDirMark)); err != nil && len(entries) > 0 {
		return fmt.Errorf("--reset: %s is not a data directory of onboard dev (it lacks %s): not wiping it", dir, dataDirMark)
	}
	if err := pgserver.StopRunning(ctx, filepath.Join(dir, "postgres")); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
