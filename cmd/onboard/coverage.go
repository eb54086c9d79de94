package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/process"
)

func newReplayCoverageCmd() *cobra.Command {
	var (
		asJSON    bool
		retention time.Duration
	)
	cmd := &cobra.Command{
		Use:   "coverage [--json] [--inbox-retention D]",
		Short: "Prove each projection and process manager processed every event up to its position",
		Long: "coverage reads the log once in global order and proves, from each durable consumer's own\n" +
			"records, that it processed every event up to its position: the read models' rows against\n" +
			"their checkpoint, each process manager's inbox rows against the events routed to it (or the\n" +
			"runner's checkpoint without NATS). It prints one line per consumer and each gap with its\n" +
			"position, and exits 1 on any gap. Inbox rows of events older than the retention\n" +
			"(--inbox-retention, else ONBOARD_INBOX_RETENTION, else 168h) may have been pruned: those\n" +
			"are counted, not gaps.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("inbox-retention") {
				retention = defaultInboxRetention
				if r := os.Getenv("ONBOARD_INBOX_RETENTION"); r != "" {
					d, err := time.ParseDuration(r)
					if err != nil || d <= 0 {
						return fmt.Errorf("ONBOARD_INBOX_RETENTION: want a duration (e.g. 168h), got %q", r)
					}
					retention = d
				}
			}
			if retention <= 0 {
				return fmt.Errorf("--inbox-retention %s: want a positive duration", retention)
			}
			ctx := cmd.Context()
			store, p, err := openProjections(ctx)
			if err != nil {
				return err
			}
			defer store.Close()
			until, err := lastCommitted(ctx, store.Store)
			if err != nil {
				return err
			}
			// The pruner compares with the database's clock, not ours.
			var now time.Time
			if err := store.Pool().QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
				return fmt.Errorf("read the database's clock: %w", err)
			}
			opts := audit.CoverageOptions{Route: process.RouteOf, Until: until, InboxKeptSince: now.Add(-retention)}
			for _, m := range process.Managers() {
				opts.Inboxes = append(opts.Inboxes, audit.InboxConsumer{Handler: pmHandler(m), Route: m})
			}
			rep, err := audit.Coverage(ctx, store, p, consumerRecords{store.Pool()}, opts)
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
			} else if err := printCoverage(out, rep); err != nil {
				return err
			}
			return rep.Err()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().DurationVar(&retention, "inbox-retention", defaultInboxRetention, "how long the workers keep inbox rows")
	return cmd
}

// pmHandler names a process manager's consumer and its inbox rows, as
// startWorker registers it.
func pmHandler(manager string) string { return "pm-" + manager }

// printCoverage prints a table of one line per consumer, then one line
// per gap, as verify prints its FAIL lines.
func printCoverage(out io.Writer, rep audit.CoverageReport) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CONSUMER\tKIND\tPOSITION\tCOVERED\tNOT YET\tPRUNED\tVERDICT")
	for _, c := range rep.Consumers {
		verdict := "OK"
		switch {
		case c.GapCount == 1:
			verdict = "1 GAP"
		case c.GapCount > 1:
			verdict = fmt.Sprintf("%d GAPS", c.GapCount)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", c.Name, c.Kind, c.Position.Position, c.Covered, c.Pending, c.Pruned, verdict)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, c := range rep.Consumers {
		for _, g := range c.Gaps {
			fmt.Fprintf(out, "GAP %s position %d: event %s (%s version %d, %s): %s\n",
				c.Name, g.Position, g.EventID, g.StreamID, g.Version, g.Type, g.Detail)
		}
		if more := c.GapCount - len(c.Gaps); more > 0 {
			fmt.Fprintf(out, "GAP %s: ... and %d more\n", c.Name, more)
		}
	}
	verdict := "OK"
	if err := rep.Err(); err != nil {
		verdict = err.Error()
	}
	_, err := fmt.Fprintf(out, "read %d events in %s: %s\n", rep.Events, rep.Elapsed.Round(time.Millisecond), verdict)
	return err
}

// consumerRecords reads the process managers' inbox rows and runner
// checkpoints.
type consumerRecords struct{ pool *pgxpool.Pool }

func (r consumerRecords) Inbox(ctx context.Context, handlers []string) (map[string][]uuid.UUID, error) {
	rows, err := r.pool.Query(ctx, `SELECT handler, event_id FROM messaging_inbox WHERE handler = ANY($1)`, handlers)
	if err != nil {
		return nil, fmt.Errorf("read the inbox: %w", err)
	}
	out := map[string][]uuid.UUID{}
	var (
		h  string
		id uuid.UUID
	)
	if _, err := pgx.ForEachRow(rows, []any{&h, &id}, func() error {
		out[h] = append(out[h], id)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read the inbox: %w", err)
	}
	return out, nil
}

func (r consumerRecords) RunnerCheckpoints(ctx context.Context) (map[string]eventstore.Cursor, error) {
	rows, err := r.pool.Query(ctx, `SELECT name, transaction_id, position FROM onboard_pm_checkpoints`)
	if err != nil {
		return nil, fmt.Errorf("read the process-manager checkpoints: %w", err)
	}
	out := map[string]eventstore.Cursor{}
	var (
		name string
		c    eventstore.Cursor
	)
	if _, err := pgx.ForEachRow(rows, []any{&name, &c.TransactionID, &c.Position}, func() error {
		out[name] = c
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read the process-manager checkpoints: %w", err)
	}
	return out, nil
}
