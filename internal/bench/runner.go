package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Figure is one measurement of the harness, with its ceiling.
type Figure struct {
	// Name is what --only selects ("append").
	Name string
	// Run measures the figure and returns its rows.
	Run func(ctx context.Context, env *Env) ([]Result, error)
}

// ErrUnknownFigure is returned for an --only name that is no figure.
var ErrUnknownFigure = errors.New("unknown figure")

// Select returns the figures named in only (all of them when only is
// empty), in the order of figures.
func Select(figures []Figure, only []string) ([]Figure, error) {
	if len(only) == 0 {
		return figures, nil
	}
	var names []string
	for _, f := range figures {
		names = append(names, f.Name)
	}
	for _, name := range only {
		if !slices.Contains(names, name) {
			return nil, fmt.Errorf("%w %q: choose from %s", ErrUnknownFigure, name, strings.Join(names, ", "))
		}
	}
	return slices.DeleteFunc(slices.Clone(figures), func(f Figure) bool { return !slices.Contains(only, f.Name) }), nil
}

// Run measures figures one after the other (never at once: they would
// compete for the same cores) and returns the report. A figure that fails
// is recorded in Report.Failures and the others still run; Run returns an
// error only when ctx ends.
func Run(ctx context.Context, env *Env, figures []Figure) (Report, error) {
	rep := Report{Machine: env.DescribeMachine(ctx), Sizes: env.sizes, Started: time.Now()}
	for _, f := range figures {
		env.Progressf("measuring %s", f.Name)
		start := time.Now()
		results, err := f.Run(ctx, env)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		if err != nil {
			rep.Failures = append(rep.Failures, Failure{Figure: f.Name, Error: err.Error()})
			env.Progressf("%s failed: %v", f.Name, err)
			continue
		}
		rep.Results = append(rep.Results, results...)
		env.Progressf("%s done in %s", f.Name, time.Since(start).Round(time.Millisecond))
	}
	rep.Elapsed = time.Since(rep.Started)
	return rep, nil
}
