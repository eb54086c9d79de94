//go:build !soak

package main

import "time"

// The chaos soak's size in a plain `go test`, as CI runs it; soak_test.go
// has the full one (-tags soak).
var (
	soakCustomers = 300
	// soakSettle bounds each wait for the customers to settle once the
	// faults stop (the other waits get half of it).
	soakSettle = 2 * time.Minute
	// soakChildRoles run in the child process the soak SIGKILLs. Not the
	// worker here: its provider clients keep serve's default retry policy
	// (backoff up to 2 s within a call), which puts the provider calls
	// close to 1.3x the logical ones, too close for a check CI runs on
	// every change; the full soak kills a worker too.
	soakChildRoles = "relay,projector"
)
