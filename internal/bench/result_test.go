package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFormatValue(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {7.25, "7.2"}, {999.5, "999.5"}, {1000, "1,000"}, {1234567.8, "1,234,568"}, {42, "42"},
	}
	for _, tt := range tests {
		if got := formatValue(tt.in); got != tt.want {
			t.Errorf("formatValue(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{{0, time.Millisecond}, {0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}}
	for _, tt := range tests {
		if got := Percentile(d, tt.p); got != tt.want {
			t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("Percentile(nil) = %v", got)
	}
}

func TestGoals(t *testing.T) {
	tests := []struct {
		name string
		r    Result
		want bool
	}{
		{"ratio met", NewResult("a", "events/s", 900, time.Second, 1000, "raw", RatioAtLeast(0.85)), true},
		{"ratio missed", NewResult("a", "events/s", 800, time.Second, 1000, "raw", RatioAtLeast(0.85)), false},
		{"at least", NewResult("b", "events/s", 300, time.Second, 0, "", AtLeast(300, "events/s")), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.r.Met == nil || *tt.r.Met != tt.want {
				t.Errorf("met = %v, want %v (%+v)", tt.r.Met, tt.want, tt.r)
			}
		})
	}
	if r := NewResult("d", "events/s", 1, time.Second, 0, "", Goal{}); r.Met != nil || r.Goal != "" {
		t.Errorf("no goal: %+v", r)
	}
}

func TestSelect(t *testing.T) {
	figs := []Figure{{Name: "append"}, {Name: "read"}, {Name: "verify"}}
	got, err := Select(figs, []string{"verify", "append"})
	if err != nil || len(got) != 2 || got[0].Name != "append" || got[1].Name != "verify" {
		t.Errorf("Select = %v, %v", got, err)
	}
	if _, err := Select(figs, []string{"nope"}); !errors.Is(err, ErrUnknownFigure) {
		t.Errorf("err = %v", err)
	}
}

func TestWriteTable(t *testing.T) {
	rep := Report{Results: []Result{
		NewResult("append c=1", "events/s", 1000, time.Second, 1100, "raw INSERT", RatioAtLeast(0.85)),
		NewValue("e2e c=50 p99 signup-to-active", "ms", 120.5, 10, Goal{}),
	}, Failures: []Failure{{Figure: "relay", Error: "boom"}}}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for line := range strings.Lines(b.String()) {
		if strings.HasPrefix(line, "|") {
			rows = append(rows, line)
		}
	}
	if len(rows) != 4 {
		t.Fatalf("rows:\n%s", b.String())
	}
	for _, want := range []string{"1,000 events/s", "1,100 (raw INSERT)", "91%", "≥ 85% of ceiling", "yes", "120.5 ms", "FAILED relay: boom"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	width := len([]rune(rows[0]))
	for _, r := range rows {
		if len([]rune(r)) != width {
			t.Errorf("rows are not aligned:\n%s", b.String())
			break
		}
	}
}
