//go:build !soak

package main

import "time"

// The outage test's size in a plain `go test`; outage_soak_test.go has the
// issue's figures (-tags soak): the same checks, a shorter outage and fewer
// signups, at the default resume rate.
var (
	outageSignups  = 80
	outageDuration = 10 * time.Second
)
