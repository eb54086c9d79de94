package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/eventstore"
)

// Subscribe implements eventstore.Subscriber. It holds one pooled connection
// to LISTEN on Config.Channel and reads with ReadAll from another. When the
// listening connection fails it polls until it can listen again.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Cursor, handler eventstore.Handler) error {
	return s.subscribe(ctx, after, handler, 0)
}

// Paced returns s with subscriptions that, once caught up, read at most
// once per pace: under load each read and each batch of the handler's work
// covers more events, for up to pace more delay. For readers off the
// pipeline's critical path, such as projectors.
func (s *Store) Paced(pace time.Duration) *PacedStore {
	return &PacedStore{Store: s, pace: pace}
}

// PacedStore is a Store whose subscriptions are paced; see Store.Paced.
type PacedStore struct {
	*Store
	pace time.Duration
}

// Subscribe implements eventstore.Subscriber, paced.
func (p *PacedStore) Subscribe(ctx context.Context, after eventstore.Cursor, handler eventstore.Handler) error {
	return p.subscribe(ctx, after, handler, p.pace)
}

func (s *Store) subscribe(ctx context.Context, after eventstore.Cursor, handler eventstore.Handler, pace time.Duration) error {
	l := &listener{pool: s.pool, channel: s.cfg.Channel}
	defer l.close()
	cursor := after
	backoff := time.Duration(0)
	for {
		// Listen before reading, so that a commit between the read and the
		// wait still wakes the wait.
		l.ensure(ctx)
		events, err := s.ReadAll(ctx, cursor, s.cfg.BatchSize)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// A failed read is retried after the poll interval: the
			// subscription outlives a database restart.
			if werr := sleep(ctx, s.cfg.PollInterval); werr != nil {
				return werr
			}
			continue
		}
		for _, e := range events {
			if err := handler(ctx, e); err != nil {
				return fmt.Errorf("subscription handler at %s: %w", e.Cursor(), err)
			}
			cursor = e.Cursor()
		}
		if len(events) == s.cfg.BatchSize {
			continue // more to catch up on
		}
		// Events that committed but are held back behind an older open
		// transaction get no notification of their own when that
		// transaction ends (it may not be an append): look again soon,
		// backing off, rather than after the whole poll interval.
		wait := s.cfg.PollInterval
		if len(events) > 0 {
			backoff = 0
		}
		if held, err := s.heldBack(ctx); err == nil && held {
			backoff = min(max(2*backoff, time.Millisecond), s.cfg.PollInterval)
			wait = backoff
		}
		if pace > 0 && len(events) > 0 {
			// Let the next events gather; a notification meanwhile is
			// taken by the wait below, without waiting.
			if err := sleep(ctx, pace); err != nil {
				return err
			}
			wait = min(wait, time.Millisecond)
		}
		if err := l.wait(ctx, wait); err != nil {
			return err
		}
	}
}

// heldBackSQL asks whether committed events wait behind the horizon: the
// newest visible event's transaction is not below it. Not as EXISTS (...
// WHERE transaction_id >= horizon): the planner cannot know the horizon
// and guesses a third of the table matches, so it scans the table from
// its oldest rows for the newest; this is one step of a backward index
// scan however large the log.
const heldBackSQL = `SELECT coalesce((SELECT transaction_id FROM events ORDER BY transaction_id DESC LIMIT 1)
	>= pg_snapshot_xmin(pg_current_snapshot()), false)`

// heldBack reports whether committed events wait behind the horizon.
func (s *Store) heldBack(ctx context.Context) (bool, error) {
	var held bool
	err := s.pool.QueryRow(ctx, heldBackSQL).Scan(&held)
	return held, err
}

// listener is a connection that LISTENs, reacquired after failures.
type listener struct {
	pool    *pgxpool.Pool
	channel string
	conn    *pgxpool.Conn
}

func (l *listener) ensure(ctx context.Context) {
	if l.conn != nil {
		return
	}
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		conn.Release()
		return
	}
	l.conn = conn
}

// wait returns when a notification arrives or after the poll interval. It
// returns an error only when ctx is done.
func (l *listener) wait(ctx context.Context, poll time.Duration) error {
	if l.conn == nil {
		return sleep(ctx, poll)
	}
	wctx, cancel := context.WithTimeout(ctx, poll)
	defer cancel()
	_, err := l.conn.Conn().WaitForNotification(wctx)
	switch {
	case err == nil:
		// Take every other pending notification too: one read covers them.
		for {
			dctx, dcancel := context.WithTimeout(ctx, time.Millisecond)
			_, derr := l.conn.Conn().WaitForNotification(dctx)
			dcancel()
			if derr != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !errors.Is(derr, context.DeadlineExceeded) {
					l.drop()
				}
				return nil
			}
		}
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		return nil
	}
	l.drop()
	return nil
}

// drop discards a connection that failed: after an interrupted wait its
// state is unknown.
func (l *listener) drop() {
	if l.conn == nil {
		return
	}
	_ = l.conn.Conn().Close(context.Background())
	l.conn.Release()
	l.conn = nil
}

func (l *listener) close() {
	if l.conn == nil {
		return
	}
	// UNLISTEN so that the pooled connection does not keep queueing
	// notifications for nobody.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.conn.Exec(ctx, "UNLISTEN *"); err != nil {
		_ = l.conn.Conn().Close(ctx)
	}
	l.conn.Release()
	l.conn = nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
