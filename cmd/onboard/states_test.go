package main

import (
	"strings"
	"testing"

	"github.com/onboard/onboard/domain"
)

// TestStatesPrintsConditions: every edge of the transition table is a row
// of `onboard states`, with the condition that picks between two edges of
// one state and command.
func TestStatesPrintsConditions(t *testing.T) {
	out, stderr, failed := runOnboard(t, "states")
	if failed {
		t.Fatalf("onboard states failed: %s", stderr)
	}
	rows := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		rows[strings.Join(strings.Fields(line), " ")] = true
	}
	for _, want := range []string{
		"provisioning record_step_succeeded provisioning steps remain",
		"provisioning record_step_succeeded active last step",
		"paused retry_step verifying at verification",
		"paused cancel cancelled nothing to undo",
	} {
		if !rows[want] {
			t.Errorf("no row %q in\n%s", want, out)
		}
	}
	all := domain.Transitions()
	if len(rows) != len(all) {
		t.Errorf("%d rows for %d transitions:\n%s", len(rows), len(all), out)
	}
	for _, tr := range all {
		from := string(tr.From)
		if from == "" {
			from = "(new)"
		}
		want := strings.Join(strings.Fields(strings.Join([]string{from, string(tr.Command), string(tr.To), string(tr.When)}, " ")), " ")
		if !rows[want] {
			t.Errorf("transition %+v: no row %q", tr, want)
		}
	}
}
