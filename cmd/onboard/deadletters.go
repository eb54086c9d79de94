package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/messaging"
)

// newDeadLettersCmd is the operators' view of the messages handlers gave
// up on: the store is messaging.DeadLetters, this is wiring and
// presentation. Listing and showing read DATABASE_URL only, so they work
// while NATS is down; re-driving publishes and needs NATS_URL too.
func newDeadLettersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deadletters",
		Short: "List, inspect and re-drive the messages handlers gave up on",
		Long: "deadletters shows the dead letters of the process managers and other handlers (messages\n" +
			"that failed permanently or on every allowed delivery) and sends them to their handler\n" +
			"again once the cause is fixed. list and show read DATABASE_URL; redrive also needs NATS_URL.",
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown deadletters command %q (known: list, show, redrive)", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newDeadLettersListCmd(), newDeadLettersShowCmd(), newDeadLettersRedriveCmd())
	return cmd
}

// deadLetterPage is how many dead letters one query reads; a variable so
// that tests can make paging happen with a few.
var deadLetterPage = 100

// openDeadLetters opens the dead-letter store at DATABASE_URL. nc may be
// nil: the store then lists and gets but cannot re-drive.
func openDeadLetters(ctx context.Context, nc *nats.Conn) (*messaging.DeadLetters, func(), error) {
	url, err := databaseURL()
	if err != nil {
		return nil, nil, err
	}
	pool, err := openPool(ctx, url, 0)
	if err != nil {
		return nil, nil, err
	}
	dl, err := messaging.NewDeadLetters(ctx, pool, nc, messaging.StreamConfig{})
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("open the dead letters at DATABASE_URL: %w", err)
	}
	return dl, pool.Close, nil
}

func parseDeadLetterStatus(s string) (messaging.DeadLetterStatus, error) {
	switch st := messaging.DeadLetterStatus(s); st {
	case messaging.DeadLetterDead, messaging.DeadLetterRedriven, messaging.DeadLetterResolved:
		return st, nil
	}
	return "", fmt.Errorf("--status %q: want dead, redriven or resolved", s)
}

func parseDeadLetterID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, fmt.Errorf("dead letter id %q is not a positive number", s)
	}
	return id, nil
}

// eachDeadLetter calls fn with the dead letters f selects in id order, up
// to limit of them (0: all), reading a page at a time. It returns the id
// of the last one it passed to fn.
func eachDeadLetter(ctx context.Context, dl *messaging.DeadLetters, f messaging.DeadLetterFilter, limit int,
	fn func(messaging.DeadLetter) error) (int64, error) {
	n := 0
	for limit == 0 || n < limit {
		f.Limit = deadLetterPage
		if limit > 0 {
			f.Limit = min(f.Limit, limit-n)
		}
		page, err := dl.List(ctx, f)
		if err != nil {
			return f.AfterID, err
		}
		for _, d := range page {
			if err := fn(d); err != nil {
				return f.AfterID, err
			}
			f.AfterID = d.ID
			n++
		}
		if len(page) < f.Limit {
			break
		}
	}
	return f.AfterID, nil
}

