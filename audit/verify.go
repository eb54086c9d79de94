package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// Report is the outcome of a verification.
type Report struct {
	// Streams and Events are how many were read.
	Streams int   `json:"streams"`
	Events  int64 `json:"events"`
	// Failed is how many streams have a problem; Problems holds the first
	// problem of each, up to VerifyOptions.MaxProblems, in the order found.
	Failed   int       `json:"failed"`
	Problems []Problem `json:"problems"`
	// Elapsed is the wall time of the verification.
	Elapsed time.Duration `json:"elapsed_ns"`
	// Seals is what the seals show, when VerifyOptions.Seals was set.
	Seals *SealReport `json:"seals,omitempty"`
}

// EventsPerSecond is the verification's throughput.
func (r Report) EventsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Events) / r.Elapsed.Seconds()
}

// Err returns nil when nothing is wrong, or a *VerifyFailedError.
func (r Report) Err() error {
	var seals int
	if r.Seals != nil {
		seals = len(r.Seals.Problems)
	}
	if r.Failed == 0 && seals == 0 {
		return nil
	}
	return &VerifyFailedError{Problems: r.Failed, Streams: r.Streams, SealProblems: seals}
}

// VerifyOptions tune a verification. The zero value is usable.
type VerifyOptions struct {
	// PageSize is how many events one ReadAll call returns. Default 10000.
	PageSize int
	// MaxProblems bounds Report.Problems (every failed stream is still
	// counted in Report.Failed). Default 1000.
	MaxProblems int
	// Progress, when set, is called after each page with the number of
	// events read so far. It runs on the verifying goroutine.
	Progress func(events int64)
	// Until, when set, is the cursor of the last event to verify, normally
	// the last one committed when verification starts. Without it,
	// verification stops at the first empty page, which may come early
	// while other transactions hold the safe horizon back (see ReadAll).
	Until eventstore.Cursor
	// PollInterval is how long to wait for the safe horizon to reach
	// Until. Default 50ms.
	PollInterval time.Duration
	// Waiting, when set, is told how long verification has been waiting
	// for transactions in flight to end, after each PollInterval of it:
	// a long-running transaction anywhere in the database cluster holds
	// the safe horizon back, and a user should be told why nothing moves.
	// It runs on the reading goroutine.
	Waiting func(waited time.Duration)
	// Seals, when set, are checked against the log: the stored seals in
	// Seq order, read before Until is taken (a seal then never covers an
	// event committed after Until, so one that covers positions past the
	// end of the log means events were removed).
	Seals *SealSource
}

// SealSource is what verification checks the log's completeness with.
type SealSource struct {
	// Stored are the seals table's seals in Seq order.
	Stored []eventstore.Seal
	// Kept are seals kept outside the database (an anchor file, the seals
	// published on NATS): each must be in the table, and is checked
	// against the log when it is not.
	Kept []eventstore.Seal
	// Keys are the trusted public keys; without any, signatures are not
	// checked.
	Keys []ed25519.PublicKey
}

func (o *VerifyOptions) setDefaults() {
	if o.PageSize <= 0 {
		o.PageSize = 10000
	}
	if o.MaxProblems <= 0 {
		o.MaxProblems = 1000
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 50 * time.Millisecond
	}
}

// streamCheck is what a whole-store verification keeps per stream: enough
// to check the next event, never the events themselves.
type streamCheck struct {
	version  int64
	lastHash []byte
	failed   bool
	customer bool // a customer stream: its events go through the state machine
	m        machine
}

// Checker verifies events fed to it one by one, in global order (or in
// version order for one stream). Each stream's events must arrive in
// version order, as the event store's global order guarantees. It is not
// safe for concurrent use.
type Checker struct {
	set     edges
	streams map[string]*streamCheck
	report  Report
	max     int
}

