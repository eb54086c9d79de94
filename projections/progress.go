package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/eventstore"
)

// ErrBehind means a projection did not reach the awaited cursor in time.
// WaitFor returns it inside a *BehindError.
var ErrBehind = errors.New("projections: projection has not caught up")

// ErrPositionNotFound means no stored event has the given global position.
var ErrPositionNotFound = errors.New("projections: no event at that position")

// BehindError says how far a projection was from the awaited cursor when
// the wait ended. It wraps ErrBehind and the context's error.
type BehindError struct {
	Projection string
	Target     eventstore.Cursor
	Checkpoint eventstore.Cursor
	Err        error
}

func (e *BehindError) Error() string {
	return fmt.Sprintf("projection %s at %s has not reached %s: %v", e.Projection, e.Checkpoint, e.Target, e.Err)
}

// Unwrap returns ErrBehind and the context's error.
func (e *BehindError) Unwrap() []error { return []error{ErrBehind, e.Err} }

// Checkpoint returns the checkpoint of the projection's active version:
// every event at or before it is reflected in what readers see.
func (p *Projections) Checkpoint(ctx context.Context, name string) (eventstore.Cursor, error) {
	if _, err := lookup(name); err != nil {
		return eventstore.Cursor{}, err
	}
	_, cp, err := activeCheckpoint(ctx, p.pool, name)
	if err != nil {
		return cp, fmt.Errorf("checkpoint of %s: %w", name, err)
	}
	return cp, nil
}

// WaitFor returns nil as soon as the projection has applied every event up
// to and including target, and a *BehindError (ErrBehind) when ctx ends
// first: bound the wait with ctx's deadline.
func (p *Projections) WaitFor(ctx context.Context, name string, target eventstore.Cursor) error {
	if _, err := lookup(name); err != nil {
		return err
	}
	t := time.NewTicker(p.cfg.PollInterval)
	defer t.Stop()
	var cp eventstore.Cursor
	for {
		// The read uses its own short context, so an expired wait still
		// reports where the projection got to.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, got, err := activeCheckpoint(rctx, p.pool, name)
		cancel()
		if err != nil {
			return fmt.Errorf("wait for %s: %w", name, err)
		}
		cp = got
		if cp.Compare(target) >= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return &BehindError{Projection: name, Target: target, Checkpoint: cp, Err: ctx.Err()}
		case <-t.C:
		}
	}
}

// CursorAt returns the cursor of the event at a global position, which is
// what a client gets back from the command API. streamID, when not empty,
// is the stream the event most likely belongs to and makes the lookup an
// index probe; without it (or when it misses) the lookup scans by position.
//
// The event-store contract has no lookup by position yet, so this reads the
// events table of eventstore/postgres directly.
func (p *Projections) CursorAt(ctx context.Context, position int64, streamID string) (eventstore.Cursor, error) {
	c := eventstore.Cursor{Position: position}
	var err error
	if streamID != "" {
		err = p.pool.QueryRow(ctx, `SELECT transaction_id FROM events WHERE stream_id = $1 AND position = $2`,
			streamID, position).Scan(&c.TransactionID)
		if err == nil {
			return c, nil
		}
	}
	if streamID == "" || errors.Is(err, pgx.ErrNoRows) {
		err = p.pool.QueryRow(ctx, `SELECT transaction_id FROM events WHERE position = $1`, position).Scan(&c.TransactionID)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Cursor{}, fmt.Errorf("cursor at position %d: %w", position, ErrPositionNotFound)
	}
	if err != nil {
		return eventstore.Cursor{}, fmt.Errorf("cursor at position %d: %w", position, err)
	}
	return c, nil
}

// Lag is how far a projection is behind the event store.
type Lag struct {
	Projection string
	Checkpoint eventstore.Cursor
	// Head is the last event that is safe to read.
	Head eventstore.Cursor
	// Positions is Head.Position minus Checkpoint.Position, at least 0:
	// about how many events are not applied yet (positions of rolled-back
	// appends are gaps, so it may overcount).
	Positions int64
	// Seconds is how long the oldest event not applied yet has been
	// stored, 0 when the projection is current.
	Seconds float64
}

// Lag measures how far the projection is behind the head of the log.
func (p *Projections) Lag(ctx context.Context, name string) (Lag, error) {
	cp, err := p.Checkpoint(ctx, name)
	if err != nil {
		return Lag{}, err
	}
	head, err := p.cfg.Source.Head(ctx)
	if err != nil {
		return Lag{}, fmt.Errorf("lag of %s: %w", name, err)
	}
	l := Lag{Projection: name, Checkpoint: cp, Head: head, Positions: max(0, head.Position-cp.Position)}
	if cp.Compare(head) >= 0 {
		return l, nil
	}
	next, err := p.cfg.Source.ReadAll(ctx, cp, 1)
	if err != nil {
		return Lag{}, fmt.Errorf("lag of %s: %w", name, err)
	}
	if len(next) == 1 {
		l.Seconds = max(0, p.cfg.Now().Sub(next[0].RecordedAt).Seconds())
	}
	return l, nil
}
