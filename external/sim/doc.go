// Package sim simulates the five providers of package external (KYC,
// payments, provisioning, CRM, email) over their real HTTP contracts, for
// tests, `onboard dev`, `onboard sim` and benchmarks. It keeps its state in
// memory, injects latency and failures per provider (configurable at start
// and at run time through an admin endpoint), sends signed KYC webhooks, and
// keeps an effects ledger that counts what actually happened per customer —
// including duplicate effects, which a correct pipeline never causes.
//
// It may import package external (for the wire names and webhook signing)
// and the standard library; nothing else of this module.
package sim
