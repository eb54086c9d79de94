//go:build soak

package main

import "time"

// The full chaos soak: `go test -tags soak -run TestChaosSoak -timeout 2h
// ./cmd/onboard/`. Issue #11 asks for 10,000 customers; ONBOARD_SOAK_N
// still overrides the count.
var (
	soakCustomers = 10000
	// soakSettle bounds each wait for the customers to settle once the
	// faults stop: 10,000 customers take far longer than 300 to drain the
	// durable retries and the operator retries.
	soakSettle = 30 * time.Minute
	// soakChildRoles run in the child process the soak SIGKILLs: a worker
	// too, so that kills land in the middle of provider calls.
	soakChildRoles = "worker,relay,projector"
)
