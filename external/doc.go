// Package external holds the clients of the providers (KYC, payments,
// provisioning, CRM, email) behind a resilience layer, and a simulator of all
// of them with failure injection and an effects ledger.
//
// It may import handlers, domain and eventstore; never httpapi or messaging.
package external
