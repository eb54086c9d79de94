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
	CmdBlock               Command = "block"
	CmdUnblock             Command = "unblock"
	CmdErasePersonalData   Command = "erase_personal_data"
	CmdRecordProviderErase Command = "record_provider_erasure"
)

// Commands lists every command.
func Commands() []Command {
	return []Command{
		CmdSignUp, CmdRequestStep, CmdStartCheck, CmdRecordStepSucceeded, CmdRecordStepFailed,
		CmdRejectVerification, CmdNotifySupport, CmdPause, CmdRetryStep, CmdSkipStep, CmdCancel,
		CmdRecordCompensation, CmdIgnoreResult, CmdBlock, CmdUnblock,
		CmdRecordCompensation, CmdIgnoreResult, CmdErasePersonalData, CmdRecordProviderErase,
	}
}

// noState is where a customer is before signing up: the only From of the
// sign_up edge, and never the state of an existing customer.
const noState State = ""

// Condition picks one of the edges that leave a state by the same command:
// which one a customer takes depends on the step the command is about, or
// on whether effects are left to undo, never on anything else. The
// conditions come in pairs that exclude each other; always holds alone.
type Condition string

// The conditions of the transition table.
const (
	always           Condition = ""
	StepsRemain      Condition = "steps remain"      // the step is not the last one
	LastStep         Condition = "last step"         // the step is the last one
	AtVerification   Condition = "at verification"   // the step is verification
	PastVerification Condition = "past verification" // the step comes after verification
	EffectsToUndo    Condition = "effects to undo"   // an effect is left to compensate, or still in flight
	NothingToUndo    Condition = "nothing to undo"
)

// facts are what a condition is decided by: the step a command (or its
// event) is about, and whether effects are left to undo once it is
// recorded.
type facts struct {
	step Step
	undo bool
}

func (c Condition) holds(f facts) bool {
	_, more := f.step.Next()
	switch c {
	case always:
		return true
	case StepsRemain:
		return more
	case LastStep:
		return !more
	case AtVerification:
		return f.step == StepVerification
	case PastVerification:
		return f.step != StepVerification
	case EffectsToUndo:
		return f.undo
	case NothingToUndo:
		return !f.undo
	}
	return false
}

// Transition is one edge of the state machine: in state From, Command
// moves the customer to To when the condition When holds. Where a command
// has two edges out of one state, their conditions exclude each other.
type Transition struct {
	From    State
	Command Command
	To      State
	When    Condition
}

// transitions is THE transition table: every command method takes its
// target state from it, and every applier (through NextState). No state
// changes along an edge that is not listed here.
var transitions = []Transition{
	{noState, CmdSignUp, StatePending, always},

	{StatePending, CmdRequestStep, StateVerifying, always},
	{StateVerifying, CmdRequestStep, StateVerifying, always},
	{StateVerified, CmdRequestStep, StateProvisioning, always},
	{StateProvisioning, CmdRequestStep, StateProvisioning, always},

	{StateVerifying, CmdStartCheck, StateVerifying, always},

	{StateVerifying, CmdRecordStepSucceeded, StateVerified, always},
	{StateProvisioning, CmdRecordStepSucceeded, StateProvisioning, StepsRemain},
	{StateProvisioning, CmdRecordStepSucceeded, StateActive, LastStep},
	{StateCancelling, CmdRecordStepSucceeded, StateCancelling, EffectsToUndo},
	{StateCancelling, CmdRecordStepSucceeded, StateCancelled, NothingToUndo},

	{StateVerifying, CmdRecordStepFailed, StateVerifying, always},
	{StateProvisioning, CmdRecordStepFailed, StateProvisioning, always},
	{StateCancelling, CmdRecordStepFailed, StateCancelling, EffectsToUndo},
	{StateCancelling, CmdRecordStepFailed, StateCancelled, NothingToUndo},

	// A customer whose step's provider is down waits where it is.
	{StateVerifying, CmdBlock, StateVerifying, always},
	{StateProvisioning, CmdBlock, StateProvisioning, always},
	{StateVerifying, CmdUnblock, StateVerifying, always},
	{StateProvisioning, CmdUnblock, StateProvisioning, always},

	{StateVerifying, CmdRejectVerification, StateRejected, always},
	{StateRejected, CmdNotifySupport, StateRejected, always},

	{StateVerifying, CmdPause, StatePaused, always},
	{StateProvisioning, CmdPause, StatePaused, always},

	{StatePaused, CmdRetryStep, StateVerifying, AtVerification},
	{StatePaused, CmdRetryStep, StateProvisioning, PastVerification},

	{StatePaused, CmdSkipStep, StateProvisioning, StepsRemain},
	{StatePaused, CmdSkipStep, StateActive, LastStep},

	// Billing is requested on entering provisioning, so a cancel from
	// there always has an effect to undo.
	{StatePending, CmdCancel, StateCancelled, always},
	{StateVerifying, CmdCancel, StateCancelled, always},
	{StateVerified, CmdCancel, StateCancelled, always},
	{StateProvisioning, CmdCancel, StateCancelling, always},
	{StatePaused, CmdCancel, StateCancelling, EffectsToUndo},
	{StatePaused, CmdCancel, StateCancelled, NothingToUndo},

	{StateCancelling, CmdRecordCompensation, StateCancelling, EffectsToUndo},
	{StateCancelling, CmdRecordCompensation, StateCancelled, NothingToUndo},

	// A late or duplicate result is written down in every state, and changes
	// nothing.
	{StatePending, CmdIgnoreResult, StatePending, always},
	{StateVerifying, CmdIgnoreResult, StateVerifying, always},
	{StateVerified, CmdIgnoreResult, StateVerified, always},
	{StateProvisioning, CmdIgnoreResult, StateProvisioning, always},
	{StateActive, CmdIgnoreResult, StateActive, always},
	{StateRejected, CmdIgnoreResult, StateRejected, always},
	{StatePaused, CmdIgnoreResult, StatePaused, always},
	{StateCancelling, CmdIgnoreResult, StateCancelling, always},
	{StateCancelled, CmdIgnoreResult, StateCancelled, always},

	// Erasure changes no state. A customer still onboarding is cancelled
	// first (commands.Erase), so it is erased only once its journey ends or
	// is being undone; the providers' deletions are recorded after it.
	{StateActive, CmdErasePersonalData, StateActive, always},
	{StateRejected, CmdErasePersonalData, StateRejected, always},
	{StateCancelling, CmdErasePersonalData, StateCancelling, always},
	{StateCancelled, CmdErasePersonalData, StateCancelled, always},
	{StateActive, CmdRecordProviderErase, StateActive, always},
	{StateRejected, CmdRecordProviderErase, StateRejected, always},
	{StateCancelling, CmdRecordProviderErase, StateCancelling, always},
	{StateCancelled, CmdRecordProviderErase, StateCancelled, always},
}

