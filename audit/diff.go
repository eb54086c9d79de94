package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/projections"
)

// LiveModel is what a diff reads of the live read models;
// *projections.Projections implements it.
type LiveModel interface {
	// Checkpoint returns the cursor up to which the projection's active
	// version reflects the log.
	Checkpoint(ctx context.Context, name string) (eventstore.Cursor, error)
	// ListCustomers returns a page of the customer summary.
	ListCustomers(ctx context.Context, q projections.ListQuery) (projections.CustomerPage, error)
	// ProviderCallStats returns the provider call counts.
	ProviderCallStats(ctx context.Context) ([]projections.ProviderCalls, error)
}

// Rebuilder rebuilds a read model from position 0 without stopping its
// readers; *projections.Projections implements it.
type Rebuilder interface {
	Rebuild(ctx context.Context, name string) (projections.RebuildResult, error)
}

// DiffSource is what a diff reads of the event store.
type DiffSource interface {
	eventstore.AllReader
	eventstore.StreamReader
}

// Difference is one way the live read model differs from a from-scratch
// replay of the log.
type Difference struct {
	// Key identifies the row: a customer id, or a step of provider_stats.
	Key string `json:"key"`
	// Field is the column that differs, or "row" when the row is missing
	// from one side.
	Field string `json:"field"`
	Live  string `json:"live"`
	// Replay is what the replay of the log says the value is.
	Replay string `json:"replay"`
}

// DiffReport lists the differences found.
type DiffReport struct {
	Projection string `json:"projection"`
	// Checkpoint is the live projection's checkpoint the replay stopped at.
	Checkpoint  eventstore.Cursor `json:"checkpoint"`
	Rows        int               `json:"rows"`
	Differences []Difference      `json:"differences"`
}

// ValidateProjection returns an error wrapping
// projections.ErrUnknownProjection for a name that is not a projection.
func ValidateProjection(name string) error {
	if slices.Contains(projections.Names(), name) {
		return nil
	}
	return fmt.Errorf("%w %q (known: %v)", projections.ErrUnknownProjection, name, projections.Names())
}

// Rebuild rebuilds each named projection in turn (all of them when names
// is empty) and calls done after each.
func Rebuild(ctx context.Context, r Rebuilder, names []string, done func(projections.RebuildResult)) error {
	if len(names) == 0 {
		names = projections.Names()
	}
	for _, n := range names {
		if err := ValidateProjection(n); err != nil {
			return err
		}
	}
	for _, n := range names {
		res, err := r.Rebuild(ctx, n)
		if err != nil {
			return err
		}
		if done != nil {
			done(res)
		}
	}
	return nil
}

// Diff compares the live read model name with a from-scratch replay of the
// log through today's domain code, up to the live checkpoint, and lists
// every difference. The projector may keep running: a customer row is
// compared with its stream replayed up to the row's own version, and rows
// behind the checkpoint are reported as such.
//
// Personal fields are compared when WithKeys decrypts them; without it an
// encrypted field cannot be compared and is left out.
func Diff(ctx context.Context, src DiffSource, live LiveModel, name string, opts ...Option) (DiffReport, error) {
	if err := ValidateProjection(name); err != nil {
		return DiffReport{}, err
	}
	switch name {
	case projections.Customers:
		return diffCustomers(ctx, src, live, optionsOf(opts))
	default:
		return diffProviderStats(ctx, src, live)
	}
}

// scanLog reads the log up to cp in global order and calls fn per event.
// Every event up to a projection's checkpoint was safe to read when the
// projector read it, so it still is: no waiting for the horizon.
func scanLog(ctx context.Context, src eventstore.AllReader, cp eventstore.Cursor, fn func(eventstore.Envelope)) error {
	if cp.IsZero() {
		return nil
	}
	return readLog(ctx, src, 10000, cp, 50*time.Millisecond, nil, func(events []eventstore.Envelope) error {
		for _, e := range events {
			fn(e)
		}
		return nil
	})
}

// diffReaders bounds the concurrent stream reads of a customers diff: enough
// to hide round trips, few enough to leave the pool to others.
const diffReaders = 4

