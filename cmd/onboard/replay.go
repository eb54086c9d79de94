package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/projections"
)

// newReplayCmd is the auditors' and operators' tool: the engine is package
// audit, this is wiring and presentation. Input is validated before the
// database is opened, so a typo gets its own one-line error.
func newReplayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Replay, verify and export the event log; rebuild and diff read models",
		Long: "replay proves what happened: a customer's state at any moment with its timeline,\n" +
			"integrity of every stream's hash chain and transitions, audit exports, and\n" +
			"read models rebuilt or compared with a replay from scratch. Reads DATABASE_URL.",
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown replay command %q (known: customer, verify, seal, coverage, export, rebuild, diff)", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newReplayCustomerCmd(), newReplayVerifyCmd(), newReplaySealCmd(), newReplayExportCmd(),
		newReplayRebuildCmd(), newReplayDiffCmd())
	cmd.AddCommand(newReplayCoverageCmd())
	return cmd
}

// replayStore is the event store a replay command reads; Close closes its
// pool too.
type replayStore struct{ *postgres.Store }

func (s replayStore) Close() {
	s.Store.Close()
	s.Pool().Close()
}

// openStore opens the event store at DATABASE_URL. Replay's commands audit
// what is there: they never create or migrate a table, so a mistyped
// database name fails instead of passing an audit of nothing.
func openStore(ctx context.Context) (replayStore, error) {
	url, err := databaseURL()
	if err != nil {
		return replayStore{}, err
	}
	pool, err := openPool(ctx, url, 0)
	if err != nil {
		return replayStore{}, err
	}
	s, err := readSchema(ctx, pool)
	if err == nil && !s.EventStore {
		err = fmt.Errorf("no event store in database %s (run `onboard migrate`)", s.Database)
	}
	if err != nil {
		pool.Close()
		return replayStore{}, err
	}
	store, err := postgres.New(pool, postgres.Config{})
	if err != nil {
		pool.Close()
		return replayStore{}, err
	}
	return replayStore{store}, nil
}

