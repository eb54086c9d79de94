package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/internal/bench"
	"github.com/onboard/onboard/messaging"
)

// completionWatcher follows the published events and tells waiters when their
// customer's onboarding completed, or that it ended otherwise (rejected,
// paused, cancelled).
type completionWatcher struct {
	store *bench.Store
	nc    *nats.Conn

	mu      sync.Mutex
	ended   map[uuid.UUID]completion
	waiters map[uuid.UUID]chan completion
}

type completion struct {
	at        time.Time
	eventType string
}

// watchCompletions opens the store the figures are read from and follows
// the customers' ending events as the relay publishes them, on plain NATS
// subscriptions: the watcher, which is no part of the pipeline, then
// costs the database nothing while it measures (a subscription to the
// event store read every event again), and it sees a completion when the
// pipeline's own consumers can, a few milliseconds after its commit.
//
// It subscribes to event subjects, which no role may: it connects as admin.
func watchCompletions(ctx context.Context, dbURL string, admin func(name string) (*nats.Conn, error)) (*completionWatcher, error) {
	store, err := bench.OpenStore(ctx, dbURL, 4)
	if err != nil {
		return nil, err
	}
	nc, err := admin("onboard bench watcher")
	if err != nil {
		store.Close()
		return nil, err
	}
	w := &completionWatcher{store: store, nc: nc, ended: map[uuid.UUID]completion{}, waiters: map[uuid.UUID]chan completion{}}
	stream := messaging.StreamConfig{SubjectPrefix: messaging.DefaultSubjectPrefix} // run's subjects
	for _, typ := range []string{domain.TypeOnboardingCompleted, domain.TypeVerificationRejected, domain.TypePaused, domain.TypeCancelled} {
		if _, err := nc.Subscribe(stream.EventTypeFilter(typ), func(m *nats.Msg) {
			id, err := uuid.Parse(strings.TrimPrefix(m.Header.Get(messaging.HeaderStreamID), "customer-"))
			if err != nil {
				return // not a customer stream
			}
			w.notify(id, completion{at: time.Now(), eventType: typ})
		}); err != nil {
			w.close()
			return nil, err
		}
	}
	if err := nc.Flush(); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func (w *completionWatcher) notify(id uuid.UUID, c completion) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.waiters[id]; ok {
		delete(w.waiters, id)
		ch <- c
		return
	}
	w.ended[id] = c
}

// wait returns when the customer's onboarding completed, or an error when
// it ended otherwise or took longer than timeout.
func (w *completionWatcher) wait(ctx context.Context, id uuid.UUID, timeout time.Duration) (time.Time, error) {
	w.mu.Lock()
	c, ok := w.ended[id]
	var ch chan completion
	if ok {
		delete(w.ended, id)
	} else {
		ch = make(chan completion, 1)
		w.waiters[id] = ch
	}
	w.mu.Unlock()
	if !ok {
		select {
		case c = <-ch:
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(timeout):
			return time.Time{}, fmt.Errorf("customer %s: onboarding not complete after %s", id, timeout)
		}
	}
	if c.eventType != domain.TypeOnboardingCompleted {
		return time.Time{}, fmt.Errorf("customer %s ended with %s instead of completing", id, c.eventType)
	}
	return c.at, nil
}

func (w *completionWatcher) close() {
	w.nc.Close()
	w.store.Close()
}

// storeLatencies returns p50 and p99 in milliseconds of the time from the
// signup (since since) to the completion of each customer as the event
// store recorded them: the pipeline's own latency, without the API's and
// the watcher's.
func storeLatencies(ctx context.Context, pool *pgxpool.Pool, since time.Time) ([2]float64, error) {
	var out [2]float64
	err := pool.QueryRow(ctx, `SELECT
			coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), 0), coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), 0)
		FROM (SELECT extract(epoch FROM c.recorded_at - s.recorded_at) * 1000 AS ms
			FROM events s JOIN events c ON c.stream_id = s.stream_id AND c.type = $2
			WHERE s.type = $1 AND s.recorded_at >= $3) l`, domain.TypeSignedUp, domain.TypeOnboardingCompleted, since).Scan(&out[0], &out[1])
	return out, err
}

// storeHops returns the mean time from each customer event (since since)
// to the next, per type of the next, as recorded by the event store: where
// the latency of an onboarding goes.
func storeHops(ctx context.Context, pool *pgxpool.Pool, since time.Time) (string, error) {
	rows, err := pool.Query(ctx, `SELECT prev, type, avg(gap_ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY gap_ms), count(*) FROM (
			SELECT type, lag(type) OVER w AS prev, extract(epoch FROM recorded_at - lag(recorded_at) OVER w) * 1000 AS gap_ms
			FROM events WHERE stream_type = 'customer' AND recorded_at >= $1
			WINDOW w AS (PARTITION BY stream_id ORDER BY version)) g
		WHERE gap_ms IS NOT NULL GROUP BY prev, type HAVING avg(gap_ms) >= 0.5 ORDER BY avg(gap_ms) DESC`, since)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var parts []string
	short := func(t string) string { return strings.TrimSuffix(strings.TrimPrefix(t, "customer."), ".v1") }
	for rows.Next() {
		var (
			prev, typ string
			avg, p99  float64
			n         int64
		)
		if err := rows.Scan(&prev, &typ, &avg, &p99, &n); err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s→%s %.0f/%.0f ms (%d)", short(prev), short(typ), avg, p99, n))
	}
	return strings.Join(parts, ", "), rows.Err()
}
