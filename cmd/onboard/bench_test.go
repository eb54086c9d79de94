package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/onboard/onboard/internal/bench"
	"github.com/onboard/onboard/internal/pgtest"
)

// runBenchCmd runs `onboard bench args...` in-process and returns its
// stdout.
func runBenchCmd(t *testing.T, args ...string) string {
	t.Helper()
	// The bench creates and drops its own databases on DATABASE_URL's
	// server; a fresh database of the test's own is where it connects.
	t.Setenv("DATABASE_URL", pgtest.NewDatabase(t))
	var stdout, stderr bytes.Buffer
	root := newRootCmd()
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(append([]string{"bench"}, args...))
	if err := root.Execute(); err != nil {
		t.Fatalf("onboard bench %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

// tinySizes keep the whole run to seconds; the figures mean nothing.
var tinySizes = []string{"--events", "300", "--replay-events", "500", "--customers", "4",
	"--append-concurrency", "1,2", "--e2e-concurrency", "2,3", "--idle", "1s"}

// TestBenchJSON runs every figure with tiny sizes and checks the report's
// shape, never its figures.
func TestBenchJSON(t *testing.T) {
	out := runBenchCmd(t, append([]string{"--json"}, tinySizes...)...)
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(rep.Failures) > 0 {
		t.Fatalf("failures: %+v", rep.Failures)
	}
	if rep.Machine.CPUs == 0 || rep.Machine.Postgres == "" || rep.Sizes.Events != 300 {
		t.Errorf("machine or sizes missing: %+v %+v", rep.Machine, rep.Sizes)
	}
	want := []string{"append c=1", "append c=2", "read-all", "relay",
		"e2e c=2", "e2e c=2 p50 signup-to-active", "e2e c=2 p99 signup-to-active",
		"e2e c=2 CPU/onboarding, onboard", "e2e c=2 CPU/onboarding, Postgres",
		"e2e c=2 switches/onboarding, onboard", "e2e c=2 switches/onboarding, Postgres",
		"e2e c=3", "e2e c=3 p50 signup-to-active", "e2e c=3 p99 signup-to-active",
		"e2e c=3 CPU/onboarding, onboard", "e2e c=3 CPU/onboarding, Postgres",
		"e2e c=3 switches/onboarding, onboard", "e2e c=3 switches/onboarding, Postgres",
		"e2e live heap after the run", "e2e live heap after 1s idle",
		"rebuild customers", "rebuild provider_stats", "verify"}
	if !postgresOnThisHost(t) {
		want = slices.DeleteFunc(want, func(f string) bool { return strings.HasSuffix(f, "/onboarding, Postgres") })
	}
	var got []string
	for _, r := range rep.Results {
		got = append(got, r.Figure)
		// Postgres counts CPU in 10ms ticks: four tiny onboardings may
		// not cost one.
		cpu := strings.Contains(r.Figure, "CPU/")
		if r.Value < 0 || r.Value == 0 && !cpu || r.Unit == "" || r.Count <= 0 {
			t.Errorf("%s: value %v %q, count %d", r.Figure, r.Value, r.Unit, r.Count)
		}
		if hasCeiling := r.Ceiling > 0; hasCeiling != (r.CeilingName != "") || hasCeiling != (r.Ratio > 0) {
			t.Errorf("%s: ceiling %v %q, ratio %v", r.Figure, r.Ceiling, r.CeilingName, r.Ratio)
		}
		if (r.Goal != "") != (r.Met != nil) {
			t.Errorf("%s: goal %q without a verdict, or the reverse", r.Figure, r.Goal)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("figures\n got %q\nwant %q", got, want)
	}
	for _, r := range rep.Results {
		if strings.HasPrefix(r.Figure, "append") || r.Figure == "relay" || r.Figure == "read-all" ||
			strings.HasPrefix(r.Figure, "rebuild") || r.Figure == "verify" {
			if r.Ceiling <= 0 || r.Goal == "" {
				t.Errorf("%s has no ceiling or goal", r.Figure)
			}
		}
	}
}

// postgresOnThisHost reports whether the bench can see the test server's
// processes, and so measure their CPU time.
func postgresOnThisHost(t *testing.T) bool {
	cpu, err := bench.SampleCPU(context.Background(), pgtest.NewPool(t, pgtest.NewDatabase(t), 1))
	if err != nil {
		t.Fatal(err)
	}
	return cpu.Postgres != nil
}

// TestBenchTable checks the table of a run of two figures: a header, a
// Markdown separator and one row per result with every column.
func TestBenchTable(t *testing.T) {
	out := runBenchCmd(t, append([]string{"--only", "read,verify"}, tinySizes...)...)
	if !strings.HasPrefix(out, "machine: ") {
		t.Errorf("no machine line:\n%s", out)
	}
	var rows [][]string
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	if len(rows) != 4 {
		t.Fatalf("want header, separator and 2 rows, got %d:\n%s", len(rows), out)
	}
	if !slices.Equal(rows[0], bench.TableHeader) {
		t.Errorf("header %q", rows[0])
	}
	for i, row := range rows[2:] {
		if len(row) != len(bench.TableHeader) {
			t.Errorf("row %d has %d cells: %q", i, len(row), row)
			continue
		}
		if want := []string{"read-all", "verify"}[i]; row[0] != want || !strings.HasSuffix(row[1], "events/s") ||
			!strings.Contains(row[2], "raw SELECT") || !strings.HasSuffix(row[3], "%") || row[4] == "" ||
			(row[5] != "yes" && row[5] != "no") {
			t.Errorf("row %d: %q", i, row)
		}
	}
}

func TestBenchRejectsUnknownFigure(t *testing.T) {
	root := newRootCmd()
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	root.SetArgs([]string{"bench", "--only", "append,warp-speed"})
	if err := root.Execute(); !errors.Is(err, bench.ErrUnknownFigure) {
		t.Errorf("err = %v, want ErrUnknownFigure", err)
	}
}

// TestBenchWorkers runs the end-to-end rig with two worker roles: the
// onboardings complete, each worker's consumers handle some of the
// deliveries, and the runner of the other roles handles none.
func TestBenchWorkers(t *testing.T) {
	ctx := context.Background()
	env, err := bench.NewEnv(ctx, pgtest.NewDatabase(t), bench.Sizes{Events: 1, ReplayEvents: 1, Customers: 1,
		E2EConcurrency: []int{4}, Workers: 2}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	srv, cleanup, err := startBenchNATS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	rig, err := startE2E(ctx, env, embeddedNATS(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer rig.close()
	if _, _, err := rig.drive(ctx, 4, 40); err != nil {
		t.Fatal(err)
	}
	if len(rig.workers) != 2 {
		t.Fatalf("%d worker roles, want 2", len(rig.workers))
	}
	for i, base := range append([]string{rig.base}, rig.workers...) {
		handled := handledDeliveries(t, base)
		if i == 0 && handled != 0 || i > 0 && handled == 0 {
			t.Errorf("runner %d (%s) handled %d deliveries", i, base, handled)
		}
	}
}

// handledDeliveries sums the deliveries the process managers handled
// without error, from the metrics of the runner at base.
func handledDeliveries(t *testing.T, base string) int {
	t.Helper()
	_, body := call(t, "GET", base+"/metrics", "", "")
	var sum int
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "onboard_consumer_messages_total{") && strings.Contains(line, `outcome="ok"`) {
			n, err := strconv.ParseFloat(strings.TrimSpace(line[strings.LastIndexByte(line, ' '):]), 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			sum += int(n)
		}
	}
	return sum
}
