package projections_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/projections"
)

// maxMoves bounds the journey of one input, so that a long input costs a
// few dozen appends rather than thousands.
const maxMoves = 48

// FuzzProjectionApplyTwice checks that delivering an event again changes no
// read model. The journey bytes drive a fresh customer through the domain
// (so its history is always one the aggregate accepts) and append it to the
// event store; the delivery bytes cut its events into batches that each may
// start up to 15 events before the first one not yet applied, as a
// projector that resubscribes from an older checkpoint (or an at-least-once
// transport) delivers them, and a batch may hold its events twice. A
// second database gets every event exactly once, in one batch: the
// customer's row and the provider stats must be the same in both, and the
// row must agree with the aggregate.
//
// Both databases are created once per process and shared by its inputs, so
// every input uses a new customer id. Like the other tests here it skips
// when Postgres is unreachable, and fails instead under CI=true (pgtest).
func FuzzProjectionApplyTwice(f *testing.F) {
	// Journeys: the happy path; verification rejected; a failed billing
	// step paused, retried and then cancelled with compensation; a skipped
	// CRM step. Deliveries: each once; two events at a time, the first
	// repeating the last of the batch before; batches restarting far back.
	happy := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	rejected := []byte{0, 0, 6, 0}
	cancelled := []byte{0, 0, 0, 0, 4, 4, 4, 5, 0, 0, 4, 11, 0, 0}
	skipped := []byte{0, 0, 0, 0, 0, 0, 0, 0, 4, 5, 7, 0, 0, 9, 0}
	f.Add(happy, []byte{})
	f.Add(happy, []byte{0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11})
	f.Add(rejected, []byte{0x01, 0x23, 0xf0})
	f.Add(cancelled, []byte{0x03, 0x27, 0xff, 0x44, 0x00})
	f.Add(skipped, []byte{0x0f, 0xf4, 0x81, 0xff})

	subject, once := newEnv(f, nil), newEnv(f, nil)
	f.Fuzz(func(t *testing.T, journey, delivery []byte) {
		ctx := context.Background()
		id := uuid.New()
		c := runJourney(t, subject.store, id, journey)
		envs, err := subject.store.ReadStream(ctx, projections.CustomerStreamID(id), 1)
		if err != nil {
			t.Fatal(err)
		}

		// The stats count every customer the process has seen: compare
		// what this input added, so that one failed input does not fail
		// every later one (which would make the minimised input useless).
		subjectBefore, onceBefore := providerStats(t, subject), providerStats(t, once)
		for _, name := range projections.Names() {
			if err := once.proj.Apply(ctx, name, envs); err != nil {
				t.Fatal(err)
			}
		}
		var schedule [][2]int
		for next, i := 0, 0; next < len(envs); i++ {
			start, end := next, len(envs) // out of bytes: the rest, once
			if i < len(delivery) {
				back, size := int(delivery[i]>>4), int(delivery[i]&0x0f)+1
				start = max(0, next-back)
				end = min(len(envs), start+size)
			}
			schedule = append(schedule, [2]int{start, end})
			batch := envs[start:end]
			if i < len(delivery) && delivery[i]&0x80 != 0 {
				// The batch itself repeats its events.
				batch = append(slices.Clone(batch), batch...)
			}
			for _, name := range projections.Names() {
				if err := subject.proj.Apply(ctx, name, batch); err != nil {
					t.Fatalf("batch %d (events %d..%d of %d): %v", i, start, end-1, len(envs), err)
				}
			}
			next = max(next, end)
		}

		got, err := subject.proj.Customer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want, err := once.proj.Customer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := norm(got), norm(want); fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("customer after batches %v of %d events:\n got %+v\nwant %+v (each event once)", schedule, len(envs), g, w)
		}
		if got.Version != int64(len(envs)) || got.State != string(c.State()) {
			t.Errorf("customer row at version %d in %s, the aggregate at %d in %s", got.Version, got.State, len(envs), c.State())
		}
		gotStats := added(subjectBefore, providerStats(t, subject))
		wantStats := added(onceBefore, providerStats(t, once))
		if !slices.Equal(gotStats, wantStats) {
			t.Errorf("provider calls counted after batches %v of %d events:\n got %+v\nwant %+v (each event once)", schedule, len(envs), gotStats, wantStats)
		}
	})
}