// NewChecker returns a Checker that keeps at most maxProblems problems (the
// rest are only counted); 0 means 1000.
func NewChecker(maxProblems int) *Checker {
	if maxProblems <= 0 {
		maxProblems = 1000
	}
	return &Checker{set: newEdges(), streams: map[string]*streamCheck{}, max: maxProblems}
}

// Add checks one event: its version follows the stream's last one, its
// previous hash links to that event's hash, its content matches its own
// hash (eventstore.Hash, the computation eventstore.VerifyChain uses), it
// decodes with today's code, and the transition it records is in today's
// table.
func (c *Checker) Add(e eventstore.Envelope) {
	c.add(e, precheck(e))
}

// prechecked is the part of an event's check that needs no other event:
// whether its content matches its hash given its stored previous hash, and
// its decoded form. Computing it is most of the cost of a check, and it can
// run in parallel.
type prechecked struct {
	hashOK    bool
	event     domain.Event
	decodeErr error
}

func precheck(e eventstore.Envelope) prechecked {
	p := prechecked{hashOK: bytes.Equal(eventstore.Hash(e.PrevHash, e), e.Hash)}
	if isCustomerStream(e) {
		p.event, p.decodeErr = domain.DecodeEvent(e.Type, e.Data)
	}
	return p
}

func (c *Checker) add(e eventstore.Envelope, p prechecked) {
	c.report.Events++
	s := c.streams[e.StreamID]
	if s == nil {
		s = &streamCheck{customer: isCustomerStream(e)}
		c.streams[e.StreamID] = s
		c.report.Streams++
	}
	if s.failed {
		return
	}
	want := s.version + 1
	switch {
	case e.Version != want:
		c.fail(s, e.StreamID, want, ProblemVersionGap, fmt.Sprintf("version %d missing (found %d)", want, e.Version))
		return
	case !bytes.Equal(e.PrevHash, s.lastHash):
		c.fail(s, e.StreamID, e.Version, ProblemHashChain, "previous hash does not match the previous event")
		return
	case !p.hashOK:
		// The previous hash is the stream's last one (checked above), so
		// this is the chain's own check.
		c.fail(s, e.StreamID, e.Version, ProblemContent, "content does not match its hash")
		return
	}
	s.version = e.Version
	// The envelope's Hash slice is not reused by the reader, so keeping
	// it costs no copy.
	s.lastHash = e.Hash
	if !s.customer {
		return
	}
	if p.decodeErr != nil {
		c.fail(s, e.StreamID, e.Version, ProblemDecode, p.decodeErr.Error())
		return
	}
	if terr := s.m.next(c.set, e.Version, e.TransactionID, p.event); terr != nil {
		c.fail(s, e.StreamID, terr.version, ProblemTransition, terr.detail)
	}
}

// Finish closes every stream's last command group and returns the report.
// The Checker must not be used afterwards.
func (c *Checker) Finish() Report {
	for id, s := range c.streams {
		if s.failed || !s.customer {
			continue
		}
		if terr := s.m.close(c.set); terr != nil {
			c.fail(s, id, terr.version, ProblemTransition, terr.detail)
		}
	}
	return c.report
}

func (c *Checker) fail(s *streamCheck, streamID string, version int64, kind ProblemKind, detail string) {
	s.failed = true
	c.report.Failed++
	if len(c.report.Problems) < c.max {
		c.report.Problems = append(c.report.Problems, Problem{StreamID: streamID, Version: version, Kind: kind, Detail: detail})
	}
}

func isCustomerStream(e eventstore.Envelope) bool {
	return e.StreamType == customerStreamType || strings.HasPrefix(e.StreamID, customerStreamType+"-")
}

