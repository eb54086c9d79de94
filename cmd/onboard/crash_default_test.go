//go:build !soak

package main

import "time"

// The crash test's size in a plain `go test`, as CI runs it:
// crash_soak_test.go has the long one (-tags soak).
var (
	// crashBatch is the customers signed up around each of the three
	// crashes.
	crashBatch = 20
	// crashSettle bounds each wait for the customers and consumers to
	// settle after the last crash.
	crashSettle = 2 * time.Minute
)
