package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/onboard/onboard/domain"
)

// newStatesCmd prints the Customer transition table, so that operators can
// see which command is allowed in which state without reading the code.
// Where a command has two edges out of one state, WHEN names the condition
// that picks each.
func newStatesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "states",
		Short: "Print the Customer state machine's transition table",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "STATE\tCOMMAND\tNEXT STATE\tWHEN")
			for _, tr := range domain.Transitions() {
				from := string(tr.From)
				if from == "" {
					from = "(new)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", from, tr.Command, tr.To, tr.When)
			}
			return w.Flush()
		},
	}
}
