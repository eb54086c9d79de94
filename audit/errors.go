package audit

import (
	"errors"
	"fmt"
)

// Sentinels that callers (the CLI) branch on.
var (
	// ErrCustomerNotFound: the store holds no stream for the customer.
	ErrCustomerNotFound = errors.New("customer not found")
	// ErrNoSuchPoint: the customer did not exist yet at the requested time,
	// or has no event at the requested version.
	ErrNoSuchPoint = errors.New("no such point in the customer's history")
	// ErrVerifyFailed: verification found at least one problem; the
	// *VerifyFailedError lists them.
	ErrVerifyFailed = errors.New("verification failed")
	// ErrBadFormat: an export format other than jsonl or csv.
	ErrBadFormat = errors.New("unknown export format")
)

// ProblemKind classifies what verification found wrong with an event.
type ProblemKind string

// The kinds of problems.
const (
	// ProblemVersionGap: a version is missing (a deleted event) or out of
	// order.
	ProblemVersionGap ProblemKind = "version_gap"
	// ProblemHashChain: the event's previous hash does not link to the
	// event before it.
	ProblemHashChain ProblemKind = "hash_chain"
	// ProblemContent: the event's content does not match its hash (it was
	// altered after it was written).
	ProblemContent ProblemKind = "content"
	// ProblemDecode: the event's type or data is not one today's code can
	// read (no decoder or upcaster).
	ProblemDecode ProblemKind = "decode"
	// ProblemTransition: the recorded transition is not an edge of today's
	// transition table.
	ProblemTransition ProblemKind = "transition"
)

// Problem is one thing verification found wrong: the first wrong event of a
// stream. Later events of that stream are not checked further, because
// every check after a broken link would only repeat it.
type Problem struct {
	StreamID string      `json:"stream_id"`
	Version  int64       `json:"version"`
	Kind     ProblemKind `json:"kind"`
	Detail   string      `json:"detail"`
}

func (p *Problem) Error() string {
	return fmt.Sprintf("stream %s version %d: %s: %s", p.StreamID, p.Version, p.Kind, p.Detail)
}

// Unwrap returns ErrVerifyFailed.
func (p *Problem) Unwrap() error { return ErrVerifyFailed }

// VerifyFailedError is returned when verification found problems. It wraps
// ErrVerifyFailed.
type VerifyFailedError struct {
	// Problems is how many streams failed; Report.Problems holds the
	// first of them.
	Problems int
	Streams  int
	// SealProblems is how many problems the seals show (Report.Seals).
	SealProblems int
}

func (e *VerifyFailedError) Error() string {
	if e.SealProblems == 0 {
		return fmt.Sprintf("%d of %d streams failed verification", e.Problems, e.Streams)
	}
	return fmt.Sprintf("%d of %d streams failed verification; the seals show %d problems", e.Problems, e.Streams, e.SealProblems)
}

// Unwrap returns ErrVerifyFailed.
func (e *VerifyFailedError) Unwrap() error { return ErrVerifyFailed }

// PointError says why a replay point does not exist. It wraps
// ErrNoSuchPoint.
type PointError struct {
	CustomerID string
	Detail     string
}

func (e *PointError) Error() string {
	return fmt.Sprintf("customer %s: %s", e.CustomerID, e.Detail)
}

// Unwrap returns ErrNoSuchPoint.
func (e *PointError) Unwrap() error { return ErrNoSuchPoint }
