// Package process holds the process managers: they react to customer
// events, call the providers and issue commands back to the Customer
// aggregate, retrying transient failures with durable timers (Timers keeps
// them in Postgres), pausing for an operator on permanent ones, and
// compensating after a cancel, and asking the providers that hold an
// erased customer's personal data to delete it (personal.go). Run feeds them the event store's global log
// where no NATS runs; RouteOf, the routing rule, names the one manager an
// event goes to. They declare the small interfaces they need of the
// providers and the timers.
//
// It may import commands, providers, domain and eventstore; never httpapi,
// messaging or cmd.
package process
