package bench

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/eventstore"
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
		seals, pub, err := sealsOf(ctx, s, until, benchSealEvery)
		if err != nil {
			return nil, err
		}
		rep, err := audit.VerifyAll(ctx, s, audit.VerifyOptions{Until: until,
			Seals: &audit.SealSource{Stored: seals, Keys: []ed25519.PublicKey{pub}}})
		if err != nil {
			return nil, err
		}
		if err := rep.Err(); err != nil {
			return nil, fmt.Errorf("verify found problems in the generated journeys: %w", err)
		}
		return []Result{NewResult("verify", "events/s", rep.Events, rep.Elapsed, ceiling, "raw SELECT", AtLeast(150000, "events/s"))}, nil
	}}
}

// benchSealEvery is how many events a seal of the verify figure covers:
// about a relay's seal interval of a busy pipeline.
const benchSealEvery = 10000

// sealsOf seals the log up to until every `every` events, as the relay
// would, with a key of its own, in memory: the verify figure checks every
// seal as `onboard replay verify` does.
func sealsOf(ctx context.Context, r eventstore.AllReader, until eventstore.Cursor, every int) ([]eventstore.Seal, ed25519.PublicKey, error) {
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, err
	}
	var (
		seals []eventstore.Seal
		d     eventstore.Digest
		n     int64
		cur   eventstore.Cursor
		heads = map[string]eventstore.Head{}
	)
	seal := func() {
		s := eventstore.Seal{Seq: int64(len(seals) + 1), Epoch: 1, Cursor: cur.String(), Events: n, Digest: d, SealedAt: time.Now()}
		for _, h := range heads {
			s.Heads = append(s.Heads, h)
		}
		s.Sign(key)
		seals = append(seals, s)
		clear(heads)
	}
	for cur.Compare(until) < 0 {
		events, err := r.ReadAll(ctx, cur, 10000)
		if err != nil {
			return nil, nil, err
		}
		if len(events) == 0 {
			break
		}
		for _, e := range events {
			if e.Cursor().Compare(until) > 0 {
				break
			}
			d, n, cur = d.Next(e.Hash), n+1, e.Cursor()
			heads[e.StreamID] = eventstore.Head{StreamID: e.StreamID, Version: e.Version, Hash: e.Hash}
			if n%int64(every) == 0 {
				seal()
			}
		}
	}
	if len(heads) > 0 {
		seal()
	}
	return seals, pub, nil
}

// Figures are the figures this package measures itself, in the order a
// run measures them; cmd/onboard adds those that need NATS or the whole
// pipeline.
func Figures() []Figure {
	return []Figure{AppendFigure(), ReadFigure(), RebuildFigure(), VerifyFigure()}
}
