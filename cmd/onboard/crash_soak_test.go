//go:build soak

package main

import "time"

// The long crash test: `go test -tags soak -run TestPostgresCrash
// -timeout 1h ./cmd/onboard/`.
var (
	crashBatch  = 500
	crashSettle = 15 * time.Minute
)
