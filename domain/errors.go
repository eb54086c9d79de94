package domain

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinels that callers branch on; each is wrapped in a CommandError that
// names the state and the command.
var (
	// ErrInvalidTransition: the transition table has no edge for the command
	// in the customer's current state, or the command's arguments do not fit
	// it (another step than the current one, a step that cannot be skipped).
	ErrInvalidTransition = errors.New("invalid transition")
	// ErrStaleResult: a step result that matches no attempt in flight, such
	// as a duplicate delivery or a verdict for an older check.
	ErrStaleResult = errors.New("stale step result")
	// ErrDuplicateCommand: the command's effect has already been recorded
	// (the step is already in flight, support already notified).
	ErrDuplicateCommand = errors.New("duplicate command")
	// ErrValidation: the command's input is malformed; see ValidationError.
	ErrValidation = errors.New("validation failed")
)

// CommandError is the typed error of a rejected command. Kind is one of the
// sentinels above, so errors.Is(err, ErrInvalidTransition) works.
type CommandError struct {
	Command Command
	State   State
	Detail  string
	Kind    error
}

func (e *CommandError) Error() string {
	state := string(e.State)
	if state == "" {
		state = "(none)"
	}
	msg := fmt.Sprintf("cannot %s in state %s", e.Command, state)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap returns the sentinel kind.
func (e *CommandError) Unwrap() error { return e.Kind }

// FieldError is one invalid input field. Pointer is an RFC 6901 JSON
// pointer into the command's JSON body ("/email"), so the HTTP edge can
// answer with a field-level problem.
type FieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// ValidationError lists every invalid field of a command.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Pointer + ": " + f.Detail
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Unwrap returns ErrValidation.
func (e *ValidationError) Unwrap() error { return ErrValidation }

type fieldErrors []FieldError

func (f *fieldErrors) add(pointer, format string, args ...any) {
	*f = append(*f, FieldError{Pointer: pointer, Detail: fmt.Sprintf(format, args...)})
}

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return &ValidationError{Fields: f}
}
