package handlers

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/eventstore"
)

// RunConfig configures Run.
type RunConfig struct {
	// Name keys the checkpoint; two runners with one name share it.
	Name string
	// Pool holds the checkpoint table (onboard_pm_checkpoints).
	Pool *pgxpool.Pool
	// Source delivers the global log in order.
	Source eventstore.Subscriber
	// Workers handle events in parallel, each customer's events in order
	// by one worker; default 8.
	Workers int
}

// Run feeds the global log to Handle from the last checkpoint until ctx is
// done: the events RouteOf gives a manager (the next event is not at hand
// here, so it decides as for a relay's last event of a batch), the way the
// managers' consumers get them through NATS. Events of one customer go to
// one worker, in order; customers run in parallel. The checkpoint advances only past events whose handling is
// complete, so a crash redelivers what was in progress, which Handle
// tolerates. A failed Handle is retried with backoff, never skipped: no
// event without its effects.
func (pm *ProcessManager) Run(ctx context.Context, cfg RunConfig) error {
	if cfg.Name == "" || cfg.Pool == nil || cfg.Source == nil {
		return errors.New("handlers: Run needs Name, Pool and Source")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	start, err := loadCheckpoint(ctx, cfg.Pool, cfg.Name)
	if err != nil {
		return err
	}
	marks := &watermark{last: start}
	queues := make([]chan tracked, cfg.Workers)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan tracked, 64)
		wg.Add(1)
		go func(q <-chan tracked) {
			defer wg.Done()
			for it := range q {
				if pm.handleUntilDone(ctx, it.env) {
					marks.done(it.seq)
				}
			}
		}(queues[i])
	}
	saverDone := make(chan struct{})
	go func() {
		defer close(saverDone)
		pm.saveCheckpoints(ctx, cfg, marks)
	}()
	subErr := cfg.Source.Subscribe(ctx, start, func(ctx context.Context, env eventstore.Envelope) error {
		seq := marks.add(env.Cursor())
		if RouteOf(env, nil) == "" {
			marks.done(seq)
			return nil
		}
		h := fnv.New32a()
		h.Write([]byte(env.StreamID))
		select {
		case queues[int(h.Sum32())%len(queues)] <- tracked{seq: seq, env: env}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	<-saverDone
	// A last save with a fresh context: work finished before the stop
	// should not be redone.
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := saveCheckpoint(saveCtx, cfg.Pool, cfg.Name, marks.low()); err != nil {
		pm.cfg.Logger.Warn("saving the process-manager checkpoint failed", "err", err)
	}
	if errors.Is(subErr, context.Canceled) && ctx.Err() != nil {
		return ctx.Err()
	}
	return subErr
}

// handleUntilDone retries Handle with backoff until it succeeds (true) or
// ctx ends (false).
func (pm *ProcessManager) handleUntilDone(ctx context.Context, env eventstore.Envelope) bool {
	for failures := 0; ; failures++ {
		err := pm.Handle(ctx, env)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		pm.cfg.Logger.ErrorContext(ctx, "process manager failed to handle an event; retrying", "event_id", env.ID, "type", env.Type, "stream", env.StreamID, "failures", failures+1, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(FullJitter(50*time.Millisecond, 5*time.Second, failures+1, 0.5+pm.cfg.Rand()/2)):
		}
	}
}

func (pm *ProcessManager) saveCheckpoints(ctx context.Context, cfg RunConfig, marks *watermark) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	saved := eventstore.Cursor{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if low := marks.low(); low != saved {
			if err := saveCheckpoint(ctx, cfg.Pool, cfg.Name, low); err != nil {
				if ctx.Err() == nil {
					pm.cfg.Logger.Warn("saving the process-manager checkpoint failed", "err", err)
				}
				continue
			}
			saved = low
		}
	}
}

// RunTimers fires due timers until ctx is done, checking every interval
// (default 100ms) and at once while there are more due.
func (pm *ProcessManager) RunTimers(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	for {
		fired, err := pm.FireDue(ctx, 32)
		if err != nil && ctx.Err() == nil {
			pm.cfg.Logger.Warn("firing timers failed", "err", err)
		}
		if fired > 0 && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// FireDue fires up to limit due timers and returns how many it fired. A
// timer whose reaction fails stays leased and fires again after the lease.
func (pm *ProcessManager) FireDue(ctx context.Context, limit int) (int, error) {
	due, err := pm.cfg.Timers.claimDue(ctx, limit)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, tm := range due {
		if err := pm.Fire(ctx, tm); err != nil {
			errs = append(errs, fmt.Errorf("%s timer of %s: %w", tm.Kind, tm.CustomerID, err))
			continue
		}
		if err := pm.cfg.Timers.done(ctx, tm); err != nil {
			errs = append(errs, err)
		}
	}
	return len(due), errors.Join(errs...)
}

type tracked struct {
	seq uint64
	env eventstore.Envelope
}

// watermark tracks events handed to workers and finds the cursor before
// which every event is handled: the checkpoint.
type watermark struct {
	mu      sync.Mutex
	next    uint64
	pending []mark // in delivery order
	last    eventstore.Cursor
}

type mark struct {
	seq    uint64
	cursor eventstore.Cursor
	done   bool
}

func (w *watermark) add(c eventstore.Cursor) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	w.pending = append(w.pending, mark{seq: w.next, cursor: c})
	return w.next
}

func (w *watermark) done(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) == 0 {
		return
	}
	if i := int(seq - w.pending[0].seq); i >= 0 && i < len(w.pending) {
		w.pending[i].done = true
	}
	n := 0
	for n < len(w.pending) && w.pending[n].done {
		w.last = w.pending[n].cursor
		n++
	}
	w.pending = w.pending[n:]
}

func (w *watermark) low() eventstore.Cursor {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func loadCheckpoint(ctx context.Context, pool *pgxpool.Pool, name string) (eventstore.Cursor, error) {
	var tx, pos int64
	err := pool.QueryRow(ctx, `SELECT transaction_id, position FROM onboard_pm_checkpoints WHERE name = $1`, name).Scan(&tx, &pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Cursor{}, fmt.Errorf("load checkpoint %s: %w", name, err)
	}
	return eventstore.Cursor{TransactionID: uint64(tx), Position: pos}, nil
}

func saveCheckpoint(ctx context.Context, pool *pgxpool.Pool, name string, c eventstore.Cursor) error {
	_, err := pool.Exec(ctx, `
INSERT INTO onboard_pm_checkpoints (name, transaction_id, position) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, position = EXCLUDED.position`,
		name, int64(c.TransactionID), c.Position)
	return err
}