func providerStats(t *testing.T, e env) []projections.ProviderCalls {
	t.Helper()
	stats, err := e.proj.ProviderCallStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

// added returns the calls counted between before and after, which list
// the steps in the same (journey) order.
func added(before, after []projections.ProviderCalls) []projections.ProviderCalls {
	out := slices.Clone(after)
	for i, b := range before {
		out[i].Requested -= b.Requested
		out[i].Succeeded -= b.Succeeded
		out[i].Failed -= b.Failed
		out[i].PermanentFailures -= b.PermanentFailures
	}
	return out
}

// runJourney signs customer id up and makes one move per byte of journey
// (at most maxMoves), appending the events of each accepted command as one
// append, as the command handler does. It returns the customer.
func runJourney(t *testing.T, store eventstore.Appender, id uuid.UUID, journey []byte) *domain.Customer {
	t.Helper()
	plans := domain.Plans()
	c, err := domain.SignUp(id, domain.SignupDetails{
		Email: "owner." + id.String() + "@example.com", Company: "Fuzzed Looms", ContactName: "Ada",
		Country: "GB", Plan: plans[len(journey)%len(plans)],
	})
	if err != nil {
		t.Fatal(err)
	}
	appendChanges(t, store, c, "client:fuzz")
	for _, b := range journey[:min(len(journey), maxMoves)] {
		// A command the customer refuses raises nothing (the domain's
		// property test holds it to that), so refusals are simply moves
		// that append nothing.
		if actor, err := move(c, b); err == nil {
			appendChanges(t, store, c, actor)
		}
	}
	return c
}

func appendChanges(t *testing.T, store eventstore.Appender, c *domain.Customer, actor string) {
	t.Helper()
	changes := c.Changes()
	if len(changes) == 0 {
		return
	}
	events := make([]eventstore.NewEvent, len(changes))
	for i, e := range changes {
		typ, schema, data, err := domain.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		events[i] = eventstore.NewEvent{
			ID: uuid.Must(uuid.NewV7()), Type: typ, SchemaVersion: schema, Data: data,
			Metadata: eventstore.Metadata{Actor: actor, CorrelationID: c.ID().String()},
		}
	}
	_, err := store.Append(context.Background(), projections.CustomerStreamID(c.ID()), eventstore.ExpectedVersion(c.Version()), events,
		eventstore.WithStreamType("customer"))
	if err != nil {
		t.Fatal(err)
	}
	c.MarkCommitted()
}

// move makes the move b chooses and returns its actor. Five in twelve
// values advance the journey the way the process managers do, so that
// inputs reach the later steps; the others fail, pause, reject, skip,
// ignore a result or cancel. The high bits vary the details.
func move(c *domain.Customer, b byte) (string, error) {
	step := c.CurrentStep()
	inFlight := step
	for _, s := range domain.Steps() {
		if c.InFlight(s) != 0 {
			inFlight = s
		}
	}
	attempt := c.InFlight(inFlight)
	system, operator := "system:"+string(inFlight), "operator:fuzz"
	class := domain.ErrorTransient
	if b&0x80 != 0 {
		class = domain.ErrorPermanent
	}
	switch b % 12 {
	case 0, 1, 2, 3, 10:
		return advance(c, b)
	case 4:
		return system, c.RecordStepFailed(inFlight, attempt, class, fmt.Sprintf("failure %d", b>>4))
	case 5:
		return system, c.Pause(step, class, "retries exhausted")
	case 6:
		return "provider:kyc", c.RecordVerdict(c.CheckID(), false, "document mismatch")
	case 7:
		return operator, c.SkipStep(operator, "not needed")
	case 8:
		return "provider:" + string(inFlight), c.IgnoreResult(inFlight, "webhook", "duplicate delivery")
	case 9:
		return operator, c.RetryStep(operator, "provider fixed")
	default:
		return operator, c.Cancel(operator, "customer asked to cancel")
	}
}

// advance makes the move that brings the customer closer to the end of its
// journey.
func advance(c *domain.Customer, b byte) (string, error) {
	step := c.CurrentStep()
	system := "system:" + string(step)
	switch c.State() {
	case domain.StatePending, domain.StateVerified:
		_, err := c.RequestStep(step)
		return system, err
	case domain.StateVerifying:
		attempt := c.InFlight(domain.StepVerification)
		switch {
		case attempt == 0:
			_, err := c.RequestStep(domain.StepVerification)
			return system, err
		case c.CheckID() == "":
			return system, c.RecordCheckStarted(attempt, fmt.Sprintf("chk-%d-%d", c.Version(), b))
		}
		return "provider:kyc", c.RecordVerdict(c.CheckID(), true, "")
	case domain.StateProvisioning:
		attempt := c.InFlight(step)
		if attempt == 0 {
			_, err := c.RequestStep(step)
			return system, err
		}
		return system, c.RecordStepSucceeded(step, attempt, map[string]string{"ref": fmt.Sprintf("%s-%d", step, b)})
	case domain.StatePaused:
		return "operator:fuzz", c.RetryStep("operator:fuzz", "provider fixed")
	case domain.StateCancelling:
		for _, s := range domain.Steps() {
			if a := c.InFlight(s); a != 0 {
				return "system:" + string(s), c.RecordStepSucceeded(s, a, map[string]string{"ref": "late"})
			}
		}
		if pending := c.PendingCompensations(); len(pending) > 0 && pending[0] == domain.StepBilling {
			return "system:billing", c.RecordBillingClosed("acct", b&0x10 != 0)
		}
		return "system:tenant", c.RecordTenantDeprovisioned("tenant", b&0x10 != 0)
	case domain.StateRejected:
		return "system:support", c.NotifySupport("email", "verification rejected")
	}
	return "", fmt.Errorf("customer in %s: nothing to advance", c.State())
}
