// Package sim simulates the five providers of package providers (KYC,
// payments, provisioning, CRM, email) over their real HTTP contracts, for
// tests, `onboard dev`, `onboard sim` and benchmarks. It keeps its state in
// memory, injects latency and failures per provider (configurable at start
// and at run time through an admin endpoint), sends signed KYC webhooks, and
// keeps an effects ledger that counts what actually happened per customer —
// including duplicate effects, which a correct pipeline never causes.
//
// Wiring: s, err := sim.New(cfg); mux.Handle("/sim/", http.StripPrefix("/sim", s));
// defer s.Close(). Clients then use base URLs "<addr>/sim/kyc",
// "<addr>/sim/payments", "<addr>/sim/provisioning", "<addr>/sim/crm" and
// "<addr>/sim/email"; the ledger is at "<addr>/sim/ledger".
//
// # Admin endpoints
//
// The routes under /admin need the admin key (Config.AdminKey), sent as
// "Authorization: Bearer <key>" (or "X-API-Key: <key>"); a request without
// it, or with another key, gets 401. With no key configured they are
// disabled and answer 403.
// `onboard dev` uses its operator key; `onboard sim` takes --admin-key or
// SIM_ADMIN_KEY. The provider endpoints and the ledger need no key.
//
//	GET /admin/config                  the whole configuration
//	PUT /admin/config                  merge into it (see below)
//	GET /admin/config/providers/{name} one provider's configuration
//	PUT /admin/config/providers/{name} replace one provider's configuration
//	GET /admin/stats                   request counters per provider
//	POST /admin/reset                  forget all state, keep the configuration
//
// PUT /admin/config merges: a field the body does not name keeps its value,
// at any depth. {"providers":{"crm":{"transient_rate":0.2}}} changes the CRM
// provider's transient rate and nothing else: the other providers, the rest
// of CRM's configuration, the seed and the KYC callback and secret stay as
// they are. Lists (transient_kinds, script) are replaced as a whole.
//
// PUT /admin/config/providers/{name} replaces that provider's whole
// configuration: fields the body does not name take their defaults, so
// `{}` makes the provider behave perfectly again (no faults, no outage, no
// latency). For example:
//
//	curl -X PUT -H 'Authorization: Bearer KEY' \
//	  -d '{"outage":{"down":true}}' http://127.0.0.1:8090/sim/admin/config/providers/payments
//
// Both answer 200 with the configuration now in force, 400 for a body that
// is not JSON of the configuration's shape, and 422 (nothing changed) for an
// invalid one.
//
// The configuration, as GET /admin/config returns it and PUT /admin/config
// reads it (every field optional; durations are Go duration strings):
//
//	{
//	  "seed": 42,
//	  "providers": {
//	    "payments": {
//	      "latency": {"min": "5ms", "max": "50ms"},
//	      "transient_rate": 0.1, "transient_kinds": ["503", "429", "reset", "timeout"],
//	      "retry_after": "1s",
//	      "permanent_rate": 0.02,
//	      "lost_response_rate": 0.05, "lost_response_mode": "reset",
//	      "outage": {"down": false, "until": "2026-11-25T15:00:00Z"},
//	      "script": ["503", "lost", "ok"]
//	    }
//	  },
//	  "kyc": {
//	    "callback_url": "http://127.0.0.1:8080/v1/webhooks/kyc",
//	    "webhook_secret": "whsec_dev",
//	    "approve": 0.8, "reject": 0.15, "silent": 0.05,
//	    "delay": {"min": "100ms", "max": "2s"},
//	    "duplicate_rate": 0.1, "delivery_attempts": 5
//	  }
//	}
//
// It may import package providers (for the wire names and webhook signing)
// and the standard library; nothing else of this module.
package sim
