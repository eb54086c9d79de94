package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	backoffv5 "github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/eventstore"
)

// lead publishes while conn holds the lock. It returns when ctx is done or
// conn fails (the lock may be gone).
func (r *Relay) lead(ctx context.Context, conn *pgx.Conn) error {
	l, err := r.startLead(ctx, conn)
	if err != nil {
		return err
	}
	for {
		err := ctx.Err()
		if err == nil {
			if err = l.round(ctx); err == nil {
				continue
			}
		}
		if ctx.Err() != nil {
			l.sealOnStop(ctx)
		} else if l.seal != nil {
			// The lock goes with the lead: the seal being written ends first.
			_ = l.collectSeal(true)
		}
		return err
	}
}

// leader is one term of a relay holding the lock: the state of its rounds.
type leader struct {
	r    *Relay
	conn *pgx.Conn
	log  *slog.Logger
	s    leadState
	// reconnects is the NATS connection's reconnect count at the last
	// round; a change asks for a stream check.
	reconnects uint64
	// failures counts consecutive failed rounds, for backoff.
	failures int
	// ahead delivers the batch read while the last one was acknowledged.
	ahead chan readResult
	// poll is the schedule of waits for new events. It starts short after
	// activity (taking the lead counts: appends notified before the LISTEN
	// may still be held back) and lengthens to the polling interval.
	poll *backoffv5.ExponentialBackOff
	// seal is the sealing state, nil when the relay does not seal.
	seal *sealer
}

