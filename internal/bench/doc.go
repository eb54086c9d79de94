// Package bench is the engine behind `onboard bench`: it measures each of
// the pipeline's throughput figures side by side with its ceiling (the same
// work done raw, on the same machine, in the same run) and renders the
// results as a table or JSON.
//
// It measures what it can reach from here (appends, reads, projection
// rebuilds, verification); figures that need NATS or the whole pipeline are
// Figures injected by cmd/onboard, the only package that may import
// messaging and httpapi. It may import any other package of the module.
package bench
