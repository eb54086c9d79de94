package bench

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/eventstore"
)

// AppendFigure measures Append at each Sizes.AppendConcurrency, one event
// per append and stream, against its ceiling: plain INSERTs of the same row
// shape (same columns, defaults, constraints and indexes; no trigger, no
// function) through the same pool at the same concurrency.
func AppendFigure() Figure {
	return Figure{Name: "append", Run: runAppend}
}

func runAppend(ctx context.Context, env *Env) ([]Result, error) {
	s, err := env.OpenStore(ctx, "append", int32(slices.Max(env.sizes.AppendConcurrency)+2))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE raw_events (LIKE events INCLUDING ALL)`); err != nil {
		return nil, fmt.Errorf("create raw_events: %w", err)
	}
	n := env.sizes.Events
	var results []Result
	for _, c := range env.sizes.AppendConcurrency {
		// Two rounds each, alternating, so that a burst of load from
		// elsewhere on the machine hits both sides alike.
		var raw, app time.Duration
		for round := range 2 {
			count := n/2 + round*(n%2)
			d, err := parallel(ctx, c, count, func() error { return rawInsert(ctx, s.Pool()) })
			if err != nil {
				return nil, fmt.Errorf("raw insert at c=%d: %w", c, err)
			}
			raw += d
			d, err = parallel(ctx, c, count, func() error {
				_, err := s.Append(ctx, "bench-"+uuid.NewString(), eventstore.NoStream, []eventstore.NewEvent{benchEvent(0)})
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("append at c=%d: %w", c, err)
			}
			app += d
		}
		results = append(results, NewResult(fmt.Sprintf("append c=%d", c), "events/s", int64(n), app,
			float64(n)/raw.Seconds(), "raw INSERT", RatioAtLeast(0.85)))
	}
	return results, nil
}

// parallel runs op n times from c goroutines and returns the wall time.
func parallel(ctx context.Context, c, n int, op func() error) (time.Duration, error) {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		first error
		once  sync.Once
	)
	start := time.Now()
	for range c {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				if err := op(); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	if first != nil {
		return d, first
	}
	return d, ctx.Err()
}

// benchEvent is a signup-sized event.
func benchEvent(i int) eventstore.NewEvent {
	return eventstore.NewEvent{
		ID:            uuid.Must(uuid.NewV7()),
		Type:          "customer.signed_up",
		SchemaVersion: 1,
		Data: json.RawMessage(fmt.Sprintf(`{"email":"user%d@example.com","company":"Acme %d","contact_name":"Ada Lovelace","country":"DE","plan":"growth"}`,
			i, i)),
		Metadata: eventstore.Metadata{Actor: "api-key:dev", CorrelationID: uuid.NewString(), RequestID: uuid.NewString()},
	}
}

// rawInsert inserts one row of the events' shape into raw_events, hashing
// in Go what Append hashes.
func rawInsert(ctx context.Context, pool *pgxpool.Pool) error {
	e := benchEvent(0)
	h := sha256.Sum256(e.Data)
	_, err := pool.Exec(ctx, `INSERT INTO raw_events (event_id, stream_id, stream_type, version, type, schema_version, data,
		actor, correlation_id, causation_id, request_id, idempotency_key, trace, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		e.ID, "raw-"+uuid.NewString(), "raw", int64(1), e.Type, int32(1), string(e.Data),
		e.Metadata.Actor, e.Metadata.CorrelationID, e.Metadata.CausationID, e.Metadata.RequestID, "", nil, []byte{}, h[:])
	return err
}

// ReadFigure measures ReadAll, in pages of 5,000 over Sizes.Events
// events, against its ceiling: one raw SELECT of the same columns in the
// same order, its rows only counted.
func ReadFigure() Figure {
	return Figure{Name: "read", Run: func(ctx context.Context, env *Env) ([]Result, error) {
		s, err := env.OpenStore(ctx, "read", 4)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		if err := SeedEvents(ctx, s.Pool(), env.sizes.Events); err != nil {
			return nil, err
		}
		if err := WaitReadable(ctx, s); err != nil {
			return nil, err
		}
		ceiling, err := RawScan(ctx, s.Pool())
		if err != nil {
			return nil, err
		}
		start := time.Now()
		var read int64
		for after := eventstore.Start; ; {
			page, err := s.ReadAll(ctx, after, 5000)
			if err != nil {
				return nil, err
			}
			if len(page) == 0 {
				break
			}
			read += int64(len(page))
			after = page[len(page)-1].Cursor()
		}
		return []Result{NewResult("read-all", "events/s", read, time.Since(start), ceiling, "raw SELECT", AtLeast(150000, "events/s"))}, nil
	}}
}

// SeedEvents inserts n signup-shaped events in SQL, ten per stream: seconds
// where appending them would take minutes. Their hashes are not a valid
// chain, which reading and relaying do not check.
func SeedEvents(ctx context.Context, pool *pgxpool.Pool, n int) error {
	const batch = 50000
	for done := 0; done < n; done += batch {
		if _, err := pool.Exec(ctx, `INSERT INTO events (event_id, stream_id, stream_type, version, type,
			schema_version, data, actor, correlation_id, causation_id, request_id, trace, prev_hash, hash)
			SELECT gen_random_uuid(), 'customer-' || md5((g / 10)::text)::uuid, 'customer', g % 10 + 1, 'customer.signed_up', 1,
				json_build_object('email', 'user' || g || '@example.com', 'company', 'Acme ' || g,
					'contact_name', 'Jane Doe', 'country', 'DE', 'plan', 'growth'),
				'api-key:dev', 'corr-' || g, 'cause-' || g, 'req-' || g,
				'{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}',
				sha256(int8send(g)), sha256(int8send(g + 1))
			FROM generate_series($1::bigint, $2::bigint) g`, done, min(done+batch, n)-1); err != nil {
			return fmt.Errorf("seed events: %w", err)
		}
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE events`); err != nil {
		return fmt.Errorf("seed events: %w", err)
	}
	return nil
}

// RawScan reads every event's columns in global order in one SELECT,
// touching each row's raw bytes and decoding nothing: the floor under
// anything that reads the log. It returns the rows per second.
func RawScan(ctx context.Context, pool *pgxpool.Pool) (float64, error) {
	start := time.Now()
	rows, err := pool.Query(ctx, `SELECT transaction_id, position, event_id, stream_id, stream_type, version, type,
		schema_version, data, actor, correlation_id, causation_id, request_id, idempotency_key, trace,
		recorded_at, prev_hash, hash FROM events ORDER BY transaction_id, position`)
	if err != nil {
		return 0, fmt.Errorf("raw scan: %w", err)
	}
	defer rows.Close()
	var n, size int64
	for rows.Next() {
		n++
		for _, v := range rows.RawValues() {
			size += int64(len(v))
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("raw scan: %w", err)
	}
	if n == 0 || size == 0 {
		return 0, fmt.Errorf("raw scan: no events")
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// WaitReadable waits until every event in the store is below the safe
// horizon, so that a reader started now is not held back by transactions
// of other clients of the server (the horizon is server-wide) while it is
// timed.
func WaitReadable(ctx context.Context, s *Store) error {
	var last eventstore.Cursor
	if err := s.Pool().QueryRow(ctx, `SELECT transaction_id, position FROM events
		ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&last.TransactionID, &last.Position); err != nil {
		return fmt.Errorf("wait readable: %w", err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		head, err := s.Head(ctx)
		if err != nil {
			return err
		}
		if head.Compare(last) >= 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait readable: a transaction elsewhere on the server held the safe horizon back for 5 minutes")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
