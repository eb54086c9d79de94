// Package audit is the replay engine behind `onboard replay`: the state of a
// customer at a time or version, integrity verification of the hash chains,
// exports and projection rebuilds.
//
// It may import projections, domain and eventstore; never httpapi or
// messaging.
package audit