// VerifyAll verifies the whole store (up to opts.Until), reading it once in
// global order with ReadAll pages (never one query per stream) while the
// next page is being fetched. Memory grows with the number of streams, not of events. It
// returns the report, and an error only when reading failed; use
// Report.Err for the verdict.
func VerifyAll(ctx context.Context, r eventstore.AllReader, opts VerifyOptions) (Report, error) {
	opts.setDefaults()
	start := time.Now()
	c := NewChecker(opts.MaxProblems)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prepared := prepareLog(ctx, r, opts)

	var (
		sc   *sealCheck
		last eventstore.Cursor
	)
	if opts.Seals != nil {
		sc = newSealCheck(opts.Seals.Stored, opts.Seals.Kept, opts.Seals.Keys)
	}
	for p := range prepared {
		if p.err != nil {
			return c.report, fmt.Errorf("verify: %w", p.err)
		}
		if sc == nil {
			for i, e := range p.events {
				c.add(e, p.checks[i])
			}
		} else {
			for i, e := range p.events {
				sc.before(e, c)
				sc.apply(e)
				c.add(e, p.checks[i])
			}
			last = p.events[len(p.events)-1].Cursor()
		}
		if opts.Progress != nil {
			opts.Progress(c.report.Events)
		}
	}
	if err := ctx.Err(); err != nil {
		return c.report, fmt.Errorf("verify: %w", err)
	}
	var seals SealReport
	if sc != nil {
		seals = sc.finish(c, last)
	}
	rep := c.Finish()
	if sc != nil {
		rep.Seals = &seals
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// verifyPage is a page of the log with each event's precheck, or the error
// that ended reading.
type verifyPage struct {
	events []eventstore.Envelope
	checks []prechecked
	err    error
}

// prepareLog is a pipeline: one goroutine fetches pages, one prechecks each
// page on every core (hashes and decoding, the bulk of the work), and the
// caller applies them in order (links, versions, the state machine). Its
// goroutines end when the log is read or ctx is done.
func prepareLog(ctx context.Context, r eventstore.AllReader, opts VerifyOptions) <-chan verifyPage {
	send := func(ch chan<- verifyPage, p verifyPage) bool {
		select {
		case ch <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}
	fetched := make(chan verifyPage, 2)
	go func() {
		defer close(fetched)
		err := readLog(ctx, r, opts.PageSize, opts.Until, opts.PollInterval, opts.Waiting, func(events []eventstore.Envelope) error {
			if !send(fetched, verifyPage{events: events}) {
				return ctx.Err()
			}
			return nil
		})
		if err != nil {
			send(fetched, verifyPage{err: err})
		}
	}()
	prepared := make(chan verifyPage, 2)
	go func() {
		defer close(prepared)
		for p := range fetched {
			if p.err == nil {
				p.checks = precheckAll(p.events)
			}
			if !send(prepared, p) {
				return
			}
		}
	}()
	return prepared
}

// precheckAll prechecks events on every core.
func precheckAll(events []eventstore.Envelope) []prechecked {
	checks := make([]prechecked, len(events))
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	chunk := (len(events) + workers - 1) / workers
	for lo := 0; lo < len(events); lo += chunk {
		hi := min(lo+chunk, len(events))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				checks[i] = precheck(events[i])
			}
		}()
	}
	wg.Wait()
	return checks
}

// VerifyStream verifies one stream. A stream that does not exist is an
// error wrapping ErrCustomerNotFound when it is a customer's, and
// eventstore.ErrStreamNotFound otherwise.
func VerifyStream(ctx context.Context, r eventstore.StreamReader, streamID string) (Report, error) {
	start := time.Now()
	events, err := r.ReadStream(ctx, streamID, 1)
	if errors.Is(err, eventstore.ErrStreamNotFound) && strings.HasPrefix(streamID, customerStreamType+"-") {
		return Report{}, fmt.Errorf("verify %s: %w", streamID, ErrCustomerNotFound)
	}
	if err != nil {
		return Report{}, fmt.Errorf("verify %s: %w", streamID, err)
	}
	c := NewChecker(0)
	for _, e := range events {
		c.Add(e)
	}
	rep := c.Finish()
	rep.Elapsed = time.Since(start)
	return rep, nil
}
