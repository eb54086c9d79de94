// Package commands is the command side: it loads a customer from its
// stream, runs a command of the domain on it and appends what it raised
// with the loaded version as expected version, retrying a concurrency
// conflict on a fresh load. It remembers the histories of recently used
// customers until they reach a terminal state, so that a load reads only
// the events after them. Its commands
// are the signup, the operators' and the process managers' commands
// (Execute), the identity provider's verdict (RecordVerdict) and a data
// subject's erasure (Erase). It is the one place where the personal fields
// of the events it appends are encrypted under the customer's data key
// (personal.go). It also carries the trace context that event metadata
// records.
//
// It may import domain and eventstore only.
package commands
