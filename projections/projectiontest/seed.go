// Package projectiontest generates realistic customer histories through the
// domain aggregate and appends them to an event store, for the tests and
// benchmarks of the read side (projections and the query API).
//
// It may import domain and eventstore.
package projectiontest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// Config says what Seed generates.
type Config struct {
	// Customers is how many customers to sign up.
	Customers int
	// Seed makes the journeys reproducible (ids are UUIDv7 and differ).
	Seed uint64
	// Workers append concurrently, so that appends interleave as in
	// production. Default 4.
	Workers int
	// Actors sign customers up, round robin. Default "client:shop".
	Actors []string
	// WholeHistory appends each customer's history in one append instead
	// of one append per command: much faster, for benchmarks.
	WholeHistory bool
}

// Operator is the actor of the operator decisions Seed makes.
const Operator = "operator:ada"

// Seed signs up cfg.Customers customers and drives each through a random
// journey: verification with rejections and silent providers, provisioning
// with transient and permanent failures, pauses, operator retries, skips and
// cancels with compensation; some stop midway, as live customers do. It
// returns the customer ids in signup order.
func Seed(ctx context.Context, store eventstore.Appender, cfg Config) ([]uuid.UUID, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if len(cfg.Actors) == 0 {
		cfg.Actors = []string{"client:shop"}
	}
	ids := make([]uuid.UUID, cfg.Customers)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
	}
	work := make(chan int)
	errc := make(chan error, cfg.Workers)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
				j := &journey{ctx: ctx, store: store, rng: rng, whole: cfg.WholeHistory}
				if err := j.run(ids[i], i, cfg.Actors[i%len(cfg.Actors)]); err != nil {
					errc <- fmt.Errorf("customer %d (%s): %w", i, ids[i], err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := range ids {
		select {
		case work <- i:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errc)
	for e := range errc {
		err = errors.Join(err, e)
	}
	return ids, err
}

type journey struct {
	ctx     context.Context
	store   eventstore.Appender
	rng     *rand.Rand
	whole   bool
	c       *domain.Customer
	pending []eventstore.NewEvent
	n       int
}

// commit appends the customer's new events as one command would.
func (j *journey) commit(actor string) error {
	for _, e := range j.c.Changes() {
		typ, schema, data, err := domain.EncodeEvent(e)
		if err != nil {
			return err
		}
		j.n++
		j.pending = append(j.pending, eventstore.NewEvent{
			ID: uuid.Must(uuid.NewV7()), Type: typ, SchemaVersion: schema, Data: data,
			Metadata: eventstore.Metadata{Actor: actor, CorrelationID: j.c.ID().String()},
		})
	}
	j.c.MarkCommitted()
	if j.whole {
		return nil
	}
	return j.flush()
}

func (j *journey) flush() error {
	if len(j.pending) == 0 {
		return nil
	}
	first := j.n - len(j.pending)
	_, err := j.store.Append(j.ctx, "customer-"+j.c.ID().String(), eventstore.ExpectedVersion(first), j.pending,
		eventstore.WithStreamType("customer"))
	j.pending = j.pending[:0]
	return err
}

func (j *journey) chance(p float64) bool { return j.rng.Float64() < p }

var (
	companies = []string{"Analytical Engines", "Difference Works", "Jacquard Looms", "Babbage & Co", "Hollerith Tabulating", "Zuse Rechner"}
	countries = []string{"GB", "DE", "FR", "US", "NL", "SE"}
)

func (j *journey) run(id uuid.UUID, i int, actor string) error {
	c, err := domain.SignUp(id, domain.SignupDetails{
		Email:       fmt.Sprintf("owner%d.%s@example.com", i, id.String()[24:]),
		Company:     fmt.Sprintf("%s %d", companies[i%len(companies)], i),
		ContactName: fmt.Sprintf("Contact %d", i),
		Country:     countries[j.rng.IntN(len(countries))],
		Plan:        domain.Plans()[j.rng.IntN(len(domain.Plans()))],
	})
	if err != nil {
		return err
	}
	j.c = c
	if err := j.commit(actor); err != nil {
		return err
	}
	for range 80 {
		if c.State().Terminal() && c.State() != domain.StateRejected || j.chance(0.015) {
			break // done, or a live customer stopped midway
		}
		by, err := j.next()
		if errors.Is(err, errDone) {
			break
		}
		if err != nil {
			return fmt.Errorf("in %s at %s: %w", c.State(), c.CurrentStep(), err)
		}
		if err := j.commit(by); err != nil {
			return err
		}
	}
	if err := j.erase(); err != nil {
		return err
	}
	return j.flush()
}

// erase erases some customers whose journey has ended or is being undone,
// and records the providers' deletions that follow.
func (j *journey) erase() error {
	c := j.c
	if !domain.Allowed(c.State(), domain.CmdErasePersonalData) || !j.chance(0.1) {
		return nil
	}
	if err := c.ErasePersonalData(Operator, "data subject request"); err != nil {
		return err
	}
	if err := j.commit(Operator); err != nil {
		return err
	}
	for _, provider := range []string{"crm", "email"} {
		if err := c.RecordProviderDataDeleted(provider, true); err != nil {
			return err
		}
		if err := j.commit("system:erasure"); err != nil {
			return err
		}
	}
	return nil
}

var errDone = errors.New("journey over")

// next makes the customer's next move and returns the actor that made it.
func (j *journey) next() (string, error) {
	c := j.c
	step := c.CurrentStep()
	system := "system:" + string(step)
	if !c.State().Terminal() && c.State() != domain.StateCancelling && j.chance(0.02) {
		return Operator, c.Cancel(Operator, "customer asked to cancel")
	}
	if j.chance(0.02) {
		return "provider:" + string(step), c.IgnoreResult(step, "webhook", "duplicate delivery")
	}
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
			if j.chance(0.12) {
				return j.fail(domain.StepVerification, attempt)
			}
			return system, c.RecordCheckStarted(attempt, fmt.Sprintf("chk-%d-%d", attempt, j.rng.IntN(1e6)))
		case j.chance(0.8):
			return "provider:kyc", c.RecordVerdict(c.CheckID(), true, "")
		case j.chance(0.5):
			return "provider:kyc", c.RecordVerdict(c.CheckID(), false, "document mismatch")
		default:
			return system, c.Pause(domain.StepVerification, domain.ErrorTransient, "no verdict before the deadline")
		}
	case domain.StateProvisioning:
		attempt := c.InFlight(step)
		if attempt == 0 {
			_, err := c.RequestStep(step)
			return system, err
		}
		if j.chance(0.2) {
			return j.fail(step, attempt)
		}
		return system, c.RecordStepSucceeded(step, attempt, map[string]string{"ref": fmt.Sprintf("%s-%d", step, j.rng.IntN(1e6))})
	case domain.StatePaused:
		switch {
		case c.PausedStep().Skippable() && j.chance(0.3):
			return Operator, c.SkipStep(Operator, "not needed for this customer")
		case j.chance(0.2):
			return Operator, c.Cancel(Operator, "gave up after pause")
		default:
			return Operator, c.RetryStep(Operator, "provider fixed")
		}
	case domain.StateCancelling:
		for _, s := range domain.Steps() {
			if a := c.InFlight(s); a != 0 {
				if j.chance(0.5) {
					return "system:" + string(s), c.RecordStepSucceeded(s, a, map[string]string{"ref": "late"})
				}
				return "system:" + string(s), c.RecordStepFailed(s, a, domain.ErrorTransient, "timeout")
			}
		}
		pending := c.PendingCompensations()
		switch {
		case len(pending) == 0:
			return "", errDone
		case pending[0] == domain.StepBilling:
			return "system:billing", c.RecordBillingClosed("acct", true)
		}
		return "system:tenant", c.RecordTenantDeprovisioned("tenant", j.chance(0.8))
	case domain.StateRejected:
		if err := c.NotifySupport("email", "verification rejected"); err != nil {
			return "", errDone // already notified
		}
		return "system:support", nil
	}
	return "", errDone
}

// fail records a failed attempt and pauses when it was permanent or the
// third in its group.
func (j *journey) fail(step domain.Step, attempt int) (string, error) {
	system := "system:" + string(step)
	class, msg := domain.ErrorTransient, "provider timeout"
	if j.chance(0.25) {
		class, msg = domain.ErrorPermanent, "declined by provider"
	}
	if err := j.c.RecordStepFailed(step, attempt, class, msg); err != nil {
		return system, err
	}
	if class == domain.ErrorPermanent || attempt >= 3 {
		return system, j.c.Pause(step, class, msg)
	}
	return system, nil
}