func diffCustomers(ctx context.Context, src DiffSource, live LiveModel, o options) (DiffReport, error) {
	rep := DiffReport{Projection: projections.Customers}
	cp, err := live.Checkpoint(ctx, projections.Customers)
	if err != nil {
		return rep, fmt.Errorf("diff: %w", err)
	}
	rep.Checkpoint = cp
	// The version of every customer stream at the checkpoint: memory per
	// stream, not per event.
	versions := map[uuid.UUID]int64{}
	err = scanLog(ctx, src, cp, func(e eventstore.Envelope) {
		if e.StreamType != customerStreamType {
			return
		}
		raw, ok := strings.CutPrefix(e.StreamID, customerStreamType+"-")
		if id, err := uuid.Parse(raw); ok && err == nil {
			versions[id] = e.Version
		}
	})
	if err != nil {
		return rep, fmt.Errorf("diff: %w", err)
	}

	seen := map[uuid.UUID]bool{}
	q := projections.ListQuery{Limit: projections.MaxListLimit}
	for {
		page, err := live.ListCustomers(ctx, q)
		if err != nil {
			return rep, fmt.Errorf("diff: %w", err)
		}
		// One stream read per row: replay a page's rows concurrently, then
		// compare them in order so the report is deterministic.
		type replayed struct {
			want projections.Customer
			err  error
		}
		results := make([]replayed, len(page.Items))
		var wg sync.WaitGroup
		sem := make(chan struct{}, diffReaders)
		for i, row := range page.Items {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				results[i].want, results[i].err = replaySummary(ctx, src, row.ID, row.Version, o)
			}()
		}
		wg.Wait()
		for i, row := range page.Items {
			rep.Rows++
			seen[row.ID] = true
			key := row.ID.String()
			want, err := results[i].want, results[i].err
			if errors.Is(err, ErrCustomerNotFound) {
				rep.Differences = append(rep.Differences, Difference{Key: key, Field: "row", Live: "present", Replay: "no such stream"})
				continue
			}
			if err != nil {
				return rep, fmt.Errorf("diff: %w", err)
			}
			rep.Differences = append(rep.Differences, compareCustomer(key, row, want)...)
			if v, ok := versions[row.ID]; ok && row.Version < v {
				rep.Differences = append(rep.Differences, Difference{Key: key, Field: "version",
					Live: fmt.Sprint(row.Version), Replay: fmt.Sprintf("%d (at the checkpoint)", v)})
			}
		}
		if page.Next == uuid.Nil {
			break
		}
		q.After = page.Next
	}
	missing := make([]uuid.UUID, 0)
	for id := range versions {
		if !seen[id] {
			missing = append(missing, id)
		}
	}
	slices.SortFunc(missing, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	for _, id := range missing {
		rep.Differences = append(rep.Differences, Difference{Key: id.String(), Field: "row", Live: "missing", Replay: "present"})
	}
	return rep, nil
}

// replaySummary replays customer id's stream up to version through the
// domain and returns the summary row it implies.
func replaySummary(ctx context.Context, src eventstore.StreamReader, id uuid.UUID, version int64, o options) (projections.Customer, error) {
	envs, err := src.ReadStream(ctx, CustomerStreamID(id), 1)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return projections.Customer{}, ErrCustomerNotFound
	}
	if err != nil {
		return projections.Customer{}, err
	}
	if int64(len(envs)) > version {
		envs = envs[:version]
	}
	if len(envs) == 0 {
		return projections.Customer{}, ErrCustomerNotFound
	}
	history, err := o.history(ctx, id, envs)
	if err != nil {
		return projections.Customer{}, fmt.Errorf("customer %s: %w", id, err)
	}
	var pausedAt, activatedAt *time.Time
	for i, ev := range history {
		at := envs[i].RecordedAt
		switch ev.(type) {
		case domain.Paused:
			pausedAt = &at
		case domain.OnboardingCompleted:
			activatedAt = &at
		}
	}
	c, err := domain.FromHistory(id, history)
	if err != nil {
		return projections.Customer{}, fmt.Errorf("customer %s: %w", id, err)
	}
	s := c.Snapshot()
	if s.PausedStep == "" {
		pausedAt = nil
	}
	attempts := 0
	for _, st := range s.Steps {
		if st.Step == s.Step {
			attempts = st.Attempt
		}
	}
	first, last := envs[0], envs[len(envs)-1]
	return projections.Customer{
		ID: id, Email: s.Email, Company: s.Company, ContactName: s.ContactName, Country: s.Country,
		Plan: string(s.Plan), State: string(s.State), Step: string(s.Step), Attempts: attempts,
		LastError: s.LastError, PausedStep: string(s.PausedStep), PauseReason: s.PauseReason, PausedAt: pausedAt,
		CreatedAt: first.RecordedAt, UpdatedAt: last.RecordedAt, ActivatedAt: activatedAt,
		Version: last.Version, Position: last.Position, CreatedBy: first.Metadata.Actor,
	}, nil
}

