package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		// One line: drivers (pgx) put newlines in their errors.
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
		fmt.Fprintln(os.Stderr, "onboard:", msg)
		stop()
		os.Exit(1)
	}
}

// newRootCmd builds the command tree; each subcommand lives in a file of its
// own and is added here.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "onboard",
		Short:         "Event-sourced customer onboarding pipeline",
		Long:          "onboard takes a new business customer from signup through identity verification,\nbilling, tenant provisioning, CRM sync and a welcome email, and keeps a hash-chained\nevent log that proves what happened.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newStatesCmd(), newMigrateCmd(), newServeCmd(), newSimCmd(), newReplayCmd(), newDeadLettersCmd(), newDevCmd(), newBenchCmd())
	return root
}
