package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Result is one row of the benchmark table: a figure, optionally beside
// its ceiling, and the goal it is held to.
type Result struct {
	// Figure names the measurement ("append c=16").
	Figure string `json:"figure"`
	// Value is the measurement in Unit.
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Ceiling is the same work done raw (0 when the figure has none), and
	// CeilingName says what that raw work is ("raw INSERT").
	Ceiling     float64 `json:"ceiling,omitempty"`
	CeilingName string  `json:"ceiling_name,omitempty"`
	// Ratio is Value/Ceiling, 0 without a ceiling.
	Ratio float64 `json:"ratio,omitempty"`
	// Goal describes the target ("≥ 85% of ceiling"); empty when the
	// figure is informational.
	Goal string `json:"goal,omitempty"`
	// Met says whether the goal is met; nil without a goal.
	Met *bool `json:"met,omitempty"`
	// Count is how much work was measured (events, onboardings).
	Count int64 `json:"count"`
	// Elapsed is the wall time of the measurement.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Goal is a target a Result is held to.
type Goal struct {
	text string
	met  func(r Result) bool
}

// AtLeast is met when the value is at least v.
func AtLeast(v float64, unit string) Goal {
	return Goal{text: "≥ " + formatValue(v) + " " + unit, met: func(r Result) bool { return r.Value >= v }}
}

// RatioAtLeast is met when the value is at least share of the ceiling.
func RatioAtLeast(share float64) Goal {
	return Goal{text: fmt.Sprintf("≥ %.0f%% of ceiling", share*100), met: func(r Result) bool { return r.Ceiling > 0 && r.Ratio >= share }}
}

// NewResult returns the result of count units of work done in elapsed, as
// a rate per second, beside ceiling (0 for none), held to goal (the zero
// Goal for none).
func NewResult(figure, unit string, count int64, elapsed time.Duration, ceiling float64, ceilingName string, goal Goal) Result {
	r := Result{Figure: figure, Unit: unit, Count: count, Elapsed: elapsed}
	if elapsed > 0 {
		r.Value = float64(count) / elapsed.Seconds()
	}
	return r.WithCeiling(ceiling, ceilingName).WithGoal(goal)
}

// WithCeiling sets the ceiling and the ratio.
func (r Result) WithCeiling(ceiling float64, name string) Result {
	r.Ceiling, r.CeilingName, r.Ratio = ceiling, name, 0
	if ceiling > 0 {
		r.Ratio = r.Value / ceiling
	}
	return r
}

// WithGoal sets the goal and evaluates it.
func (r Result) WithGoal(g Goal) Result {
	r.Goal, r.Met = g.text, nil
	if g.met != nil {
		met := g.met(r)
		r.Met = &met
	}
	return r
}

// Report is the outcome of one `onboard bench` run.
type Report struct {
	Machine  Machine       `json:"machine"`
	Sizes    Sizes         `json:"sizes"`
	Started  time.Time     `json:"started"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Results  []Result      `json:"results"`
	Failures []Failure     `json:"failures,omitempty"`
}

// Failure is a figure that could not be measured.
type Failure struct {
	Figure string `json:"figure"`
	Error  string `json:"error"`
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// TableHeader is the header row of WriteTable.
var TableHeader = []string{"figure", "value", "ceiling", "ratio", "goal", "met?"}

// WriteTable writes the machine line and the table of results, one row
// per result, as aligned text that is also a Markdown table.
func (r Report) WriteTable(w io.Writer) error {
	rows := [][]string{TableHeader, {"---", "---:", "---:", "---:", "---", "---"}}
	for _, res := range r.Results {
		ceiling, ratio := "", ""
		if res.Ceiling > 0 {
			ceiling = formatValue(res.Ceiling) + " (" + res.CeilingName + ")"
			ratio = fmt.Sprintf("%.0f%%", res.Ratio*100)
		}
		met := ""
		if res.Met != nil {
			met = "no"
			if *res.Met {
				met = "yes"
			}
		}
		rows = append(rows, []string{res.Figure, formatValue(res.Value) + " " + res.Unit, ceiling, ratio, res.Goal, met})
	}
	widths := make([]int, len(TableHeader))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "machine: %s\n", r.Machine)
	fmt.Fprintf(&b, "run: %s, %s; sizes: %s\n\n", r.Started.UTC().Format(time.RFC3339), r.Elapsed.Round(time.Second), r.Sizes)
	for _, row := range rows {
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			if strings.HasPrefix(rows[1][i], "-") && strings.HasSuffix(rows[1][i], ":") {
				if cell == rows[1][i] {
					cell = strings.Repeat("-", widths[i]-1) + ":"
					pad = ""
				}
				fmt.Fprintf(&b, "| %s%s ", pad, cell)
				continue
			}
			if cell == rows[1][i] {
				cell, pad = strings.Repeat("-", widths[i]), ""
			}
			fmt.Fprintf(&b, "| %s%s ", cell, pad)
		}
		b.WriteString("|\n")
	}
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "FAILED %s: %s\n", f.Figure, f.Error)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// formatValue prints rates with thousands separators and small values
// (latencies) with one decimal.
func formatValue(v float64) string {
	if v >= 1000 || v == float64(int64(v)) {
		s := fmt.Sprintf("%.0f", v)
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	}
	return fmt.Sprintf("%.1f", v)
}

// NewValue returns a result that is a plain value (a latency), held to
// goal.
func NewValue(figure, unit string, v float64, count int64, goal Goal) Result {
	return Result{Figure: figure, Value: v, Unit: unit, Count: count}.WithGoal(goal)
}

// Percentile returns the p-quantile (0 ≤ p ≤ 1) of sorted, nearest rank;
// 0 for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