func newDeadLettersListCmd() *cobra.Command {
	var (
		handler, status string
		limit           int
		asJSON          bool
	)
	cmd := &cobra.Command{
		Use:   "list [--handler H] [--status dead|redriven|resolved] [--limit N] [--json]",
		Short: "List dead letters in id order, as a table or JSON lines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := messaging.DeadLetterFilter{Handler: handler}
			if cmd.Flags().Changed("status") {
				var err error
				if f.Status, err = parseDeadLetterStatus(status); err != nil {
					return err
				}
			}
			if limit < 1 {
				return fmt.Errorf("--limit %d: list at least 1", limit)
			}
			ctx := cmd.Context()
			dl, closePool, err := openDeadLetters(ctx, nil)
			if err != nil {
				return err
			}
			defer closePool()
			var letters []messaging.DeadLetter
			last, err := eachDeadLetter(ctx, dl, f, limit, func(d messaging.DeadLetter) error {
				letters = append(letters, d)
				return nil
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				for _, d := range letters {
					if err := enc.Encode(newDeadLetterJSON(d)); err != nil {
						return err
					}
				}
			} else if err := printDeadLetters(out, letters); err != nil {
				return err
			}
			if len(letters) == limit {
				// On stderr, so that JSON lines stay clean.
				f.AfterID, f.Limit = last, 1
				if more, err := dl.List(ctx, f); err == nil && len(more) > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "more dead letters after id %d: raise --limit to see them\n", last)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&handler, "handler", "", "only this handler's dead letters")
	cmd.Flags().StringVar(&status, "status", "", "only dead letters in this status: dead, redriven or resolved")
	cmd.Flags().IntVar(&limit, "limit", 100, "list at most this many")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines instead of a table")
	return cmd
}

// deadLetterJSON is a dead letter in `list --json`: what the table shows,
// the error whole, without the message itself (`show` prints that).
type deadLetterJSON struct {
	ID           int64                      `json:"id"`
	Handler      string                     `json:"handler"`
	EventID      uuid.UUID                  `json:"event_id"`
	EventType    string                     `json:"event_type"`
	StreamID     string                     `json:"stream_id"`
	Subject      string                     `json:"subject"`
	Status       messaging.DeadLetterStatus `json:"status"`
	Deliveries   int64                      `json:"deliveries"`
	DeadCount    int                        `json:"dead_count"`
	RedriveCount int                        `json:"redrive_count"`
	Error        string                     `json:"error"`
	CreatedAt    time.Time                  `json:"created_at"`
	UpdatedAt    time.Time                  `json:"updated_at"`
}

func newDeadLetterJSON(d messaging.DeadLetter) deadLetterJSON {
	return deadLetterJSON{ID: d.ID, Handler: d.Handler, EventID: d.EventID, EventType: d.EventType,
		StreamID: d.StreamID, Subject: d.Subject, Status: d.Status, Deliveries: d.Deliveries,
		DeadCount: d.DeadCount, RedriveCount: d.RedriveCount, Error: d.Error,
		CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC()}
}

const deadLetterTime = "2006-01-02T15:04:05Z07:00"

func printDeadLetters(out io.Writer, letters []messaging.DeadLetter) error {
	if len(letters) == 0 {
		_, err := fmt.Fprintln(out, "no dead letters")
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tHANDLER\tEVENT TYPE\tSTREAM ID\tSTATUS\tDEAD\tREDRIVES\tUPDATED AT\tERROR")
	for _, d := range letters {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", d.ID, d.Handler, dash(d.EventType), dash(d.StreamID),
			d.Status, d.DeadCount, d.RedriveCount, d.UpdatedAt.UTC().Format(deadLetterTime), dash(oneLine(d.Error, 72)))
	}
	return w.Flush()
}

// oneLine folds s onto one line and shortens it to at most n runes by
// cutting its start: wrapped errors name the cause last, and the handler
// and event they start with are columns of their own.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return "…" + string(r[len(r)-(n-1):])
}

func newDeadLettersShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show <id>",
		Short: "Show one dead letter: every field, its headers and the event it carries",
		Args:  exactArgs(1, "one dead letter id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseDeadLetterID(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			dl, closePool, err := openDeadLetters(ctx, nil)
			if err != nil {
				return err
			}
			defer closePool()
			d, err := dl.Get(ctx, id)
			if err != nil {
				return err
			}
			return printDeadLetter(cmd.OutOrStdout(), d)
		},
	}
}

