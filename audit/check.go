package audit

import (
	"fmt"

	"github.com/onboard/onboard/domain"
)

// A command appends its events in one go: a first event that names what
// was decided (the leader), sometimes followed by an event that concludes
// the journey (a follower). The leader's type says which command ran;
// checking a recorded history against the transition table means checking
// the edge (state before the leader, command, state after the last
// follower) for each such group.

// followerOf lists, for each follower event, the commands whose group it
// may conclude.
var followerOf = map[string][]domain.Command{
	domain.TypeOnboardingCompleted: {domain.CmdRecordStepSucceeded, domain.CmdSkipStep},
	domain.TypeCancelled: {
		domain.CmdCancel, domain.CmdRecordStepSucceeded, domain.CmdRecordStepFailed, domain.CmdRecordCompensation,
	},
}

// edges is the transition table as a set of (from, command, to), without
// the conditions: a recorded group shows where it went, not why.
type edges map[domain.Transition]bool

func newEdges() edges {
	set := edges{}
	for _, t := range domain.Transitions() {
		set[domain.Transition{From: t.From, Command: t.Command, To: t.To}] = true
	}
	return set
}

// machine checks one stream's events, in version order, against the
// transition table. Its memory is constant: the state and the open group.
type machine struct {
	state domain.State
	// The open group: the command its leader names, the state before the
	// leader, the leader's version and type, and the transaction that
	// appended it (0 when unknown, as for recorded histories).
	open       bool
	cmd        domain.Command
	from       domain.State
	leaderVer  int64
	leaderType string
	leaderTx   uint64
}

// transitionError is what the machine finds wrong, at a version.
type transitionError struct {
	version int64
	detail  string
}

// next feeds the event at version, appended by transaction tx, to the
// machine. It returns a problem when the event ends a group whose edge is
// not in the table, or cannot belong where it is.
func (m *machine) next(set edges, version int64, tx uint64, e domain.Event) *transitionError {
	typ := e.EventType()
	if allowed, ok := followerOf[typ]; ok {
		if !m.open || !containsCmd(allowed, m.cmd) {
			what := "nothing"
			if m.open {
				what = fmt.Sprintf("%s (%s)", m.leaderType, m.cmd)
			}
			return &transitionError{version, fmt.Sprintf("%s cannot follow %s", typ, what)}
		}
		if tx != 0 && m.leaderTx != 0 && tx != m.leaderTx {
			return &transitionError{version, fmt.Sprintf("%s was appended apart from the %s at version %d that it concludes", typ, m.leaderType, m.leaderVer)}
		}
		m.state = domain.NextState(m.state, e)
		return nil
	}
	cmd := domain.CommandOfType(typ)
	if cmd == "" {
		return &transitionError{version, fmt.Sprintf("event type %s is raised by no command", typ)}
	}
	if err := m.close(set); err != nil {
		return err
	}
	m.open, m.cmd, m.from, m.leaderVer, m.leaderType, m.leaderTx = true, cmd, m.state, version, typ, tx
	m.state = domain.NextState(m.state, e)
	return nil
}

// close checks the open group's edge; call it at the end of the stream.
func (m *machine) close(set edges) *transitionError {
	if !m.open {
		return nil
	}
	m.open = false
	if set[domain.Transition{From: m.from, Command: m.cmd, To: m.state}] {
		return nil
	}
	return &transitionError{m.leaderVer, fmt.Sprintf("%s (%s) from %s to %s is not in the transition table",
		m.leaderType, m.cmd, stateName(m.from), stateName(m.state))}
}

// stateName names s, and the no-state of a customer not yet signed up.
func stateName(s domain.State) string {
	if s == "" {
		return "(new)"
	}
	return string(s)
}

func containsCmd(cmds []domain.Command, c domain.Command) bool {
	for _, x := range cmds {
		if x == c {
			return true
		}
	}
	return false
}

// CheckHistory runs a recorded history (events oldest first, version 1
// first) through today's transition table. It returns nil when every
// recorded transition is still valid, or a *Problem naming the first
// version that is not.
func CheckHistory(streamID string, history []domain.Event) error {
	set := newEdges()
	var m machine
	for i, e := range history {
		if err := m.next(set, int64(i+1), 0, e); err != nil {
			return &Problem{StreamID: streamID, Version: err.version, Kind: ProblemTransition, Detail: err.detail}
		}
	}
	if err := m.close(set); err != nil {
		return &Problem{StreamID: streamID, Version: err.version, Kind: ProblemTransition, Detail: err.detail}
	}
	return nil
}
