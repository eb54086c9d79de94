//go:build soak

package main

import "time"

// The outage test as issue 26 states it: `go test -tags soak -run
// TestPaymentsOutage ./cmd/onboard/`.
var (
	outageSignups  = 300
	outageDuration = 60 * time.Second
)