func printDeadLetter(out io.Writer, d messaging.DeadLetter) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, f := range [][2]string{
		{"id", strconv.FormatInt(d.ID, 10)},
		{"handler", d.Handler},
		{"status", string(d.Status)},
		{"event id", d.EventID.String()},
		{"event type", dash(d.EventType)},
		{"stream id", dash(d.StreamID)},
		{"subject", dash(d.Subject)},
		{"deliveries", strconv.FormatInt(d.Deliveries, 10)},
		{"dead count", strconv.Itoa(d.DeadCount)},
		{"redrive count", strconv.Itoa(d.RedriveCount)},
		{"created at", d.CreatedAt.UTC().Format(time.RFC3339Nano)},
		{"updated at", d.UpdatedAt.UTC().Format(time.RFC3339Nano)},
		{"error", dash(oneLine(d.Error, math.MaxInt))},
	} {
		fmt.Fprintf(w, "%s\t%s\n", f[0], f[1])
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nheaders")
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
		fmt.Fprintf(w, "  %s\t%s\n", k, oneLine(d.Headers[k], math.MaxInt))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nenvelope")
	e, err := messaging.UnmarshalEnvelope(d.Payload)
	if err != nil {
		// The payload is what was delivered; show it even when it is no
		// envelope, since that may be why the handler gave up.
		fmt.Fprintf(out, "  does not decode: %v\n  payload: %q\n", err, d.Payload)
		return nil
	}
	b, err := json.MarshalIndent(newEnvelopeJSON(e), "", "  ")
	if err != nil {
		return fmt.Errorf("dead letter %d: %w", d.ID, err)
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}

// envelopeJSON prints a decoded envelope: eventstore.Envelope has no JSON
// tags, and hashes read better in hex than in base64.
type envelopeJSON struct {
	ID            uuid.UUID           `json:"id"`
	StreamID      string              `json:"stream_id"`
	StreamType    string              `json:"stream_type"`
	Version       int64               `json:"version"`
	Cursor        string              `json:"cursor"`
	Type          string              `json:"type"`
	SchemaVersion int                 `json:"schema_version"`
	RecordedAt    time.Time           `json:"recorded_at"`
	Metadata      eventstore.Metadata `json:"metadata"`
	Data          json.RawMessage     `json:"data"`
	PrevHash      string              `json:"prev_hash,omitempty"`
	Hash          string              `json:"hash,omitempty"`
}

func newEnvelopeJSON(e eventstore.Envelope) envelopeJSON {
	data := e.Data
	if !json.Valid(data) {
		data = json.RawMessage("null")
	}
	return envelopeJSON{ID: e.ID, StreamID: e.StreamID, StreamType: e.StreamType, Version: e.Version,
		Cursor: e.Cursor().String(), Type: e.Type, SchemaVersion: e.SchemaVersion,
		RecordedAt: e.RecordedAt.UTC(), Metadata: e.Metadata, Data: data,
		PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)}
}

func newDeadLettersRedriveCmd() *cobra.Command {
	var (
		all     bool
		handler string
	)
	cmd := &cobra.Command{
		Use:   "redrive <id>... | --all [--handler H]",
		Short: "Send dead letters to their handler again (needs NATS_URL)",
		Long: "redrive publishes each dead letter's message again to the handler that gave up on it,\n" +
			"alone, and marks it redriven; the handler marks it resolved when it succeeds and dead\n" +
			"again when it fails. Named ids are all looked up before any is sent, so a typo (or a\n" +
			"resolved one) sends nothing. --all sends every dead letter in status dead (of --handler\n" +
			"only, if given).",
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case all && len(args) > 0:
				return fmt.Errorf("%s: name dead letter ids or give --all, not both", cmd.CommandPath())
			case !all && len(args) == 0:
				return fmt.Errorf("%s: name dead letter ids or give --all", cmd.CommandPath())
			case !all && cmd.Flags().Changed("handler"):
				return fmt.Errorf("%s: --handler selects with --all only", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var ids []int64
			for _, a := range args {
				id, err := parseDeadLetterID(a)
				if err != nil {
					return err
				}
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
			url := os.Getenv("NATS_URL")
			if url == "" {
				return errors.New("redrive publishes over NATS: set NATS_URL (list and show need only DATABASE_URL)")
			}
			nc, err := toolConnect(url, "onboard-deadletters")
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx := cmd.Context()
			dl, closePool, err := openDeadLetters(ctx, nc)
			if err != nil {
				return err
			}
			defer closePool()
			out := cmd.OutOrStdout()
			redrive := func(d messaging.DeadLetter) error {
				if err := dl.Redrive(ctx, d.ID); err != nil {
					return err
				}
				fmt.Fprintf(out, "redriven %d (handler %s, %s of %s)\n", d.ID, d.Handler, dash(d.EventType), dash(d.StreamID))
				return nil
			}
			if all {
				n := 0
				_, err := eachDeadLetter(ctx, dl, messaging.DeadLetterFilter{Handler: handler, Status: messaging.DeadLetterDead}, 0,
					func(d messaging.DeadLetter) error {
						n++
						return redrive(d)
					})
				if err == nil && n == 0 {
					fmt.Fprintln(out, "no dead letters to redrive")
				}
				return err
			}
			letters := make([]messaging.DeadLetter, 0, len(ids))
			for _, id := range ids {
				d, err := dl.Get(ctx, id)
				if err != nil {
					return err
				}
				if d.Status == messaging.DeadLetterResolved {
					return fmt.Errorf("dead letter %d is resolved (handler %s handled it since): nothing redriven", id, d.Handler)
				}
				letters = append(letters, d)
			}
			for _, d := range letters {
				if err := redrive(d); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "redrive every dead letter in status dead")
	cmd.Flags().StringVar(&handler, "handler", "", "with --all: only this handler's dead letters")
	return cmd
}