// Transitions returns a copy of the transition table.
func Transitions() []Transition {
	return append([]Transition(nil), transitions...)
}

type edgeKey struct {
	from State
	cmd  Command
}

// edges indexes the table by state and command, in table order.
var edges = func() map[edgeKey][]Transition {
	m := map[edgeKey][]Transition{}
	for _, t := range transitions {
		k := edgeKey{t.From, t.Command}
		m[k] = append(m[k], t)
	}
	return m
}()

// Allowed reports whether cmd has any edge out of state s.
func Allowed(s State, cmd Command) bool {
	return len(edges[edgeKey{s, cmd}]) > 0
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

// target is the state cmd takes a customer in s to, by the edge whose
// condition f meets; ok is false when the table has none.
func target(s State, cmd Command, f facts) (to State, ok bool) {
	for _, t := range edges[edgeKey{s, cmd}] {
		if t.When.holds(f) {
			return t.To, true
		}
	}
	return "", false
}

// endsJourney reports whether s is entered only by the event that concludes
// the journey (OnboardingCompleted into active, Cancelled into cancelled).
// A command whose edge leads there raises its own event, which leaves the
// state as it is, and then the concluding event.
func endsJourney(s State) bool { return s == StateActive || s == StateCancelled }

// NextState is the state a customer in s is in once e is applied. It is
// the only place that moves a customer's state: the appliers, the read
// models and audit verification all take it from here. A command's event
// takes its edge out of s in the table, under the condition its data
// decides, except into a state that only a concluding event enters. An
// event the table does not allow in s leaves s as it is: history is what
// happened, and audit verification reports the edge.
func NextState(s State, e Event) State {
	switch e.(type) {
	case OnboardingCompleted:
		return StateActive
	case Cancelled:
		return StateCancelled
	}
	to, ok := target(s, CommandOf(e), factsOf(e))
	if !ok || endsJourney(to) {
		return s
	}
	return to
}

// factsOf is what e says about the condition of its edge. An event
// recorded in cancelling does not say whether effects are left to undo;
// it need not, since its edge then leads either to cancelling or, by the
// Cancelled that follows it, to cancelled.
func factsOf(e Event) facts {
	switch e := e.(type) {
	case StepRequested:
		return facts{step: e.Step}
	case StepSucceeded:
		return facts{step: e.Step}
	case StepFailed:
		return facts{step: e.Step}
	case Paused:
		return facts{step: e.Step}
	case StepRetryRequested:
		return facts{step: e.Step}
	case StepSkipped:
		return facts{step: e.Step}
	case ResultIgnored:
		return facts{step: e.Step}
	case Blocked:
		return facts{step: e.Step}
	case Unblocked:
		return facts{step: e.Step}
	case CancellationRequested:
		return facts{undo: len(e.Compensate) > 0}
	}
	return facts{}
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
	TypeBlocked:                  CmdBlock,
	TypeUnblocked:                CmdUnblock,
	TypePersonalDataErased:       CmdErasePersonalData,
	TypeProviderDataDeleted:      CmdRecordProviderErase,
}

// CommandOf names the command whose first event is e. Events that only
// follow another in the same command (Cancelled, OnboardingCompleted) have
// no command of their own: CommandOf returns "".
func CommandOf(e Event) Command { return leaderCommands[e.EventType()] }

// CommandOfType is CommandOf by event type name, for readers of stored
// events that have not decoded them.
func CommandOfType(eventType string) Command { return leaderCommands[eventType] }