// lastCommitted returns the cursor of the last committed event, safe to
// read yet or not (the zero Cursor for an empty store): whole-store reads
// go up to it, waiting for transactions in flight rather than stopping at
// the first empty page.
func lastCommitted(ctx context.Context, store *postgres.Store) (eventstore.Cursor, error) {
	var c eventstore.Cursor
	err := store.Pool().QueryRow(ctx, `SELECT transaction_id, position FROM events
		ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&c.TransactionID, &c.Position)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Cursor{}, nil
	}
	if err != nil {
		return c, fmt.Errorf("read the last committed event: %w", err)
	}
	return c, nil
}

func parseCustomerID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("customer id %q is not a UUID", s)
	}
	return id, nil
}

func parseTime(flag, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q is not an RFC 3339 time (like 2026-11-25T15:04:05Z)", flag, s)
	}
	return t, nil
}

// exactArgs is cobra.ExactArgs with a message that says what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s: want %s, got %d arguments", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

func newReplayCustomerCmd() *cobra.Command {
	var (
		at      string
		version int64
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "customer <id> [--at RFC3339 | --version N] [--json]",
		Short: "Show a customer as it was at a time or version, with its timeline",
		Args:  exactArgs(1, "one customer id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseCustomerID(args[0])
			if err != nil {
				return err
			}
			var point audit.Point
			if cmd.Flags().Changed("at") {
				if point.At, err = parseTime("at", at); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("version") {
				if version < 1 {
					return fmt.Errorf("--version %d: versions start at 1", version)
				}
				point.Version = version
			}
			if !point.At.IsZero() && point.Version != 0 {
				return errors.New("give --at or --version, not both")
			}
			store, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer store.Close()
			opts, err := auditKeys(store.Store)
			if err != nil {
				return err
			}
			rep, err := audit.ReplayCustomer(cmd.Context(), store, id, point, opts...)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printReplay(cmd.OutOrStdout(), rep)
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "replay up to this time (RFC 3339), inclusive")
	cmd.Flags().Int64Var(&version, "version", 0, "replay up to this stream version")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func printReplay(out io.Writer, rep audit.Replay) error {
	c := rep.Customer
	fmt.Fprintf(out, "customer %s  %s <%s>\n", c.ID, c.Company, c.Email)
	where := fmt.Sprintf("version %d of %d", c.Version, rep.LatestVersion)
	if rep.At != nil {
		where = "at " + rep.At.UTC().Format(time.RFC3339Nano) + ", " + where
	}
	fmt.Fprintf(out, "state %s, step %s (%s)\n", c.State, c.Step, where)
	if c.PausedStep != "" {
		fmt.Fprintf(out, "paused at %s: %s\n", c.PausedStep, c.PauseReason)
	}
	if c.LastError != "" {
		fmt.Fprintf(out, "last error: %s\n", c.LastError)
	}
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tRECORDED AT\tEVENT\tACTOR\tCORRELATION\tWHAT\tREASON")
	for _, e := range rep.Timeline {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Version, e.RecordedAt.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
			strings.TrimPrefix(e.Type, "customer."), dash(e.Actor), dash(e.CorrelationID), e.Summary, dash(e.Reason))
	}
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// isTerminal reports whether w is a terminal: progress is drawn only there,
// never into a pipe or a log file.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newReplayVerifyCmd() *cobra.Command {
	var (
		customer string
		asJSON   bool
		seals    sealFlags
	)
	cmd := &cobra.Command{
		Use:   "verify [--customer <id>] [--anchor file] [--nats URL] [--public-key key] [--json]",
		Short: "Verify hash chains, contiguous versions and every transition against today's state machine",
		Long: "verify reads the whole store once in global order (or one customer's stream) and checks\n" +
			"that each stream's versions are contiguous, each event links to its predecessor's hash\n" +
			"and matches its own, decodes with today's code, and records a transition that today's\n" +
			"transition table allows. It prints the first problem of each failed stream and exits 1.\n" +
			"The whole-store verify also checks the log against the relay's seals: the digest and\n" +
			"count at each seal, its signature (--public-key, ONBOARD_SEAL_PUBLIC_KEY, the anchor's\n" +
			"key or ONBOARD_SEAL_KEY's), seals kept outside the database (--anchor, --nats).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var id uuid.UUID
			if cmd.Flags().Changed("customer") && seals.given() {
				return errors.New("--anchor, --nats and --public-key verify the whole store: leave out --customer")
			}
			if cmd.Flags().Changed("customer") {
				var err error
				if id, err = parseCustomerID(customer); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			store, err := openStore(ctx)
			if err != nil {
				return err
			}
			defer store.Close()

			var rep audit.Report
			if id != uuid.Nil {
				rep, err = audit.VerifyStream(ctx, store, audit.CustomerStreamID(id))
			} else {
				rep, err = verifyWholeStore(ctx, cmd, store, seals, asJSON)
			}
			if err != nil {
				return err
			}
			return printVerifyReport(cmd.OutOrStdout(), rep, asJSON)
		},
	}
	cmd.Flags().StringVar(&customer, "customer", "", "verify this customer's stream only")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().StringVar(&seals.anchor, "anchor", "", "an anchor file (replay seal --export) kept outside the database")
	cmd.Flags().StringVar(&seals.natsURL, "nats", "", "also check the seals published on NATS at this URL")
	cmd.Flags().StringVar(&seals.publicKey, "public-key", "", "the seals' public key (base64); default ONBOARD_SEAL_PUBLIC_KEY")
	return cmd
}

// verifyWholeStore verifies the whole store in global order, with the seals
// seals names, and draws a progress bar on a terminal.
func verifyWholeStore(ctx context.Context, cmd *cobra.Command, store replayStore, seals sealFlags, asJSON bool) (audit.Report, error) {
	// The seals are read before the last committed event: a seal then
	// never covers an event verify does not read.
	src, err := seals.load(ctx, store.Store)
	if err != nil {
		return audit.Report{}, err
	}
	until, err := lastCommitted(ctx, store.Store)
	if err != nil {
		return audit.Report{}, err
	}
	// Verification allocates per event (decoding, hashing) and keeps
	// little alive: collecting less often saves a fifth of its CPU for a
	// heap of a few hundred MB at most.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	opts := audit.VerifyOptions{Until: until, Seals: src}
	told := false
	opts.Waiting = func(waited time.Duration) {
		if !told && waited >= 2*time.Second {
			told = true
			fmt.Fprintf(cmd.ErrOrStderr(), "waiting for transactions in flight to end before reading further (%s so far)\n", waited)
		}
	}
	if errOut := cmd.ErrOrStderr(); isTerminal(errOut) && !asJSON {
		bar := newVerifyBar(until, errOut)
		opts.Progress = func(n int64) { _ = bar.Set64(n) }
		defer func() { _ = bar.Finish() }()
	}
	return audit.VerifyAll(ctx, store, opts)
}

// printVerifyReport prints rep as JSON or as a FAIL line per problem and a
// summary, and returns its verdict.
func printVerifyReport(out io.Writer, rep audit.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
		return rep.Err()
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(out, "FAIL %s version %d: %s: %s\n", p.StreamID, p.Version, p.Kind, p.Detail)
	}
	if more := rep.Failed - len(rep.Problems); more > 0 {
		fmt.Fprintf(out, "... and %d more failed streams\n", more)
	}
	printSealReport(out, rep.Seals)
	verdict := "OK"
	if rep.Failed > 0 {
		verdict = fmt.Sprintf("%d FAILED", rep.Failed)
	}
	if rep.Seals != nil && len(rep.Seals.Problems) > 0 {
		verdict += fmt.Sprintf(", seals: %d FAILED", len(rep.Seals.Problems))
	}
	fmt.Fprintf(out, "verified %d events in %d streams in %s (%.0f events/s): %s\n",
		rep.Events, rep.Streams, rep.Elapsed.Round(time.Millisecond), rep.EventsPerSecond(), verdict)
	return rep.Err()
}

// newVerifyBar sizes the bar by the last event's position: positions come
// from a sequence, so it is the number of events give or take rolled-back
// appends, without a count(*) over the whole table.
func newVerifyBar(last eventstore.Cursor, w io.Writer) *progressbar.ProgressBar {
	total := int64(-1)
	if last.Position > 0 {
		total = last.Position
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("verifying"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
		progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish(),
		progressbar.OptionFullWidth())
}

func newReplayExportCmd() *cobra.Command {
	var customer, from, to, format, out string
	cmd := &cobra.Command{
		Use:   "export [--customer <id>] [--from RFC3339] [--to RFC3339] --format jsonl|csv [--out file]",
		Short: "Export the audit trail (every stored field, hashes included) as JSON lines or CSV",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var opts audit.ExportOptions
			var err error
			if opts.Format, err = audit.ParseFormat(format); err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			if cmd.Flags().Changed("customer") {
				if opts.Customer, err = parseCustomerID(customer); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("from") {
				if opts.From, err = parseTime("from", from); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("to") {
				if opts.To, err = parseTime("to", to); err != nil {
					return err
				}
			}
			if err := opts.Validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			store, err := openStore(ctx)
			if err != nil {
				return err
			}
			defer store.Close()
			if opts.Customer == uuid.Nil {
				if opts.Until, err = lastCommitted(ctx, store.Store); err != nil {
					return err
				}
			}
			if out == "" {
				_, err := audit.Export(ctx, store, cmd.OutOrStdout(), opts)
				return err
			}
			n, err := exportToFile(ctx, store, out, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %d events to %s\n", n, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&customer, "customer", "", "export this customer's stream only")
	cmd.Flags().StringVar(&from, "from", "", "keep events recorded at or after this time (RFC 3339)")
	cmd.Flags().StringVar(&to, "to", "", "keep events recorded before this time (RFC 3339)")
	cmd.Flags().StringVar(&format, "format", string(audit.FormatJSONL), "jsonl or csv")
	cmd.Flags().StringVar(&out, "out", "", "write to this file instead of standard output")
	return cmd
}

// exportToFile writes to a temporary file beside path and renames it into
// place, so a failed export never leaves a truncated file that looks whole.
func exportToFile(ctx context.Context, src audit.ExportSource, path string, opts audit.ExportOptions) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	n, err := audit.Export(ctx, src, f, opts)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("export: %w", cerr)
	}
	if err != nil {
		return n, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return n, fmt.Errorf("export: %w", err)
	}
	return n, nil
}

// openProjections opens the store and the read models on its pool, whose
// tables must be at this binary's schema version.
func openProjections(ctx context.Context) (replayStore, *projections.Projections, error) {
	store, err := openStore(ctx)
	if err != nil {
		return store, nil, err
	}
	if err := checkSchema(ctx, store.Pool()); err != nil {
		store.Close()
		return store, nil, err
	}
	// A rebuild decrypts the customers' personal data with the master key;
	// without one their encrypted fields show as [encrypted].
	cfg := projections.Config{Pool: store.Pool(), Source: store}
	master, err := loadMasterKey()
	if err == nil && master != nil {
		cfg.Keys, err = postgres.NewKeyStore(store.Pool(), master)
	}
	if err != nil {
		store.Close()
		return store, nil, err
	}
	p, err := projections.New(cfg)
	if err != nil {
		store.Close()
		return store, nil, err
	}
	return store, p, nil
}

func newReplayRebuildCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "rebuild <projection> | --all",
		Short: "Rebuild read models from position 0 while the query API keeps serving",
		Long: "rebuild replays the whole log into new tables of the projection while the current ones\n" +
			"keep serving, then switches readers and the live projector to them in one transaction.\n" +
			"Set ONBOARD_MASTER_KEY (or _FILE) so that the customers' personal data is decrypted: without\n" +
			"it their encrypted fields read [encrypted] in the rebuilt tables.\n" +
			"Projections: " + strings.Join(projections.Names(), ", ") + ".",
		Args: func(cmd *cobra.Command, args []string) error {
			if all != (len(args) == 0) || len(args) > 1 {
				return fmt.Errorf("%s: name one projection (%s) or give --all", cmd.CommandPath(), strings.Join(projections.Names(), ", "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, n := range args {
				if err := audit.ValidateProjection(n); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			store, p, err := openProjections(ctx)
			if err != nil {
				return err
			}
			defer store.Close()
			out := cmd.OutOrStdout()
			var spinner *progressbar.ProgressBar
			if errOut := cmd.ErrOrStderr(); isTerminal(errOut) {
				// Rebuild reports no progress of its own: a spinner shows
				// it is alive, the summary line gives the figures.
				spinner = progressbar.NewOptions(-1, progressbar.OptionSetWriter(errOut),
					progressbar.OptionSetDescription("rebuilding"), progressbar.OptionClearOnFinish())
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					t := time.NewTicker(100 * time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-stop:
							_ = spinner.Finish()
							return
						case <-t.C:
							_ = spinner.Add(1)
						}
					}
				}()
			}
			return audit.Rebuild(ctx, p, args, func(r projections.RebuildResult) {
				if spinner != nil {
					_ = spinner.Clear()
				}
				rate := 0.0
				if r.Duration > 0 {
					rate = float64(r.Events) / r.Duration.Seconds()
				}
				fmt.Fprintf(out, "rebuilt %s: version %d -> %d, %d events in %s (%.0f events/s)\n",
					r.Projection, r.From, r.To, r.Events, r.Duration.Round(time.Millisecond), rate)
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "rebuild every projection")
	return cmd
}

func newReplayDiffCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "diff <projection>",
		Short: "Compare a live read model with a replay of the log from scratch",
		Long: "diff replays the log up to the live projection's checkpoint through today's domain code\n" +
			"and lists every row and field where the read model differs; it exits 1 when any does.\n" +
			"Projections: " + strings.Join(projections.Names(), ", ") + ".",
		Args: exactArgs(1, "one projection ("+strings.Join(projections.Names(), ", ")+")"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := audit.ValidateProjection(args[0]); err != nil {
				return err
			}
			ctx := cmd.Context()
			store, p, err := openProjections(ctx)
			if err != nil {
				return err
			}
			defer store.Close()
			opts, err := auditKeys(store.Store)
			if err != nil {
				return err
			}
			rep, err := audit.Diff(ctx, store, p, args[0], opts...)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				if len(rep.Differences) > 0 {
					fmt.Fprintln(w, "KEY\tFIELD\tLIVE\tREPLAY")
				}
				for _, d := range rep.Differences {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", d.Key, d.Field, d.Live, d.Replay)
				}
				if err := w.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(out, "%s: %d rows compared up to checkpoint %s, %d differences\n",
					rep.Projection, rep.Rows, rep.Checkpoint, len(rep.Differences))
			}
			if n := len(rep.Differences); n > 0 {
				return fmt.Errorf("%s differs from a replay of the log in %d places", rep.Projection, n)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
