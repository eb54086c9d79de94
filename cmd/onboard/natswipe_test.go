package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/process"
)

// historyEvents is the log's past in TestNATSWipeBoundedRecovery: events no
// consumer needs any more.
const historyEvents = 100_000

// floorsWait bounds the wait for the history to be relayed: seconds
// usually, minutes under -race on a loaded machine.
var floorsWait = 3 * time.Minute

// TestNATSWipeBoundedRecovery wipes NATS's store under a pipeline with a
// long history and customers in flight, and restarts it empty. The relay
// publishes again from the consumers' floor, not from the start of the
// log: none of the history and no more than the events after the floor
// (plus one batch) are published again; the consumers are re-created
// within seconds, and every customer in flight reaches a terminal state
// within 15 s of NATS's return, with no effect twice.
func TestNATSWipeBoundedRecovery(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewMigratedDatabase(t)
	dataDir := t.TempDir()
	ns, err := messaging.StartEmbedded(messaging.EmbeddedConfig{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	store, err := postgres.Open(ctx, dbURL, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	began := time.Now()
	appendHistory(t, store, historyEvents)
	t.Logf("appended %d events of history in %v", historyEvents, time.Since(began).Round(time.Millisecond))
	// The history's last event in the log's order is (transaction, position):
	// with concurrent appends the highest position need not be the last.
	var historyEnd, endTx, endPos int64
	if err := store.Pool().QueryRow(ctx, `SELECT (SELECT max(position) FROM events), transaction_id::text::bigint, position
		FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&historyEnd, &endTx, &endPos); err != nil {
		t.Fatal(err)
	}

	p := startFaultPipeline(t, dbURL, ns.ClientURL(), ns, 1, 1)
	// Consumers caught up: the relay published the history, and every
	// process manager's floor is past it. (Under -race on a loaded machine
	// relaying the history takes minutes.)
	began = time.Now()
	waitFor(t, floorsWait, "the consumers' floors past the history", func() (bool, string) {
		var n int
		err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM messaging_consumer_floors
			WHERE (transaction_id, position) >= ($1, $2)`, endTx, endPos).Scan(&n)
		if err == nil && n == len(process.Managers()) {
			return true, ""
		}
		var state string
		_ = store.Pool().QueryRow(ctx, `SELECT coalesce((SELECT position::text FROM messaging_relay_cursor), 'none') || '; floors: ' ||
			coalesce((SELECT string_agg(consumer || ' ' || position || ' ' || seen_at::time, ', ') FROM messaging_consumer_floors), 'none')`).Scan(&state)
		return false, fmt.Sprintf("floors past %d/%d: %s; relay cursor at %s", endTx, endPos, err2s(err, n), state)
	})
	t.Logf("relayed the history and recorded the consumers' floors past it in %v", time.Since(began).Round(time.Millisecond))

	// Customers in flight, then the wipe.
	ids := p.signUp("wipe", 100, 20*time.Millisecond)
	var floorTx, floorPos, lastPos int64
	if err := store.Pool().QueryRow(ctx, `SELECT transaction_id, position FROM messaging_consumer_floors
		ORDER BY transaction_id, position LIMIT 1`).Scan(&floorTx, &floorPos); err != nil {
		t.Fatal(err)
	}
	ns.Shutdown()
	if err := store.Pool().QueryRow(ctx, `SELECT max(position) FROM events`).Scan(&lastPos); err != nil {
		t.Fatal(err)
	}
	inFlight := p.inFlight(ids)
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dataDir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	done := p.waitTerminal(ids, 3*time.Minute)
	recovery := done.Sub(returned)
	p.checkEffects(ids)

	// What the relay published again: the new stream's events that were
	// in the store when NATS went.
	var afterFloor int
	floor := eventstore.Cursor{TransactionID: uint64(floorTx), Position: floorPos}
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM events
		WHERE (transaction_id::text::bigint, position) > ($1, $2) AND position <= $3`, floorTx, floorPos, lastPos).Scan(&afterFloor); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the relay to publish every event again", func() (bool, string) {
		var n int
		err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM events WHERE (transaction_id::text::bigint, position) > ($1, $2)`,
			floorTx, floorPos).Scan(&n)
		got := len(streamPositions(t, ns))
		return err == nil && got >= n, err2s(err, got)
	})
	republished, history := 0, 0
	for _, pos := range streamPositions(t, ns) {
		if pos <= lastPos {
			republished++
		}
		if pos <= historyEnd {
			history++
		}
	}
	const batch = 1000 // the relay's default BatchSize
	t.Logf("NATS wiped with %d events in the store (%d of history), %d of %d customers in flight; the consumers' floor %s",
		lastPos, historyEnd, inFlight, len(ids), floor)
	t.Logf("events published again: %d (%d of history); events after the floor: %d; bound: %d",
		republished, history, afterFloor, afterFloor+batch)
	t.Logf("every customer in flight terminal %v after NATS returned", recovery.Round(time.Millisecond))
	if history != 0 {
		t.Errorf("%d events of history published again, want none", history)
	}
	if republished > afterFloor+batch {
		t.Errorf("%d events published again, want at most the %d after the consumers' floor plus one batch", republished, afterFloor)
	}
	if inFlight == 0 {
		t.Error("no customer was in flight when NATS was wiped: the test proves nothing")
	}
	if recovery > 15*time.Second {
		t.Errorf("customers in flight reached a terminal state %v after NATS returned, want within 15s", recovery)
	}
}

// err2s describes a polled count and the error that came with it.
func err2s(err error, n int) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("got %d", n)
}

// appendHistory appends n events (a multiple of 100) of finished business
// to streams of 100 events, through the store's own append, eight streams
// at a time: a log with a past that no consumer needs any more.
func appendHistory(t *testing.T, store *postgres.Store, n int) {
	t.Helper()
	var wg sync.WaitGroup
	streams := make(chan int)
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range streams {
				events := make([]eventstore.NewEvent, 100)
				for i := range events {
					events[i] = eventstore.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: "history.recorded", SchemaVersion: 1,
						Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), Metadata: eventstore.Metadata{Actor: "history"}}
				}
				if _, err := store.Append(context.Background(), fmt.Sprintf("history-%d", s), eventstore.NoStream, events); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for s := range n / 100 {
		streams <- s
	}
	close(streams)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// streamPositions returns the Onboard-Position of every event message of
// the events stream on the NATS server at url.
func streamPositions(t *testing.T, srv *messaging.Server) []int64 {
	t.Helper()
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := js.Stream(ctx, messaging.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	state := s.CachedInfo().State
	var out []int64
	for seq := state.FirstSeq; state.Msgs > 0 && seq <= state.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if p, err := strconv.ParseInt(m.Header.Get(messaging.HeaderPosition), 10, 64); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// inFlight counts the customers of ids not in a terminal state.
func (p *faultPipeline) inFlight(ids []uuid.UUID) int {
	n := 0
	for _, id := range ids {
		if c, err := commands.LoadCustomer(context.Background(), p.store, id); err != nil || !c.State().Terminal() {
			n++
		}
	}
	return n
}