// startLead listens for the store's notifications and loads the cursor.
func (r *Relay) startLead(ctx context.Context, conn *pgx.Conn) (*leader, error) {
	if r.cfg.NotifyChannel != "" {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{r.cfg.NotifyChannel}.Sanitize()); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	committed, incarnation, err := loadCursor(ctx, conn, r.cfg.Name)
	if err != nil {
		return nil, err
	}
	l := &leader{
		r:          r,
		conn:       conn,
		log:        r.cfg.Logger.With("relay", r.cfg.Name),
		s:          leadState{committed: committed, from: committed, check: true, storedIncarnation: incarnation},
		reconnects: r.cfg.Conn.Stats().Reconnects,
		poll:       doubling(time.Millisecond, r.cfg.PollInterval),
	}
	if r.cfg.Seal != nil {
		if l.seal, err = r.startSealer(ctx, l.log); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// round checks the stream when that is due, then publishes the next batch
// or, when there is none, waits for one. An error ends the lead.
func (l *leader) round(ctx context.Context) error {
	if err := l.collectSeal(false); err != nil {
		return err
	}
	if l.checkDue() {
		if l.seal != nil {
			if err := l.collectSeal(true); err != nil {
				return err
			}
			if err := l.checkSeals(ctx); err != nil {
				return l.retry(ctx, "relay: seal check failed, retrying", err)
			}
		}
		if err := l.r.checkStream(ctx, &l.s, l.log); err != nil {
			return l.retry(ctx, "relay: stream check failed, retrying", err)
		}
	}
	if l.floorDue() {
		l.recordFloors(ctx)
	}
	batch, err := l.next(ctx)
	if err != nil {
		return l.retry(ctx, "relay: read events failed, retrying", err)
	}
	if len(batch) == 0 {
		return l.wait(ctx)
	}
	return l.send(ctx, batch)
}

// checkDue reports whether the stream is to be compared with the cursor:
// after a NATS reconnect, when something asked for it, or every
// CheckInterval.
func (l *leader) checkDue() bool {
	if rc := l.r.cfg.Conn.Stats().Reconnects; rc != l.reconnects {
		l.reconnects = rc
		l.s.check = true
	}
	return l.s.check || time.Since(l.s.checkedAt) >= l.r.cfg.CheckInterval
}

// retry logs the failure of a round and waits the backoff before the next,
// still proving the lock session alive.
func (l *leader) retry(ctx context.Context, msg string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	l.failures++
	l.log.Warn(msg, "err", err)
	_, err = l.r.idle(ctx, l.conn, backoff(l.failures))
	return err
}

// next returns the batch after s.from: the one read ahead if it starts
// there and no check is pending, else one read now.
func (l *leader) next(ctx context.Context) ([]eventstore.Envelope, error) {
	if ra := l.ahead; ra != nil {
		l.ahead = nil
		res := <-ra
		if res.err == nil && res.from == l.s.from && !l.s.check && res.events != nil {
			return res.events, nil
		}
	}
	return l.r.read(ctx, l.s.from)
}

// wait stores the cursor and waits for a notification or the next poll.
//
// Events that committed may not be safe to read yet: a transaction
// elsewhere (any that writes, on the whole server) holds the store's
// horizon back, and its end sends no notification. So after activity the
// relay looks again soon, backing off to the polling interval.
func (l *leader) wait(ctx context.Context) error {
	l.failures = 0
	if err := l.r.storeCursor(ctx, l.conn, &l.s); err != nil {
		return err
	}
	if l.seal != nil && l.seal.due() {
		l.sealNow(ctx)
	}
	woken, err := l.r.idle(ctx, l.conn, l.poll.NextBackOff())
	if err != nil {
		return err
	}
	if woken {
		l.poll.Reset()
	}
	return nil
}

// send publishes batch and, once JetStream acknowledged all of it, moves
// s.from past it, storing the cursor every CursorInterval.
func (l *leader) send(ctx context.Context, batch []eventstore.Envelope) error {
	l.poll.Reset()
	if err := l.r.publish(ctx, batch, &l.s, func() { l.readAhead(ctx, batch) }); err != nil {
		return l.publishFailed(ctx, err)
	}
	l.failures = 0
	if l.r.cfg.afterPublish != nil {
		l.r.cfg.afterPublish(ctx, batch)
	}
	if l.seal != nil {
		if err := l.fold(ctx, l.s.from, batch); err != nil {
			return l.retry(ctx, "relay: folding the batch into the seal failed", err)
		}
	}
	last := batch[len(batch)-1]
	l.s.from = last.Cursor()
	l.r.published.Add(int64(len(batch)))
	l.r.cfg.Metrics.EventsRelayed(len(batch), time.Since(last.RecordedAt))
	if l.seal != nil && l.seal.due() {
		l.sealNow(ctx)
	}
	if time.Since(l.s.storedAt) >= l.r.cfg.CursorInterval {
		return l.r.storeCursor(ctx, l.conn, &l.s)
	}
	return nil
}

// readAhead reads the batch after a full one while JetStream acknowledges
// it; next takes it up.
func (l *leader) readAhead(ctx context.Context, batch []eventstore.Envelope) {
	if len(batch) < l.r.cfg.BatchSize {
		return
	}
	from := batch[len(batch)-1].Cursor()
	ch := make(chan readResult, 1)
	l.ahead = ch
	go func() {
		events, err := l.r.read(ctx, from)
		ch <- readResult{from: from, events: events, err: err}
	}()
}

// publishFailed asks for a stream check and, unless the stream merely
// moved (the check will rewind), waits the backoff before the batch is
// published again.
func (l *leader) publishFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	l.s.check = true
	if errors.Is(err, errStreamMoved) {
		l.log.Debug("relay: stream moved, checking it", "err", err)
		return nil
	}
	l.failures++
	l.log.Warn("relay: publish failed, publishing the batch again", "err", err, "from", l.s.from.String())
	return sleep(ctx, backoff(l.failures))
}

// read reads the next batch after from. Every append is durable when it
// returns, so what the relay publishes cannot be taken back by a crash of
// the database.
func (r *Relay) read(ctx context.Context, from eventstore.Cursor) ([]eventstore.Envelope, error) {
	return r.cfg.Store.ReadAll(ctx, from, r.cfg.BatchSize)
}

// storeCursor stores s.from as the cursor when the relay has come past the
// stored one. The stream incarnation is stored only once the stream has
// everything up to the cursor again: a relay that dies while re-publishing
// into a recreated stream leaves its successor a reason to start over.
func (r *Relay) storeCursor(ctx context.Context, conn *pgx.Conn, s *leadState) error {
	cmp := s.from.Compare(s.committed)
	if cmp < 0 || cmp == 0 && s.incarnation == s.storedIncarnation {
		return nil
	}
	if err := storeCursor(ctx, conn, r.cfg.Name, s.from, s.incarnation); err != nil {
		return err
	}
	s.committed = s.from
	s.storedIncarnation = s.incarnation
	s.storedAt = time.Now()
	return nil
}

// readResult is a batch read ahead.
type readResult struct {
	from   eventstore.Cursor
	events []eventstore.Envelope
	err    error
}

// leadState is what an active relay tracks between rounds.
type leadState struct {
	// committed is the stored cursor; from is where the next read starts:
	// everything up to it is acknowledged (it is before committed after a
	// rewind).
	committed, from eventstore.Cursor
	// storedAt is when the cursor was last stored.
	storedAt time.Time
	// check asks for a comparison of the stream with the cursor before
	// the next round; checkedAt is when the last one happened.
	check     bool
	checkedAt time.Time
	// flooredAt is when the consumers' floors were last recorded.
	flooredAt time.Time
	// lastSeq is the highest stream sequence seen; a new (not duplicate)
	// ack below it means the stream was recreated.
	lastSeq uint64
	// incarnation is the creation time (Unix ns) of the stream seen by the
	// last check; storedIncarnation the one stored with the cursor.
	incarnation, storedIncarnation int64
}

// idle waits up to d for a notification or ctx, and reports whether a
// notification came. It also proves the lock session alive: an error from
// it means the lock may be gone.
func (r *Relay) idle(ctx context.Context, conn *pgx.Conn, d time.Duration) (woken bool, err error) {
	if r.cfg.NotifyChannel == "" {
		if err := sleep(ctx, d); err != nil {
			return false, err
		}
		// Prove the session alive at the polling pace, not at every
		// short wait.
		if d >= r.cfg.PollInterval {
			if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
				return false, fmt.Errorf("lock session: %w", err)
			}
		}
		return false, nil
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_, err = conn.WaitForNotification(wctx)
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		return false, ctx.Err()
	case wctx.Err() != nil && !conn.IsClosed():
		return false, nil
	}
	return false, fmt.Errorf("lock session: %w", err)
}
