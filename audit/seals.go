package audit

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"

	"github.com/onboard/onboard/eventstore"
)

// SealProblemKind classifies what the seals show wrong with the log.
type SealProblemKind string

// The seal problems.
const (
	// SealLogChanged: the log up to a seal's position does not have the
	// seal's digest or number of events: events before it were removed,
	// inserted or changed.
	SealLogChanged SealProblemKind = "log_changed"
	// SealLogTruncated: a seal covers positions past the end of the log:
	// its newest events were removed.
	SealLogTruncated SealProblemKind = "log_truncated"
	// SealBad: a seal's signature or heads do not verify (forged or
	// altered).
	SealBad SealProblemKind = "seal_bad"
	// SealMissing: a seal the anchor or NATS holds, or a number between
	// two stored seals, is not in the seals table (seals deleted).
	SealMissing SealProblemKind = "seal_missing"
	// SealDiffers: the anchor or NATS holds another seal under a number
	// the table has.
	SealDiffers SealProblemKind = "seal_differs"
)

// SealProblem is one thing the seals show wrong. For the log's problems
// Position is the seal's position and After the position of the last seal
// that matched, so the damage lies between them; Streams are the streams
// the seal names that the log does not hold as sealed.
type SealProblem struct {
	Seq      int64           `json:"seq"`
	Kind     SealProblemKind `json:"kind"`
	Position string          `json:"position,omitempty"`
	After    string          `json:"after,omitempty"`
	Streams  []StreamLoss    `json:"streams,omitempty"`
	Detail   string          `json:"detail"`
}

// StreamLoss is a stream that a seal says stood at Sealed while the log
// holds it at Found (0: the stream is gone).
type StreamLoss struct {
	StreamID string `json:"stream"`
	Sealed   int64  `json:"sealed_version"`
	Found    int64  `json:"found_version"`
}

// SealReport is what verification found with the seals.
type SealReport struct {
	// Seals is how many seals were checked against the log; Last is the
	// number of the last one.
	Seals int   `json:"seals"`
	Last  int64 `json:"last"`
	// SignaturesChecked is false when no public key was given.
	SignaturesChecked bool          `json:"signatures_checked"`
	Problems          []SealProblem `json:"problems"`
	// Unsealed events follow UnsealedAfter, the last seal's position.
	Unsealed      int64  `json:"unsealed"`
	UnsealedAfter string `json:"unsealed_after"`
}

// UnsealedNote says how many events no seal covers yet, or "" when every
// event is sealed.
func (r SealReport) UnsealedNote() string {
	if r.Unsealed == 0 {
		return ""
	}
	return fmt.Sprintf("%d events after position %s are not sealed yet", r.Unsealed, r.UnsealedAfter)
}

// sealCheck checks the log against the seals while VerifyAll applies it:
// the running digest and count, compared at each seal's position.
type sealCheck struct {
	seals  []eventstore.Seal // to check against the log, in position order
	at     []eventstore.Cursor
	next   int
	digest eventstore.Digest
	events int64
	good   string // position of the last seal that matched
	rep    SealReport
}

// newSealCheck checks the stored seals and those of the anchors
// (signatures, numbering, agreement) and returns the check of the log
// against the good ones.
func newSealCheck(stored, anchors []eventstore.Seal, keys []ed25519.PublicKey) *sealCheck {
	sc := &sealCheck{rep: SealReport{SignaturesChecked: len(keys) > 0}, good: eventstore.Start.String()}
	bySeq := make(map[int64]eventstore.Seal, len(stored))
	var prev int64
	for _, s := range stored {
		if s.Seq != prev+1 {
			sc.problem(SealProblem{Seq: prev + 1, Kind: SealMissing,
				Detail: fmt.Sprintf("seals %d to %d are missing from the table", prev+1, s.Seq-1)})
		}
		prev = s.Seq
		bySeq[s.Seq] = s
		sc.add(s, keys)
	}
	for _, a := range anchors {
		s, ok := bySeq[a.Seq]
		switch {
		case !ok:
			sc.problem(SealProblem{Seq: a.Seq, Kind: SealMissing, Position: a.Cursor,
				Detail: fmt.Sprintf("seal %d (position %s, %d events) is kept outside the database but missing from the table", a.Seq, a.Cursor, a.Events)})
			bySeq[a.Seq] = a
			sc.add(a, keys)
		case !bytes.Equal(s.Signature, a.Signature):
			sc.problem(SealProblem{Seq: a.Seq, Kind: SealDiffers, Position: a.Cursor,
				Detail: fmt.Sprintf("seal %d kept outside the database (epoch %d, position %s, %d events) differs from the table's (epoch %d, position %s, %d events)",
					a.Seq, a.Epoch, a.Cursor, a.Events, s.Epoch, s.Cursor, s.Events)})
		}
	}
	slices.SortStableFunc(sc.seals, func(a, b eventstore.Seal) int { return int(a.Seq - b.Seq) })
	sc.at = make([]eventstore.Cursor, len(sc.seals))
	for i, s := range sc.seals {
		sc.at[i], _ = s.At() // add kept only seals whose cursor parses
	}
	return sc
}

