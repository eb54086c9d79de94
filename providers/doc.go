// Package providers holds the clients of the five providers — KYC (KYC),
// payments (Payments), cloud provisioning (Provisioning), CRM (CRM) and
// email (Email) — behind a resilience layer, plus the webhook signing,
// verification and replay guard of the KYC provider. Sub-package sim
// simulates all five over the same HTTP contracts, with failure injection
// and an effects ledger.
//
// Every mutating call carries an idempotency key (IdempotencyKey derives
// it from customer id, step and attempt group), so a retry never causes a
// second effect. Each client wraps every call in, from the outside in:
// in-process retries (cenkalti/backoff/v5, exponential with full jitter,
// Retry-After honoured up to Policy.MaxRetryAfter), a bulkhead (bounded
// concurrent attempts, failing fast by default), a circuit breaker per
// provider (sony/gobreaker/v2, counting transient failures only) and a
// per-attempt timeout. Every failure is an *Error classed transient or
// permanent (errors.Is(err, ErrTransient) / ErrPermanent) and wrapping a
// cause sentinel (ErrTimeout, ErrDeclined, ...). In-process retries stay
// short; long waits are the process managers' durable retries.
//
// The process managers (package process) declare the small interfaces
// they need over this package's request and response types, which the
// concrete clients here satisfy, and classify failures by *Error's class.
//
// The package imports no package of this module; metrics go to a
// caller-provided prometheus.Registerer through NewMetrics.
package providers
