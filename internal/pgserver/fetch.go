package pgserver

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	embeddedpostgres "github.com/fergusstrange/embedded-postgres"
)

// FetchedVersion is the PostgreSQL version Fetch brings when no server
// binaries are installed.
const FetchedVersion = embeddedpostgres.V17

// Fetch returns server binaries that embedded-postgres downloads once into
// cacheDir (its archive and the unpacked binaries) and finds there from
// then on. repository overrides the binaries' Maven repository (empty: the
// library's default, Maven Central). Progress and errors of the one-time
// download go to log.
func Fetch(ctx context.Context, cacheDir, repository string, log io.Writer) (Binaries, error) {
	dir := filepath.Join(cacheDir, "postgres-"+string(FetchedVersion))
	if b, err := versionOf(ctx, filepath.Join(dir, "bin")); err == nil {
		return b, nil
	}
	// The library fetches and unpacks only as part of starting a server of
	// its own: start one in a scratch directory and stop it. initdb there
	// fails when this process is root, after the binaries are unpacked.
	scratch, err := os.MkdirTemp("", "onboard-pgfetch-")
	if err != nil {
		return Binaries{}, err
	}
	defer os.RemoveAll(scratch)
	port, err := freePort()
	if err != nil {
		return Binaries{}, err
	}
	cfg := embeddedpostgres.DefaultConfig().Version(FetchedVersion).Port(uint32(port)).
		CachePath(cacheDir).BinariesPath(dir).RuntimePath(filepath.Join(scratch, "run")).
		DataPath(filepath.Join(scratch, "data")).Logger(log)
	if repository != "" {
		cfg = cfg.BinaryRepositoryURL(repository)
	}
	fmt.Fprintf(log, "fetching PostgreSQL %s into %s (once)\n", FetchedVersion, cacheDir)
	pg := embeddedpostgres.NewDatabase(cfg)
	startErr := pg.Start()
	if startErr == nil {
		_ = pg.Stop()
	}
	b, err := versionOf(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		return Binaries{}, fmt.Errorf("fetch PostgreSQL %s with embedded-postgres: %v (its start: %v)", FetchedVersion, err, startErr)
	}
	return b, nil
}
