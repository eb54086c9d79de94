package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/projections"
	"github.com/onboard/onboard/providers/sim"
)

// checkInvariants checks the promises that the chaos soak and the crash
// test hold the pipeline to once every customer of uids has settled: no
// duplicate effect at the simulator, no lost event (each process manager
// saw every event routed to it), read models equal to a replay of the log,
// and an audit log that verifies. settle bounds the waits for the
// consumers and projectors to catch up.
func checkInvariants(t *testing.T, store *postgres.Store, s *sim.Simulator, uids []uuid.UUID, settle time.Duration) {
	t.Helper()
	ctx := context.Background()
	// 1. No duplicate effects.
	ledger := s.Ledger()
	t.Logf("invariant duplicate effects: %d (prevented by idempotency keys: %d)", ledger.DuplicateEffects, ledger.DuplicatesPrevented)
	if ledger.DuplicateEffects != 0 {
		t.Errorf("duplicate effects: %d", ledger.DuplicateEffects)
	}
	for _, id := range uids {
		c := loadRetry(t, store, id)
		e := ledger.Customers[id.String()]
		if c.State() == domain.StateActive && (e.BillingAccounts != 1 || e.Tenants != 1 || e.CRMRecords != 1 || e.EmailsByType["welcome"] != 1) {
			t.Errorf("active %s: effects %+v; its history:\n%s", id, e, historyOf(t, store, id))
		}
		if c.State() == domain.StateCancelled && (e.BillingAccounts != e.ClosedAccounts || e.Tenants != e.DeletedTenants) {
			t.Errorf("cancelled %s left effects: %+v", id, e)
		}
	}

	// 2. No lost events: every customer event of a type a process manager
	// subscribes to reached that manager (its inbox holds the event id).
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var events int
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM events WHERE stream_type = 'customer'`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	// Each consumer is delivered the events process.RouteOf gives its
	// manager, so the audit asks RouteOf which are its own.
	waitFor(t, max(settle/2, 3*time.Minute), "every process manager saw every event routed to it", func() (bool, string) {
		var missing []string
		for _, m := range process.Managers() {
			// With the event after each: a success appended with the next
			// request is routed to no one (process.RouteOf).
			rows, err := store.Pool().Query(ctx, `
SELECT e.event_id, e.stream_id, e.version, e.recorded_at, e.stream_type, e.type, e.data, e.transaction_id::text::bigint,
	e.next_type, e.next_tx, i.event_id IS NOT NULL
FROM (SELECT *, lead(type) OVER w AS next_type, lead(transaction_id::text::bigint) OVER w AS next_tx FROM events
	WHERE stream_type = 'customer' WINDOW w AS (PARTITION BY stream_id ORDER BY version)) e
LEFT JOIN messaging_inbox i ON i.event_id = e.event_id AND i.handler = $1`, "pm-"+m)
			if err != nil {
				return false, err.Error()
			}
			var want, seen int
			var unseen []string
			for rows.Next() {
				var env eventstore.Envelope
				var nextType *string
				var nextTx *uint64
				var handled bool
				if err := rows.Scan(&env.ID, &env.StreamID, &env.Version, &env.RecordedAt, &env.StreamType, &env.Type, &env.Data,
					&env.TransactionID, &nextType, &nextTx, &handled); err != nil {
					rows.Close()
					return false, err.Error()
				}
				var next *eventstore.Envelope
				if nextType != nil {
					next = &eventstore.Envelope{StreamID: env.StreamID, Version: env.Version + 1, Type: *nextType, TransactionID: *nextTx}
				}
				if process.RouteOf(env, next) == m {
					want++
					if handled {
						seen++
					} else if len(unseen) < 3 {
						unseen = append(unseen, fmt.Sprintf("%s v%d %s (%s, %s)", env.StreamID, env.Version, env.Type, env.ID, env.RecordedAt.Format(time.RFC3339Nano)))
					}
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return false, err.Error()
			}
			if seen != want {
				missing = append(missing, fmt.Sprintf("%s saw %d of %d; not %v", m, seen, want, unseen))
			}
		}
		return len(missing) == 0, fmt.Sprint(missing)
	})
	t.Logf("invariant lost events: 0 (%d events; each process manager saw every event routed to it)", events)

	// 3. Nobody stuck: checked by waitSettled; count them.
	t.Logf("invariant stuck customers: 0 of %d", len(uids))

	// 4. Read models equal a replay of the log.
	proj, err := projections.New(projections.Config{Pool: store.Pool(), Source: store})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle/2, "projections caught up", func() (bool, string) {
		for _, name := range projections.Names() {
			cp, err := proj.Checkpoint(ctx, name)
			if err != nil || cp.Compare(head) < 0 {
				return false, fmt.Sprintf("%s at %v, head %v (%v)", name, cp, head, err)
			}
		}
		return true, ""
	})
	for _, name := range projections.Names() {
		rep, err := audit.Diff(ctx, store, proj, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("invariant projection %s differences from replay: %d (%d rows)", name, len(rep.Differences), rep.Rows)
		if len(rep.Differences) != 0 {
			t.Errorf("projection %s differs from replay: %v", name, rep.Differences[:min(5, len(rep.Differences))])
		}
	}

	// 5. The audit log verifies.
	rep, err := audit.VerifyAll(ctx, store, audit.VerifyOptions{Until: head})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	t.Logf("invariant replay verify: %d streams, %d events, %d failed", rep.Streams, rep.Events, rep.Failed)
	if rep.Failed != 0 {
		t.Errorf("verify found problems: %v", rep.Problems)
	}

}