func compareCustomer(key string, live, want projections.Customer) []Difference {
	var out []Difference
	field := func(name string, l, r any) {
		ls, rs := fmt.Sprint(l), fmt.Sprint(r)
		if ls != rs && rs != domain.Encrypted {
			out = append(out, Difference{Key: key, Field: name, Live: ls, Replay: rs})
		}
	}
	ts := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	field("email", live.Email, want.Email)
	field("company", live.Company, want.Company)
	field("contact_name", live.ContactName, want.ContactName)
	field("country", live.Country, want.Country)
	field("plan", live.Plan, want.Plan)
	field("state", live.State, want.State)
	field("step", live.Step, want.Step)
	field("attempts", live.Attempts, want.Attempts)
	field("last_error", live.LastError, want.LastError)
	field("paused_step", live.PausedStep, want.PausedStep)
	field("pause_reason", live.PauseReason, want.PauseReason)
	field("paused_at", ts(live.PausedAt), ts(want.PausedAt))
	field("created_at", ts(&live.CreatedAt), ts(&want.CreatedAt))
	field("updated_at", ts(&live.UpdatedAt), ts(&want.UpdatedAt))
	field("activated_at", ts(live.ActivatedAt), ts(want.ActivatedAt))
	field("version", live.Version, want.Version)
	field("position", live.Position, want.Position)
	field("created_by", live.CreatedBy, want.CreatedBy)
	return out
}

func diffProviderStats(ctx context.Context, src DiffSource, live LiveModel) (DiffReport, error) {
	rep := DiffReport{Projection: projections.ProviderStats}
	// The stats and the checkpoint are read apart: read again until the
	// checkpoint did not move in between, so both describe one moment.
	var (
		stats []projections.ProviderCalls
		cp    eventstore.Cursor
	)
	for attempt := 0; ; attempt++ {
		before, err := live.Checkpoint(ctx, projections.ProviderStats)
		if err != nil {
			return rep, fmt.Errorf("diff: %w", err)
		}
		if stats, err = live.ProviderCallStats(ctx); err != nil {
			return rep, fmt.Errorf("diff: %w", err)
		}
		if cp, err = live.Checkpoint(ctx, projections.ProviderStats); err != nil {
			return rep, fmt.Errorf("diff: %w", err)
		}
		if cp == before {
			break
		}
		if attempt == 10 {
			return rep, fmt.Errorf("diff: %s keeps moving; stop the projector or retry", projections.ProviderStats)
		}
	}
	rep.Checkpoint = cp
	want := map[string]*projections.ProviderCalls{}
	for _, s := range domain.Steps() {
		want[string(s)] = &projections.ProviderCalls{Step: string(s), Provider: projections.ProviderOf(s)}
	}
	get := func(s domain.Step) *projections.ProviderCalls {
		if want[string(s)] == nil {
			want[string(s)] = &projections.ProviderCalls{Step: string(s), Provider: projections.ProviderOf(s)}
		}
		return want[string(s)]
	}
	var decodeErr error
	err := scanLog(ctx, src, cp, func(e eventstore.Envelope) {
		if e.StreamType != customerStreamType || decodeErr != nil {
			return
		}
		if !projections.CountsCall(e.Type) {
			return
		}
		ev, err := domain.DecodeEvent(e.Type, e.Data)
		if err != nil {
			decodeErr = fmt.Errorf("%s version %d: %w", e.StreamID, e.Version, err)
			return
		}
		if step, add, ok := projections.CallOf(ev); ok {
			get(step).Add(add)
		}
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return rep, fmt.Errorf("diff: %w", err)
	}
	for _, l := range stats {
		rep.Rows++
		w, ok := want[l.Step]
		if !ok {
			rep.Differences = append(rep.Differences, Difference{Key: l.Step, Field: "row", Live: "present", Replay: "no such step"})
			continue
		}
		cmp := func(field string, a, b int64) {
			if a != b {
				rep.Differences = append(rep.Differences, Difference{Key: l.Step, Field: field, Live: fmt.Sprint(a), Replay: fmt.Sprint(b)})
			}
		}
		cmp("requested", l.Requested, w.Requested)
		cmp("succeeded", l.Succeeded, w.Succeeded)
		cmp("failed", l.Failed, w.Failed)
		cmp("permanent_failures", l.PermanentFailures, w.PermanentFailures)
	}
	return rep, nil
}
