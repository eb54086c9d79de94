// Package handlers holds the command handlers (load, decide, append) and the
// process managers that react to events, call external services and issue
// commands back to the Customer aggregate. It declares the small interfaces
// it needs from providers and stores.
//
// It may import domain and eventstore; never httpapi, messaging or cmd.
package handlers
