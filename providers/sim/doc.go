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
// The configuration, as GET/PUT /admin/config reads and writes it (every
// field optional; durations are Go duration strings):
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
