package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/eventstore"
)

// RebuildResult describes a finished rebuild.
type RebuildResult struct {
	Projection string
	// From and To are the versions before and after the switch.
	From, To int
	// Events is how many events were replayed into the new version.
	Events int64
	// Checkpoint is the new version's checkpoint at the switch.
	Checkpoint eventstore.Cursor
	Duration   time.Duration
}

// Rebuild replays the whole event log into new tables of the projection
// while the current ones keep serving, then switches readers and the live
// projector to them atomically and drops the old tables. It is what
// `onboard replay rebuild <projection>` runs. A failed or cancelled rebuild
// drops its half-built tables and their projection_versions row and leaves
// the current version in place; when Postgres stays out of reach for the
// cleanup too, the error says which version was left behind.
func (p *Projections) Rebuild(ctx context.Context, name string) (_ RebuildResult, err error) {
	start := time.Now()
	proj, err := p.lookup(name)
	if err != nil {
		return RebuildResult{}, err
	}
	res := RebuildResult{Projection: name}
	// The new tables get their secondary indexes after the bulk load.
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		active, _, err := lockActive(ctx, tx, name)
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT max(version) + 1 FROM projection_versions WHERE name = $1`, name).Scan(&res.To); err != nil {
			return err
		}
		if err := createLike(ctx, tx, proj, active, res.To); err != nil {
			return err
		}
		// Unlogged while it is bulk loaded: half the writes. A crash
		// meanwhile empties it, which only loses the rebuild.
		if _, err := tx.Exec(ctx, `ALTER TABLE `+proj.table(res.To)+` SET UNLOGGED`); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO projection_versions (name, version) VALUES ($1, $2)`, name, res.To)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("rebuild %s: prepare: %w", name, err)
	}
	switched := false
	defer func() {
		if switched {
			return
		}
		if dropErr := p.dropVersion(proj, res.To); dropErr != nil {
			err = errors.Join(err, fmt.Errorf("rebuild %s: version %d left behind: %w", name, res.To, dropErr))
		}
	}()

	// Catch up outside any lock: the live projector keeps serving.
	cp, n, err := p.bulkLoad(ctx, proj, res.To)
	res.Events += n
	if err != nil {
		return res, fmt.Errorf("rebuild %s: %w", name, err)
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := proj.index(ctx, tx, res.To); err != nil {
			return err
		}
		// Statistics now, not when autovacuum gets to it: readers switch
		// to the table in a moment and need good plans at once.
		_, err := tx.Exec(ctx, `ALTER TABLE `+proj.table(res.To)+` SET LOGGED; ANALYZE `+proj.table(res.To))
		return err
	})
	if err != nil {
		return res, fmt.Errorf("rebuild %s: index: %w", name, err)
	}

	// Switch: hold the active row (the live projector waits), replay the
	// few events that arrived meanwhile, point the view at the new tables.
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		from, _, err := lockActive(ctx, tx, name)
		if err != nil {
			return err
		}
		res.From = from
		for {
			n, next, err := p.replay(ctx, tx, proj, res.To, cp)
			if err != nil {
				return err
			}
			res.Events += int64(n)
			cp = next
			if n < p.cfg.RebuildBatchSize {
				break
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE projection_active SET version = $2 WHERE name = $1`, name, res.To); err != nil {
			return err
		}
		return pointView(ctx, tx, proj, res.To)
	})
	if err != nil {
		return res, fmt.Errorf("rebuild %s: switch: %w", name, err)
	}
	switched = true
	res.Checkpoint = cp
	// The switch is done: an old version left behind is harmless (no
	// reader uses it, the next rebuild takes a higher number).
	_ = p.dropVersion(proj, res.From)
	res.Duration = time.Since(start)
	return res, nil
}

// createLike creates the tables of version to of proj, with the grants
// of version from's.
func createLike(ctx context.Context, tx pgx.Tx, proj projection, from, to int) error {
	if err := proj.create(ctx, tx, to); err != nil {
		return err
	}
	grants, err := grantsOn(ctx, tx, proj.table(from), proj.table(to))
	if err != nil {
		return err
	}
	return grant(ctx, tx, grants)
}

// bulkLoad replays the log from the start into version, reading the next
// batch while the current one is applied, until it reaches the head. It
// returns the version's checkpoint and how many events it read.
func (p *Projections) bulkLoad(ctx context.Context, proj projection, version int) (eventstore.Cursor, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type batch struct {
		events []eventstore.Envelope
		err    error
	}
	batches := make(chan batch, 2)
	go func() {
		defer close(batches)
		after := eventstore.Start
		for {
			events, err := p.cfg.Source.ReadAll(ctx, after, p.cfg.RebuildBatchSize)
			select {
			case batches <- batch{events, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(events) < p.cfg.RebuildBatchSize {
				return
			}
			after = events[len(events)-1].Cursor()
		}
	}()
	cp := eventstore.Start
	var n int64
	for b := range batches {
		if b.err != nil {
			return cp, n, b.err
		}
		n += int64(len(b.events))
		if len(b.events) == 0 {
			break
		}
		err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			// A lost bulk-load commit only loses the rebuild, which starts
			// over: no need to wait for the WAL flush.
			if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return err
			}
			next, err := applyBatch(ctx, tx, proj, version, cp, b.events)
			cp = next
			return err
		})
		if err != nil {
			return cp, n, err
		}
	}
	return cp, n, nil
}

// replay reads one batch after cp and applies it to version in tx. It
// returns how many events it read and the new checkpoint.
func (p *Projections) replay(ctx context.Context, tx pgx.Tx, proj projection, version int, cp eventstore.Cursor) (int, eventstore.Cursor, error) {
	events, err := p.cfg.Source.ReadAll(ctx, cp, p.cfg.RebuildBatchSize)
	if err != nil || len(events) == 0 {
		return 0, cp, err
	}
	next, err := applyBatch(ctx, tx, proj, version, cp, events)
	return len(events), next, err
}

// dropVersion removes a version's tables and bookkeeping, in one
// transaction, unless the version is the active one. It runs after a
// rebuild failed, often because its connection was lost: the pool may
// still hold connections that died with it, each failing once, so it tries
// again on fresh ones for up to 30 seconds, with its own context since the
// rebuild's may be the one cancelled.
func (p *Projections) dropVersion(proj projection, version int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 2 * time.Second}
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		return struct{}{}, pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			// A switch whose commit was lost with its connection may have
			// committed: the version is then the active one and stays.
			active, _, err := lockActive(ctx, tx, proj.name())
			if err != nil || active == version {
				return err
			}
			if err := proj.drop(ctx, tx, version); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `DELETE FROM projection_versions WHERE name = $1 AND version = $2`, proj.name(), version)
			return err
		})
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(30*time.Second))
	return err
}
