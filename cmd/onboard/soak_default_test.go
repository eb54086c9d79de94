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
	// soakChildRoles run in the child process the soak SIGKILLs: a worker
	// too, so that kills land in the middle of provider calls.
	soakChildRoles = "worker,relay,projector"
)
