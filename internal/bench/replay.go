package bench

import (
	"context"
	"fmt"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/projections"
)

// RebuildFigure measures Projections.Rebuild of each projection over the
// generated journeys (Env.Journeys) against the raw SELECT scan of the same
// log.
func RebuildFigure() Figure {
	return Figure{Name: "rebuild", Run: func(ctx context.Context, env *Env) ([]Result, error) {
		s, err := env.Journeys(ctx)
		if err != nil {
			return nil, err
		}
		p, err := projections.New(projections.Config{Pool: s.Pool(), Source: s})
		if err != nil {
			return nil, err
		}
		var results []Result
		for _, name := range projections.Names() {
			ceiling, err := RawScan(ctx, s.Pool())
			if err != nil {
				return nil, err
			}
			res, err := p.Rebuild(ctx, name)
			if err != nil {
				return nil, err
			}
			results = append(results, NewResult("rebuild "+name, "events/s", res.Events, res.Duration,
				ceiling, "raw SELECT", AtLeast(50000, "events/s")))
		}
		return results, nil
	}}
}

// VerifyFigure measures audit.VerifyAll, the engine of `onboard replay
// verify`, over the generated journeys against the raw SELECT scan of the
// same log.
func VerifyFigure() Figure {
	return Figure{Name: "verify", Run: func(ctx context.Context, env *Env) ([]Result, error) {
		s, err := env.Journeys(ctx)
		if err != nil {
			return nil, err
		}
		until, err := s.Head(ctx)
		if err != nil {
			return nil, err
		}
		ceiling, err := RawScan(ctx, s.Pool())
		if err != nil {
			return nil, err
		}
		rep, err := audit.VerifyAll(ctx, s, audit.VerifyOptions{Until: until})
		if err != nil {
			return nil, err
		}
		if err := rep.Err(); err != nil {
			return nil, fmt.Errorf("verify found problems in the generated journeys: %w", err)
		}
		return []Result{NewResult("verify", "events/s", rep.Events, rep.Elapsed, ceiling, "raw SELECT", AtLeast(100000, "events/s"))}, nil
	}}
}

// Figures are the figures this package measures itself, in the order a
// run measures them; cmd/onboard adds those that need NATS or the whole
// pipeline.
func Figures() []Figure {
	return []Figure{AppendFigure(), ReadFigure(), RebuildFigure(), VerifyFigure()}
}
