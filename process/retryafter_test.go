package process_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
)

// retryAfterWorld is a process manager whose clock stands still at now,
// whose backoff never exceeds retryAfterMaxDelay, in front of a simulator that
// records the last Retry-After it sent.
type retryAfterWorld struct {
	pm     *process.Manager
	cmds   *commands.Handler
	store  *postgres.Store
	timers *process.Timers
	sim    *sim.Simulator
	now    time.Time

	mu   sync.Mutex
	sent string
}

const retryAfterMaxDelay = time.Second

func newRetryAfterWorld(t *testing.T) *retryAfterWorld {
	t.Helper()
	w := &retryAfterWorld{now: time.Now().Truncate(time.Second)}
	var err error
	w.sim, err = sim.New(sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.sim.Close)
	srv := httptest.NewServer(http.StripPrefix("/sim", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		w.sim.ServeHTTP(rec, r)
		w.mu.Lock()
		w.sent = rec.Header().Get("Retry-After")
		w.mu.Unlock()
		for k, v := range rec.Header() {
			rw.Header()[k] = v
		}
		rw.WriteHeader(rec.Code)
		_, _ = io.Copy(rw, rec.Body)
	})))
	t.Cleanup(srv.Close)

	w.cmds, w.store = newCommands(t)
	w.timers = process.NewTimers(w.store.Pool())
	// One in-process attempt, and the default MaxRetryAfter (5s): a
	// longer Retry-After ends the call for the durable retry to honour.
	conf := func(p string) providers.Config {
		return providers.Config{BaseURL: srv.URL + "/sim/" + p, Policy: providers.Policy{MaxAttempts: 1}}
	}
	clients, err := providers.NewClients(conf("kyc"), conf("payments"), conf("provisioning"), conf("crm"), conf("email"))
	if err != nil {
		t.Fatal(err)
	}
	w.pm, err = process.New(process.Config{Commands: w.cmds, Providers: process.ProvidersOf(clients), Timers: w.timers,
		BaseDelay: 100 * time.Millisecond, MaxDelay: retryAfterMaxDelay, Now: func() time.Time { return w.now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// handle feeds the customer's event at version to the process manager.
func (w *retryAfterWorld) handle(t *testing.T, id uuid.UUID, version int64, want string) {
	t.Helper()
	envs, err := w.store.ReadStream(context.Background(), commands.StreamID(id), version)
	if err != nil || len(envs) == 0 || envs[0].Type != want {
		t.Fatalf("event %d: want %s, got %+v, %v", version, want, envs, err)
	}
	if err := w.pm.Handle(context.Background(), envs[0]); err != nil {
		t.Fatal(err)
	}
}

// check finds the customer's timer of kind and holds its due time to the
// Retry-After the provider sent last: no earlier than it, or, when the
// provider sent none, within the backoff.
func (w *retryAfterWorld) check(t *testing.T, id uuid.UUID, kind process.TimerKind, wantHeader bool) {
	t.Helper()
	w.mu.Lock()
	header := w.sent
	w.mu.Unlock()
	if (header != "") != wantHeader {
		t.Fatalf("the provider sent Retry-After %q", header)
	}
	pending, err := w.timers.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var timer *process.Timer
	for _, tm := range pending {
		if tm.CustomerID == id && tm.Kind == kind {
			timer = &tm
		}
	}
	if timer == nil {
		t.Fatalf("no %s timer scheduled: %+v", kind, pending)
	}
	if !wantHeader {
		if timer.DueAt.After(w.now.Add(retryAfterMaxDelay)) {
			t.Errorf("%s timer due at now+%v, want within the backoff's %v", kind, timer.DueAt.Sub(w.now), retryAfterMaxDelay)
		}
		return
	}
	secs, err := strconv.Atoi(header)
	if err != nil {
		t.Fatal(err)
	}
	if asked := time.Duration(secs) * time.Second; timer.DueAt.Before(w.now.Add(asked)) {
		t.Errorf("%s timer due at now+%v, before the provider's Retry-After of %v", kind, timer.DueAt.Sub(w.now), asked)
	}
}

// TestRetryAfterDelaysTheDurableRetry: a provider answering 429 or 503
// with a Retry-After longer than the longest backoff gets its next call no
// earlier than it asked; one that names no wait gets the backoff.
func TestRetryAfterDelaysTheDurableRetry(t *testing.T) {
	ctx := context.Background()
	w := newRetryAfterWorld(t)
	for i, tt := range []struct {
		name      string
		kyc       sim.ProviderConfig
		wantAfter bool // whether the provider sends a Retry-After
	}{
		{"429 with Retry-After 10m", sim.ProviderConfig{Script: []sim.Fault{sim.Fault429}, RetryAfter: sim.Duration(10 * time.Minute)}, true},
		{"503 during an outage ending in an hour", sim.ProviderConfig{Outage: sim.Outage{Until: time.Now().Add(time.Hour)}}, true},
		{"503 without Retry-After", sim.ProviderConfig{Script: []sim.Fault{sim.Fault503}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := w.sim.SetProvider("kyc", tt.kyc); err != nil {
				t.Fatal(err)
			}
			d := details
			d.Email = fmt.Sprintf("retry-after-%d@example.com", i)
			res, err := w.cmds.SignUp(ctx, d, commands.Meta{})
			if err != nil {
				t.Fatal(err)
			}
			// Signed up → verification requested → the KYC call fails →
			// the failure schedules the durable retry.
			w.handle(t, res.CustomerID, 1, domain.TypeSignedUp)
			w.handle(t, res.CustomerID, 2, domain.TypeStepRequested)
			w.handle(t, res.CustomerID, 3, domain.TypeStepFailed)
			w.check(t, res.CustomerID, process.TimerRetry, tt.wantAfter)
		})
	}
}

// TestRetryAfterDelaysTheSupportEmail: the retry of a support email the
// mailer refused with a Retry-After waits for it too.
func TestRetryAfterDelaysTheSupportEmail(t *testing.T) {
	ctx := context.Background()
	w := newRetryAfterWorld(t)
	if err := w.sim.SetProvider("email", sim.ProviderConfig{Script: []sim.Fault{sim.Fault429}, RetryAfter: sim.Duration(20 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	res, err := w.cmds.SignUp(ctx, details, commands.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	for _, decide := range []func(c *domain.Customer) error{
		func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk_1") },
		func(c *domain.Customer) error { return c.RecordVerdict("chk_1", false, "sanctions") },
	} {
		if _, err := w.cmds.Execute(ctx, res.CustomerID, nil, commands.Meta{}, decide); err != nil {
			t.Fatal(err)
		}
	}
	envs, err := w.store.ReadStream(ctx, commands.StreamID(res.CustomerID), 1)
	if err != nil {
		t.Fatal(err)
	}
	rejected := envs[len(envs)-1]
	if rejected.Type != domain.TypeVerificationRejected {
		t.Fatalf("last event %s, want the rejection", rejected.Type)
	}
	w.handle(t, res.CustomerID, rejected.Version, domain.TypeVerificationRejected)
	w.check(t, res.CustomerID, process.TimerNotify, true)
}
