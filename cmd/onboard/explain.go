package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/operator"
	"github.com/onboard/onboard/process"
)

// newExplainCmd answers "why is this customer not active?" from the
// database alone, as GET /v1/customers/{id}/explain does.
func newExplainCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain CUSTOMER_ID",
		Short: "Why a customer is where it is: a diagnosis, its events, provider calls, timers, inbox and dead letters",
		Long: "explain reads DATABASE_URL (it changes nothing) and prints a one-line diagnosis of what the\n" +
			"customer waits for and what happens next, then its events, every provider call with its\n" +
			"idempotency key, outcome and latency, its pending timers, inbox rows, dead letters and trace\n" +
			"ids. The diagnosis uses the retry and KYC settings of the environment (ONBOARD_RETRY_*, ONBOARD_KYC_*).\n" +
			"Set ONBOARD_MASTER_KEY (or _FILE) so that the customer's personal data is decrypted: without\n" +
			"it its encrypted fields read [encrypted]; after an erasure they read [erased].",
		Args: exactArgs(1, "one customer id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := uuid.Parse(args[0])
			if err != nil {
				return fmt.Errorf("customer id %q is not a UUID", args[0])
			}
			var pc process.Config
			if err := errors.Join(loadProcessConfig(&pc)...); err != nil {
				return err
			}
			ctx := cmd.Context()
			url, err := databaseURL()
			if err != nil {
				return err
			}
			pool, err := openPool(ctx, url, 0)
			if err != nil {
				return err
			}
			defer pool.Close()
			store, err := postgres.New(pool, postgres.Config{})
			if err != nil {
				return err
			}
			defer store.Close()
			dl, err := messaging.NewDeadLetters(ctx, pool, nil, messaging.StreamConfig{})
			if err != nil {
				return err
			}
			keys, err := toolKeys(store)
			if err != nil {
				return err
			}
			x := operator.Explainer{Events: store, Timers: timerSource{process.NewTimers(pool)}, Inbox: inboxSource{pool},
				DeadLetters: deadLetterSource{d: dl}, Policy: policyOf(pc), Keys: keys}
			out, err := x.Explain(ctx, id)
			if errors.Is(err, operator.ErrNotFound) {
				return fmt.Errorf("no customer %s in the database at DATABASE_URL", id)
			}
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			printExplanation(cmd.OutOrStdout(), out)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the explanation as JSON (as the API serves it)")
	return cmd
}

func printExplanation(w io.Writer, x operator.Explanation) {
	fmt.Fprintf(w, "customer %s: %s at %s\n%s\n", x.ID, x.State, x.Step, x.Diagnosis)
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") }
	section := func(title string, n int, header string, rows func(tw io.Writer)) {
		fmt.Fprintf(w, "\n%s (%d)\n", title, n)
		if n == 0 {
			return
		}
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		rows(tw)
		_ = tw.Flush()
	}
	section("events", len(x.Events), "VERSION\tRECORDED (UTC)\tTYPE\tACTOR\tREASON\tCORRELATION", func(tw io.Writer) {
		for _, e := range x.Events {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Version, ts(e.RecordedAt), e.Type, e.Actor, oneLine(e.Reason, 80), e.CorrelationID)
		}
	})
	section("provider calls", len(x.Calls), "STEP\tPROVIDER\tATTEMPT\tKEY\tREQUESTED (UTC)\tOUTCOME\tLATENCY\tERROR", func(tw io.Writer) {
		for _, c := range x.Calls {
			latency := "-"
			if c.LatencyMS != nil {
				latency = (time.Duration(*c.LatencyMS) * time.Millisecond).String()
			}
			outcome := c.Outcome
			if c.ErrorClass != "" {
				outcome += " (" + c.ErrorClass + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d.%d\t%s\t%s\t%s\t%s\t%s\n", c.Step, c.Provider, c.AttemptGroup, c.Attempt, c.IdempotencyKey,
				ts(c.RequestedAt), outcome, latency, oneLine(c.Message, 80))
		}
	})
	section("pending timers", len(x.Timers), "KIND\tSTEP\tATTEMPT\tDUE (UTC)\tREF", func(tw io.Writer) {
		for _, t := range x.Timers {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", t.Kind, t.Step, t.Attempt, ts(t.DueAt), t.Ref)
		}
	})
	section("inbox", len(x.Inbox), "HANDLER\tEVENT\tTYPE\tPROCESSED (UTC)", func(tw io.Writer) {
		for _, in := range x.Inbox {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", in.Handler, in.EventID, in.EventType, ts(in.ProcessedAt))
		}
	})
	section("dead letters", len(x.DeadLetters), "ID\tHANDLER\tTYPE\tSTATUS\tDELIVERIES\tERROR", func(tw io.Writer) {
		for _, d := range x.DeadLetters {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.Handler, d.EventType, d.Status, d.Deliveries, oneLine(d.Error, 80))
		}
	})
	fmt.Fprintf(w, "\ntrace ids: %s\n", strings.Join(x.TraceIDs, ", "))
}
