// Package httpapi serves the command API, the query API and the operator
// console, with problem+json errors and API-key auth.
//
// It may import commands, projections, providers (to verify the KYC
// provider's webhooks), domain and eventstore. Only cmd/onboard may import
// it.
package httpapi
