package domain

// Command names what is asked of a customer. Every command method of
// Customer checks its edge in the transition table before raising events.
type Command string

// The commands of the journey.
const (
	CmdSignUp              Command = "sign_up"
	CmdRequestStep         Command = "request_step"
	CmdStartCheck          Command = "record_check_started"
	CmdRecordStepSucceeded Command = "record_step_succeeded"
	CmdRecordStepFailed    Command = "record_step_failed"
	CmdRejectVerification  Command = "reject_verification"
	CmdNotifySupport       Command = "notify_support"
	CmdPause               Command = "pause"
	CmdRetryStep           Command = "retry_step"
	CmdSkipStep            Command = "skip_step"
	CmdCancel              Command = "cancel"
	CmdRecordCompensation  Command = "record_compensation"
	CmdIgnoreResult        Command = "record_ignored_result"
)

// Commands lists every command.
func Commands() []Command {
	return []Command{
		CmdSignUp, CmdRequestStep, CmdStartCheck, CmdRecordStepSucceeded, CmdRecordStepFailed,
		CmdRejectVerification, CmdNotifySupport, CmdPause, CmdRetryStep, CmdSkipStep, CmdCancel,
		CmdRecordCompensation, CmdIgnoreResult,
	}
}

// noState is where a customer is before signing up: the only From of the
// sign_up edge, and never the state of an existing customer.
const noState State = ""

// Transition is one edge of the state machine: in state From, Command may
// move the customer to To. A command may have several edges from one state
// (a success that completes the journey, a cancel with or without
// compensation); the command method picks one by the aggregate's data.
type Transition struct {
	From    State
	Command Command
	To      State
}

// transitions is THE transition table. No command may change a customer's
// state along an edge that is not listed here.
var transitions = []Transition{
	{noState, CmdSignUp, StatePending},

	{StatePending, CmdRequestStep, StateVerifying},
	{StateVerifying, CmdRequestStep, StateVerifying},
	{StateVerified, CmdRequestStep, StateProvisioning},
	{StateProvisioning, CmdRequestStep, StateProvisioning},

	{StateVerifying, CmdStartCheck, StateVerifying},

	{StateVerifying, CmdRecordStepSucceeded, StateVerified},
	{StateProvisioning, CmdRecordStepSucceeded, StateProvisioning},
	{StateProvisioning, CmdRecordStepSucceeded, StateActive},
	{StateCancelling, CmdRecordStepSucceeded, StateCancelling},
	{StateCancelling, CmdRecordStepSucceeded, StateCancelled},

	{StateVerifying, CmdRecordStepFailed, StateVerifying},
	{StateProvisioning, CmdRecordStepFailed, StateProvisioning},
	{StateCancelling, CmdRecordStepFailed, StateCancelling},
	{StateCancelling, CmdRecordStepFailed, StateCancelled},

	{StateVerifying, CmdRejectVerification, StateRejected},
	{StateRejected, CmdNotifySupport, StateRejected},

	{StateVerifying, CmdPause, StatePaused},
	{StateProvisioning, CmdPause, StatePaused},

	{StatePaused, CmdRetryStep, StateVerifying},
	{StatePaused, CmdRetryStep, StateProvisioning},

	{StatePaused, CmdSkipStep, StateProvisioning},
	{StatePaused, CmdSkipStep, StateActive},

	{StatePending, CmdCancel, StateCancelled},
	{StateVerifying, CmdCancel, StateCancelled},
	{StateVerified, CmdCancel, StateCancelled},
	{StateProvisioning, CmdCancel, StateCancelling},
	{StatePaused, CmdCancel, StateCancelling},
	{StatePaused, CmdCancel, StateCancelled},

	{StateCancelling, CmdRecordCompensation, StateCancelling},
	{StateCancelling, CmdRecordCompensation, StateCancelled},

	// A late or duplicate result is written down in every state, and changes
	// nothing.
	{StatePending, CmdIgnoreResult, StatePending},
	{StateVerifying, CmdIgnoreResult, StateVerifying},
	{StateVerified, CmdIgnoreResult, StateVerified},
	{StateProvisioning, CmdIgnoreResult, StateProvisioning},
	{StateActive, CmdIgnoreResult, StateActive},
	{StateRejected, CmdIgnoreResult, StateRejected},
	{StatePaused, CmdIgnoreResult, StatePaused},
	{StateCancelling, CmdIgnoreResult, StateCancelling},
	{StateCancelled, CmdIgnoreResult, StateCancelled},
}

// Transitions returns a copy of the transition table.
func Transitions() []Transition {
	return append([]Transition(nil), transitions...)
}

// Allowed reports whether cmd has any edge out of state s.
func Allowed(s State, cmd Command) bool {
	for _, t := range transitions {
		if t.From == s && t.Command == cmd {
			return true
		}
	}
	return false
}

// AllowedCommands lists the commands with an edge out of s, in table order.
func AllowedCommands(s State) []Command {
	var out []Command
	for _, c := range Commands() {
		if Allowed(s, c) {
			out = append(out, c)
		}
	}
	return out
}

func hasEdge(from State, cmd Command, to State) bool {
	for _, t := range transitions {
		if t == (Transition{from, cmd, to}) {
			return true
		}
	}
	return false
}

// leaderCommands maps the type of each event that starts a command's
// events to that command. Events that only follow another in the same
// command (Cancelled, OnboardingCompleted) are absent.
var leaderCommands = map[string]Command{
	TypeSignedUp:                 CmdSignUp,
	TypeStepRequested:            CmdRequestStep,
	TypeVerificationCheckStarted: CmdStartCheck,
	TypeStepSucceeded:            CmdRecordStepSucceeded,
	TypeStepFailed:               CmdRecordStepFailed,
	TypeVerificationRejected:     CmdRejectVerification,
	TypeSupportNotified:          CmdNotifySupport,
	TypePaused:                   CmdPause,
	TypeStepRetryRequested:       CmdRetryStep,
	TypeStepSkipped:              CmdSkipStep,
	TypeCancellationRequested:    CmdCancel,
	TypeBillingClosed:            CmdRecordCompensation,
	TypeTenantDeprovisioned:      CmdRecordCompensation,
	TypeResultIgnored:            CmdIgnoreResult,
}

// CommandOf names the command whose first event is e. Events that only
// follow another in the same command (Cancelled, OnboardingCompleted) have
// no command of their own: CommandOf returns "".
func CommandOf(e Event) Command { return leaderCommands[e.EventType()] }

// CommandOfType is CommandOf by event type name, for readers of stored
// events that have not decoded them.
func CommandOfType(eventType string) Command { return leaderCommands[eventType] }
