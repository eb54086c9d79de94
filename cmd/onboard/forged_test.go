package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers/sim"
)

// TestDevRefusesForgedMessages replays the attack of issue 29 on `onboard
// dev` against a NATS server of the test's: a client without credentials
// is refused, and messages published with the relay's own credentials (a
// billing step_requested with a new id, the same with attempt + 1, and a
// real event with a low position) make no provider call, append nothing
// and do not make the relay publish again; they are dead-lettered and
// counted.
func TestDevRefusesForgedMessages(t *testing.T) {
	srv, err := messaging.StartEmbedded(messaging.EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	if nc, err := nats.Connect(srv.ClientURL(), nats.RetryOnFailedConnect(false)); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	}
	base := startDevWith(t, sim.Config{Seed: 3, KYC: sim.KYCConfig{Delay: sim.Latency{Max: sim.Duration(20 * time.Millisecond)}}},
		func(*devOptions) {
			t.Setenv("NATS_URL", srv.ClientURL())
			t.Setenv("NATS_USER", messaging.DevUser)
			t.Setenv("NATS_PASSWORD", srv.Credentials(messaging.DevUser).Password)
		})
	status, body := call(t, "POST", base+"/v1/customers", devClientKey,
		`{"email":"forged@example.com","company":"Forged","contact_name":"Tester","country":"SE","plan":"growth"}`, "Idempotency-Key", "forged-1")
	if status != http.StatusAccepted {
		t.Fatalf("signup: %d %s", status, body)
	}
	var created struct{ ID string }
	_ = json.Unmarshal(body, &created)
	waitFor(t, 90*time.Second, "the customer active", func() (bool, string) {
		_, body := call(t, "GET", base+"/v1/customers/"+created.ID, devOperatorKey, "")
		return strings.Contains(string(body), `"state":"active"`), string(body)
	})
	ctx := context.Background()
	store, err := postgres.New(pgtest.NewPool(t, os.Getenv("DATABASE_URL"), 2), postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	history, err := store.ReadStream(ctx, commands.StreamID(uuid.MustParse(created.ID)), 1)
	if err != nil {
		t.Fatal(err)
	}
	billing := stepRequested(t, history, "billing")
	before := devCounts(t, base, store, created.ID)

	newID := billing
	newID.ID = uuid.Must(uuid.NewV7())
	attempt := billing
	attempt.Data = json.RawMessage(strings.Replace(string(billing.Data), `"attempt":1`, `"attempt":2`, 1))
	low := history[len(history)-1]
	low.Position, low.TransactionID = 1, 1
	forger := connectAsRelay(t, srv)
	for _, e := range []eventstore.Envelope{newID, attempt, low} {
		publishForged(t, forger, e)
	}

	waitFor(t, 90*time.Second, "the forged messages counted", func() (bool, string) {
		_, m := call(t, "GET", base+"/metrics", "", "")
		return strings.Contains(string(m), `onboard_forged_messages_total{where="pm-billing"} 2`) &&
			strings.Contains(string(m), `onboard_forged_messages_total{where="relay"}`), string(m)
	})
	if after := devCounts(t, base, store, created.ID); after != before {
		t.Errorf("after the forged messages: %s; before: %s", after, before)
	}
}

// stepRequested returns the first step_requested event of step in history.
func stepRequested(t *testing.T, history []eventstore.Envelope, step string) eventstore.Envelope {
	t.Helper()
	for _, e := range history {
		if e.Type == domain.TypeStepRequested && strings.Contains(string(e.Data), `"`+step+`"`) {
			if !strings.Contains(string(e.Data), `"attempt":1`) {
				t.Fatalf("the %s request has no attempt 1: %s", step, e.Data)
			}
			return e
		}
	}
	t.Fatalf("no %s step_requested in %d events", step, len(history))
	return eventstore.Envelope{}
}

// devCounts sums up what a forged message could change: the customer's
// billing effects in the simulator, its events and the relay's rewinds.
func devCounts(t *testing.T, base string, store *postgres.Store, id string) string {
	t.Helper()
	_, body := call(t, "GET", base+"/sim/ledger", "", "")
	var ledger sim.Ledger
	if err := json.Unmarshal(body, &ledger); err != nil {
		t.Fatal(err)
	}
	events, err := store.ReadStream(context.Background(), commands.StreamID(uuid.MustParse(id)), 1)
	if err != nil {
		t.Fatal(err)
	}
	_, m := call(t, "GET", base+"/metrics", "", "")
	rewinds := regexp.MustCompile(`(?m)^onboard_relay_rewinds_total (\S+)$`).FindStringSubmatch(string(m))
	if rewinds == nil {
		t.Fatal("no onboard_relay_rewinds_total")
	}
	e := ledger.Customers[id]
	return fmt.Sprintf("billing accounts %d, subscriptions %d, events %d, rewinds %s", e.BillingAccounts, e.Subscriptions, len(events), rewinds[1])
}

func connectAsRelay(t *testing.T, srv *messaging.Server) *nats.Conn {
	t.Helper()
	auth, err := srv.Credentials(string(messaging.RoleRelay)).Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := messaging.Connect(srv.ClientURL(), "forger", auth...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// publishForged publishes e as the relay does, routed as the relay routes
// it, under a new message id.
func publishForged(t *testing.T, nc *nats.Conn, e eventstore.Envelope) {
	t.Helper()
	stream := messaging.StreamConfig{SubjectPrefix: messaging.DefaultSubjectPrefix}
	m := nats.NewMsg(stream.EventSubject(e.StreamType, e.Type, e.StreamID, process.RouteOf(e, nil)))
	body, err := messaging.MarshalEnvelope(e)
	if err != nil {
		t.Fatal(err)
	}
	m.Data = body
	m.Header.Set(messaging.HeaderMsgID, uuid.NewString())
	m.Header.Set(messaging.HeaderCursor, e.Cursor().String())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(context.Background(), m); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
