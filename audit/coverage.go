package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/projections"
)

// CoverageOptions configure Coverage. Route is required.
type CoverageOptions struct {
	// Route is the routing rule (process.RouteOf): which manager an event
	// goes to given the next event of its stream. Coverage passes the
	// actual next event, so it asks for the fewest events the relay can
	// have routed.
	Route func(env eventstore.Envelope, next *eventstore.Envelope) string
	// Inboxes are the consumers whose inbox rows are checked.
	Inboxes []InboxConsumer
	// InboxKeptSince, when set, is the time before which inbox rows may
	// have been pruned (messaging.PruneInbox: the database's now minus the
	// retention): a missing row of an event recorded before it is counted
	// as pruned, not as a gap.
	InboxKeptSince time.Time
	// Until is the last event to read (normally the last committed one);
	// Coverage reads at least up to every projection's checkpoint. Until,
	// PageSize, PollInterval and Waiting work as in VerifyOptions.
	Until        eventstore.Cursor
	PageSize     int
	PollInterval time.Duration
	Waiting      func(waited time.Duration)
	// MaxGaps bounds each consumer's Gaps (GapCount counts them all).
	// Default 1000.
	MaxGaps int
}

// Coverage proves, for each durable consumer, that it processed every
// event up to its position, reading the log once in global order.
//
//   - customers: each row's stream version equals its stream's version at
//     the checkpoint (or is newer: the projector moved on); a row behind
//     or missing is a gap at its stream's first event it lacks.
//   - provider_stats: each counter is at least the number of its events at
//     or before the checkpoint; a short one is a gap at its first event
//     not counted.
//   - each inbox consumer: every event routed to it (Route, with the
//     actual next event of its stream) at or before the last event it
//     recorded has an inbox row, or sorts at or before a runner's
//     checkpoint.
//   - each runner: its checkpoint, which covers every event before it.
//
// Each projection's checkpoint is read before its rows, and the projector
// only moves forward, so a running projector causes no false gap. A
// process manager's event still in flight (its delivery retried while
// later ones were recorded) shows as a gap until it is handled.
// Coverage returns an error only when reading failed; use
// CoverageReport.Err for the verdict.
func Coverage(ctx context.Context, src eventstore.AllReader, live LiveModel, records ConsumerRecords, opts CoverageOptions) (CoverageReport, error) {
	start := time.Now()
	if opts.Route == nil {
		return CoverageReport{}, errors.New("coverage: no Route")
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 10000
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	if opts.MaxGaps <= 0 {
		opts.MaxGaps = 1000
	}
	c, err := loadCoverage(ctx, live, records, opts)
	if err != nil {
		return CoverageReport{}, fmt.Errorf("coverage: %w", err)
	}
	until := opts.Until
	for _, p := range c.projections {
		if p.Position.Compare(until) > 0 {
			until = p.Position
		}
	}
	if err := readPages(ctx, src, opts, until, c); err != nil {
		return CoverageReport{}, fmt.Errorf("coverage: %w", err)
	}
	rep := c.finish()
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// readPages reads the log up to until with readLog: one goroutine fetches
// pages, one prepares each on every core (routing and decoding, the bulk of
// the work), and this one applies them in order.
func readPages(ctx context.Context, src eventstore.AllReader, opts CoverageOptions, until eventstore.Cursor, c *coverage) error {
	if until.IsZero() {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fetched := make(chan []eventstore.Envelope, 2)
	errc := make(chan error, 1)
	go func() {
		defer close(fetched)
		errc <- readLog(ctx, src, opts.PageSize, until, opts.PollInterval, opts.Waiting, func(events []eventstore.Envelope) error {
			select {
			case fetched <- events:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	type page struct {
		events []eventstore.Envelope
		prep   []preparedEvent
	}
	prepared := make(chan page, 2)
	go func() {
		defer close(prepared)
		for events := range fetched {
			select {
			case prepared <- page{events, c.prepare(events)}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for p := range prepared {
		for i, e := range p.events {
			c.add(e, p.prep[i])
		}
	}
	return <-errc
}

// preparedEvent is what an event's coverage needs that no other page
// does: its route when its stream's next event is in its page, and the
// provider_stats counters it adds to.
type preparedEvent struct {
	decided bool // route is decided: the stream's next event is in the page, or none will come
	route   string
	stats   []statKey
}

// prepare routes and decodes a page's events in parallel. It only reads
// what loadCoverage set.
func (c *coverage) prepare(events []eventstore.Envelope) []preparedEvent {
	out := make([]preparedEvent, len(events))
	next := make([]int, len(events))
	seen := map[string]int{}
	for i := len(events) - 1; i >= 0; i-- {
		next[i] = -1
		if j, ok := seen[events[i].StreamID]; ok {
			next[i] = j
		}
		seen[events[i].StreamID] = i
	}
	workers := runtime.GOMAXPROCS(0)
	chunk := (len(events) + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < len(events); lo += chunk {
		hi := min(lo+chunk, len(events))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				if j := next[i]; j >= 0 {
					out[i].decided, out[i].route = true, c.opts.Route(events[i], &events[j])
				}
				if c.stats != nil && events[i].Cursor().Compare(c.stats.Position) <= 0 {
					out[i].stats = statKeys(events[i])
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// coverage is the state of one pass: per stream only its last event and
// version, per consumer its counts and gaps.
type coverage struct {
	opts        CoverageOptions
	events      int64
	projections []*ConsumerCoverage

	customers   *ConsumerCoverage
	rows        map[string]int64 // customer stream id -> row version
	customerGap map[string]int   // customer stream id -> index in customers.Gaps, -1 past MaxGaps
	logVersion  map[string]int64 // customer stream id -> version at the checkpoint, for lagging rows

	stats    *ConsumerCoverage
	live     map[statKey]int64
	counted  map[statKey]int64
	statGaps map[statKey]int

	inboxes []*inboxCoverage
	byRoute map[string]*inboxCoverage
	inbox   map[uuid.UUID]uint64 // event id -> bit per inbox consumer that recorded it
	runners []*ConsumerCoverage
	covered eventstore.Cursor              // the furthest runner checkpoint
	last    map[string]eventstore.Envelope // per stream, its last event while its route is not decided
}

type statKey struct {
	step  domain.Step
	field string
}

type inboxCoverage struct {
	ConsumerCoverage
	route     string
	bit       uint64
	recorded  bool                  // it has inbox rows
	undecided []eventstore.Envelope // routed, missing, after Position when routed
}

// loadCoverage reads what each consumer recorded: checkpoints first, then
// the rows they cover.
func loadCoverage(ctx context.Context, live LiveModel, records ConsumerRecords, opts CoverageOptions) (*coverage, error) {
	c := &coverage{opts: opts, last: map[string]eventstore.Envelope{}}
	for _, name := range projections.Names() {
		cp, err := live.Checkpoint(ctx, name)
		if err != nil {
			return nil, err
		}
		p := &ConsumerCoverage{Name: name, Kind: ConsumerProjection, Position: cp, Gaps: []Gap{}}
		c.projections = append(c.projections, p)
		var lerr error
		switch name {
		case projections.Customers:
			c.customers, lerr = p, c.loadCustomers(ctx, live)
		case projections.ProviderStats:
			c.stats, lerr = p, c.loadStats(ctx, live)
		}
		if lerr != nil {
			return nil, lerr
		}
	}
	if err := c.loadInboxes(ctx, records); err != nil {
		return nil, err
	}
	runners, err := records.RunnerCheckpoints(ctx)
	if err != nil {
		return nil, err
	}
	for name, cp := range runners {
		c.runners = append(c.runners, &ConsumerCoverage{Name: name, Kind: ConsumerCheckpoint, Position: cp, Gaps: []Gap{}})
		if cp.Compare(c.covered) > 0 {
			c.covered = cp
		}
	}
	sortConsumers(c.runners)
	return c, nil
}

func (c *coverage) loadCustomers(ctx context.Context, live LiveModel) error {
	c.rows, c.customerGap, c.logVersion = map[string]int64{}, map[string]int{}, map[string]int64{}
	q := projections.ListQuery{Limit: projections.MaxListLimit}
	for {
		page, err := live.ListCustomers(ctx, q)
		if err != nil {
			return err
		}
		for _, row := range page.Items {
			c.rows[CustomerStreamID(row.ID)] = row.Version
		}
		if page.Next == uuid.Nil {
			return nil
		}
		q.After = page.Next
	}
}

func (c *coverage) loadStats(ctx context.Context, live LiveModel) error {
	stats, err := live.ProviderCallStats(ctx)
	if err != nil {
		return err
	}
	c.live, c.counted, c.statGaps = map[statKey]int64{}, map[statKey]int64{}, map[statKey]int{}
	for _, s := range stats {
		step := domain.Step(s.Step)
		for _, f := range statFields(s) {
			c.live[statKey{step, f.name}] = f.n
		}
	}
	return nil
}

func (c *coverage) loadInboxes(ctx context.Context, records ConsumerRecords) error {
	if len(c.opts.Inboxes) > 64 {
		return fmt.Errorf("%d inbox consumers: at most 64", len(c.opts.Inboxes))
	}
	c.byRoute, c.inbox = map[string]*inboxCoverage{}, map[uuid.UUID]uint64{}
	handlers := make([]string, len(c.opts.Inboxes))
	for i, ic := range c.opts.Inboxes {
		handlers[i] = ic.Handler
		in := &inboxCoverage{ConsumerCoverage: ConsumerCoverage{Name: ic.Handler, Kind: ConsumerInbox, Gaps: []Gap{}},
			route: ic.Route, bit: 1 << i}
		c.inboxes = append(c.inboxes, in)
		c.byRoute[ic.Route] = in
	}
	rows, err := records.Inbox(ctx, handlers)
	if err != nil {
		return err
	}
	for _, in := range c.inboxes {
		for _, id := range rows[in.Name] {
			c.inbox[id] |= in.bit
		}
		in.recorded = len(rows[in.Name]) > 0
	}
	return nil
}

// add takes the next event in global order.
func (c *coverage) add(e eventstore.Envelope, p preparedEvent) {
	c.events++
	if bits := c.inbox[e.ID]; bits != 0 {
		for _, in := range c.inboxes {
			if bits&in.bit != 0 {
				in.Position = e.Cursor()
			}
		}
	}
	for _, r := range c.runners {
		if e.Cursor().Compare(r.Position) <= 0 {
			r.Covered++
		}
	}
	if c.customers != nil && e.StreamType == customerStreamType && e.Cursor().Compare(c.customers.Position) <= 0 {
		c.addCustomerEvent(e)
	}
	for _, k := range p.stats {
		c.countStat(k, e)
	}
	// An event's route depends on the next event of its stream: when that
	// one was not in its page, it is decided when it arrives, or at the
	// end.
	if prev, ok := c.last[e.StreamID]; ok {
		delete(c.last, e.StreamID)
		c.settle(prev, c.opts.Route(prev, &e))
	}
	if p.decided {
		c.settle(e, p.route)
	} else {
		c.last[e.StreamID] = e
	}
}

func (c *coverage) addCustomerEvent(e eventstore.Envelope) {
	if e.Version <= c.rows[e.StreamID] {
		c.customers.Covered++
		return
	}
	c.logVersion[e.StreamID] = e.Version
	if _, ok := c.customerGap[e.StreamID]; ok {
		return
	}
	c.customerGap[e.StreamID] = c.gap(c.customers, e, "")
}

// statKeys returns the provider_stats counters e adds to
// (projections.CallOf says which).
func statKeys(e eventstore.Envelope) []statKey {
	if e.StreamType != customerStreamType || !projections.CountsCall(e.Type) {
		return nil
	}
	ev, err := domain.DecodeEvent(e.Type, e.Data)
	if err != nil {
		return nil // the projector cannot have counted it either; verify reports it
	}
	step, add, ok := projections.CallOf(ev)
	if !ok {
		return nil
	}
	var keys []statKey
	for _, f := range statFields(add) {
		if f.n > 0 {
			keys = append(keys, statKey{step, f.name})
		}
	}
	return keys
}

// statFields names each counter of c with its value.
func statFields(c projections.ProviderCalls) []struct {
	name string
	n    int64
} {
	return []struct {
		name string
		n    int64
	}{{"requested", c.Requested}, {"succeeded", c.Succeeded}, {"failed", c.Failed}, {"permanent_failures", c.PermanentFailures}}
}

// countStat counts e in counter k: covered while the read model's counter
// holds it, else a gap at the first event it lacks.
func (c *coverage) countStat(k statKey, e eventstore.Envelope) {
	c.counted[k]++
	if c.counted[k] <= c.live[k] {
		c.stats.Covered++
		return
	}
	if _, ok := c.statGaps[k]; !ok {
		c.statGaps[k] = c.gap(c.stats, e, "")
	}
}

// settle takes env's route and checks its consumer recorded it.
func (c *coverage) settle(env eventstore.Envelope, route string) {
	in := c.byRoute[route]
	if in == nil {
		return
	}
	switch {
	case c.inbox[env.ID]&in.bit != 0, env.Cursor().Compare(c.covered) <= 0:
		in.Covered++
	case !c.opts.InboxKeptSince.IsZero() && env.RecordedAt.Before(c.opts.InboxKeptSince):
		in.Pruned++
	case env.Cursor().Compare(in.Position) < 0:
		// Position only grows: this stays a gap.
		c.inboxGap(in, env)
	case in.recorded:
		in.undecided = append(in.undecided, env)
	default:
		in.Pending++ // a consumer without inbox rows has processed nothing
	}
}

func (c *coverage) inboxGap(in *inboxCoverage, env eventstore.Envelope) {
	c.gap(&in.ConsumerCoverage, env, fmt.Sprintf("routed to %s, no inbox row of %s", in.route, in.Name))
}

// gap records a gap of consumer at e and returns its index in Gaps, or -1
// past MaxGaps.
func (c *coverage) gap(consumer *ConsumerCoverage, e eventstore.Envelope, detail string) int {
	consumer.GapCount++
	if len(consumer.Gaps) >= c.opts.MaxGaps {
		return -1
	}
	consumer.Gaps = append(consumer.Gaps, Gap{Position: e.Position, EventID: e.ID, StreamID: e.StreamID,
		Version: e.Version, Type: e.Type, Detail: detail})
	return len(consumer.Gaps) - 1
}

// finish decides the last event of every stream, settles the events routed
// after an inbox consumer's position at the time, and writes the details
// that needed the whole pass.
func (c *coverage) finish() CoverageReport {
	for _, e := range c.last {
		c.settle(e, c.opts.Route(e, nil))
	}
	rep := CoverageReport{Events: c.events}
	for _, p := range c.projections {
		rep.Consumers = append(rep.Consumers, *p)
	}
	c.describeProjectionGaps(rep.Consumers)
	for _, r := range c.runners {
		rep.Consumers = append(rep.Consumers, *r)
	}
	for _, in := range c.inboxes {
		sortEnvelopes(in.undecided)
		for _, env := range in.undecided {
			if env.Cursor().Compare(in.Position) < 0 {
				c.inboxGap(in, env)
			} else {
				in.Pending++
			}
		}
		sortGaps(in.Gaps)
		rep.Consumers = append(rep.Consumers, in.ConsumerCoverage)
	}
	return rep
}

func (c *coverage) describeProjectionGaps(consumers []ConsumerCoverage) {
	for i := range consumers {
		p := &consumers[i]
		switch p.Name {
		case projections.Customers:
			for stream, at := range c.customerGap {
				if at < 0 {
					continue
				}
				row, ok := c.rows[stream]
				if !ok {
					p.Gaps[at].Detail = fmt.Sprintf("no row; the stream is at version %d at the checkpoint", c.logVersion[stream])
					continue
				}
				p.Gaps[at].Detail = fmt.Sprintf("row at version %d; the stream is at version %d at the checkpoint", row, c.logVersion[stream])
			}
		case projections.ProviderStats:
			for k, at := range c.statGaps {
				if at < 0 {
					continue
				}
				p.Gaps[at].Detail = fmt.Sprintf("%s %s: %d in the read model, %d at the checkpoint (the first not counted is this event)",
					k.step, k.field, c.live[k], c.counted[k])
			}
		}
	}
}

func sortConsumers(cs []*ConsumerCoverage) {
	slices.SortFunc(cs, func(a, b *ConsumerCoverage) int { return cmp.Compare(a.Name, b.Name) })
}

func sortEnvelopes(es []eventstore.Envelope) {
	slices.SortFunc(es, func(a, b eventstore.Envelope) int { return a.Cursor().Compare(b.Cursor()) })
}

func sortGaps(gs []Gap) {
	slices.SortFunc(gs, func(a, b Gap) int { return cmp.Compare(a.Position, b.Position) })
}
