// Package httpapi serves the command API, the query API and the operator
// console, with problem+json errors and API-key auth.
//
// It may import handlers, projections, audit, domain and eventstore. Only
// cmd/onboard may import it.
package httpapi