// add queues s for the check against the log when it verifies.
func (sc *sealCheck) add(s eventstore.Seal, keys []ed25519.PublicKey) {
	if len(keys) > 0 {
		if err := s.Check(keys); err != nil {
			sc.problem(SealProblem{Seq: s.Seq, Kind: SealBad, Position: s.Cursor, Detail: err.Error()})
			return
		}
	}
	if _, err := s.At(); err != nil {
		sc.problem(SealProblem{Seq: s.Seq, Kind: SealBad, Detail: err.Error()})
		return
	}
	sc.seals = append(sc.seals, s)
}

func (sc *sealCheck) problem(p SealProblem) { sc.rep.Problems = append(sc.rep.Problems, p) }

// before is called with each event before it is applied: it checks the
// seals whose position the log has passed.
func (sc *sealCheck) before(e eventstore.Envelope, c *Checker) {
	for sc.next < len(sc.seals) && e.Cursor().Compare(sc.at[sc.next]) > 0 {
		sc.check(c, false)
	}
}

// apply folds e into the digest.
func (sc *sealCheck) apply(e eventstore.Envelope) {
	sc.digest = sc.digest.Next(e.Hash)
	sc.events++
	if sc.next == len(sc.seals) {
		sc.rep.Unsealed++
	}
}

// check compares the log so far with the next seal. After a mismatch it
// continues from the seal's digest, so that each damaged stretch is
// reported on its own.
func (sc *sealCheck) check(c *Checker, pastEnd bool) {
	s := sc.seals[sc.next]
	sc.next++
	sc.rep.Seals++
	sc.rep.Last = s.Seq
	if s.Digest == sc.digest && s.Events == sc.events {
		sc.good = s.Cursor
		return
	}
	p := SealProblem{Seq: s.Seq, Kind: SealLogChanged, Position: s.Cursor, After: sc.good, Streams: losses(s, c),
		Detail: fmt.Sprintf("the log up to position %s does not match seal %d: %d events found, %d sealed; the change lies after position %s",
			s.Cursor, s.Seq, sc.events, s.Events, sc.good)}
	if pastEnd {
		p.Kind = SealLogTruncated
		p.Detail = fmt.Sprintf("seal %d covers position %s, past the end of the log: %d events sealed, %d found; the log's newest events were removed",
			s.Seq, s.Cursor, s.Events, sc.events)
	}
	sc.problem(p)
	sc.digest, sc.events = s.Digest, s.Events
}

// finish checks the seals past the end of the log and returns the report.
// end is the position of the last event.
func (sc *sealCheck) finish(c *Checker, end eventstore.Cursor) SealReport {
	for sc.next < len(sc.seals) {
		sc.check(c, sc.at[sc.next].Compare(end) > 0)
	}
	sc.rep.UnsealedAfter = eventstore.Start.String()
	if n := len(sc.seals); n > 0 {
		sc.rep.UnsealedAfter = sc.seals[n-1].Cursor
	}
	return sc.rep
}

// losses are the streams of s's heads that the log does not hold where s
// says they stood.
func losses(s eventstore.Seal, c *Checker) []StreamLoss {
	var out []StreamLoss
	for _, h := range s.Heads {
		st := c.streams[h.StreamID]
		var found int64
		if st != nil {
			found = st.version
			if found == h.Version && bytes.Equal(st.lastHash, h.Hash) {
				continue
			}
		}
		out = append(out, StreamLoss{StreamID: h.StreamID, Sealed: h.Version, Found: found})
	}
	slices.SortFunc(out, func(a, b StreamLoss) int { return strings.Compare(a.StreamID, b.StreamID) })
	return out
}
