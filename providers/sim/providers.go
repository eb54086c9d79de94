package sim

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/onboard/onboard/providers"
)

func (s *Simulator) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /kyc/checks", s.serve(providers.ProviderKYC, true, s.startCheck))
	m.HandleFunc("GET /kyc/checks/{id}", s.serve(providers.ProviderKYC, false, s.getCheck))
	m.HandleFunc("POST /payments/accounts", s.serve(providers.ProviderPayments, true, s.createAccount))
	m.HandleFunc("POST /payments/customers/{id}/close", s.serve(providers.ProviderPayments, true, s.closeAccounts))
	m.HandleFunc("POST /provisioning/tenants", s.serve(providers.ProviderProvisioning, true, s.createTenant))
	m.HandleFunc("DELETE /provisioning/customers/{id}/tenant", s.serve(providers.ProviderProvisioning, true, s.deleteTenant))
	m.HandleFunc("PUT /crm/accounts/{id}", s.serve(providers.ProviderCRM, true, s.upsertCRM))
	m.HandleFunc("DELETE /crm/accounts/{id}", s.serve(providers.ProviderCRM, true, s.deleteCRM))
	m.HandleFunc("POST /email/messages", s.serve(providers.ProviderEmail, true, s.sendEmail))
	m.HandleFunc("PUT /email/suppressions/{id}", s.serve(providers.ProviderEmail, true, s.suppressEmail))
	m.HandleFunc("GET /ledger", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Ledger()) })
	s.adminRoutes(m)
	s.mux = m
}

// The effects below run with s.mu held.

type checkBody struct {
	CustomerID string `json:"customer_id"`
	Email      string `json:"email"`
	Company    string `json:"company"`
	Country    string `json:"country"`
}

type checkView struct {
	ID         string `json:"id"`
	CustomerID string `json:"customer_id"`
	Status     string `json:"status"`
	Reason     string `json:"reason,omitempty"`
}

func (s *Simulator) startCheck(_ *http.Request, body []byte) (int, any) {
	var in checkBody
	if err := json.Unmarshal(body, &in); err != nil || in.CustomerID == "" {
		return invalid("customer_id is required")
	}
	st := s.state
	c := &check{id: st.nextID("chk"), customerID: in.CustomerID, status: string(providers.VerdictPending)}
	st.checks[c.id] = c
	st.customer(in.CustomerID).KYCChecks++

	k := s.cfg.KYC
	u := s.rng.Float64() * (k.Approve + k.Reject + k.Silent)
	delay := s.latency(k.Delay)
	switch {
	case u < k.Approve:
		s.scheduleVerdict(c, providers.VerdictApproved, "", delay)
	case u < k.Approve+k.Reject:
		s.scheduleVerdict(c, providers.VerdictRejected, "document_mismatch", delay)
	default:
		s.webhooks.Silent++
	}
	return http.StatusCreated, checkView{ID: c.id, CustomerID: c.customerID, Status: c.status}
}

func (s *Simulator) getCheck(r *http.Request, _ []byte) (int, any) {
	c, ok := s.state.checks[r.PathValue("id")]
	if !ok {
		return http.StatusNotFound, errorEnvelope{Error: errorDetail{Type: "invalid_request_error", Code: "resource_missing", Message: "no such check"}}
	}
	if !c.verdictAt.IsZero() && !s.cfg.Now().Before(c.verdictAt) {
		// The verdict is visible from its time on, even if the webhook
		// is late or lost: that is what polling is for.
		return http.StatusOK, checkView{ID: c.id, CustomerID: c.customerID, Status: c.status, Reason: c.reason}
	}
	return http.StatusOK, checkView{ID: c.id, CustomerID: c.customerID, Status: string(providers.VerdictPending)}
}

type accountBody struct {
	CustomerID string `json:"customer_id"`
	Company    string `json:"company"`
	Email      string `json:"email"`
	Plan       string `json:"plan"`
}

func (s *Simulator) createAccount(_ *http.Request, body []byte) (int, any) {
	var in accountBody
	if err := json.Unmarshal(body, &in); err != nil || in.CustomerID == "" || in.Plan == "" {
		return invalid("customer_id and plan are required")
	}
	st := s.state
	a := &account{id: st.nextID("acct"), subscriptionID: st.nextID("sub")}
	st.accounts[in.CustomerID] = append(st.accounts[in.CustomerID], a)
	e := st.customer(in.CustomerID)
	e.BillingAccounts++
	e.Subscriptions++
	return http.StatusCreated, map[string]string{"id": a.id, "subscription_id": a.subscriptionID, "customer_id": in.CustomerID, "plan": in.Plan, "status": "active"}
}

func (s *Simulator) closeAccounts(r *http.Request, _ []byte) (int, any) {
	id := r.PathValue("id")
	accs := s.state.accounts[id]
	closed := 0
	for _, a := range accs {
		if !a.closed {
			a.closed = true
			closed++
		}
	}
	if closed > 0 {
		s.state.customer(id).ClosedAccounts += closed
	}
	return http.StatusOK, map[string]any{"customer_id": id, "existed": len(accs) > 0, "closed": closed}
}

type tenantBody struct {
	CustomerID string `json:"customer_id"`
	Company    string `json:"company"`
	Plan       string `json:"plan"`
}

func (s *Simulator) createTenant(_ *http.Request, body []byte) (int, any) {
	var in tenantBody
	if err := json.Unmarshal(body, &in); err != nil || in.CustomerID == "" {
		return invalid("customer_id is required")
	}
	t := &tenant{id: s.state.nextID("ten")}
	s.state.tenants[in.CustomerID] = append(s.state.tenants[in.CustomerID], t)
	s.state.customer(in.CustomerID).Tenants++
	return http.StatusCreated, map[string]string{"id": t.id, "customer_id": in.CustomerID, "status": "ready"}
}

func (s *Simulator) deleteTenant(r *http.Request, _ []byte) (int, any) {
	id := r.PathValue("id")
	ts := s.state.tenants[id]
	deleted := 0
	for _, t := range ts {
		if !t.deleted {
			t.deleted = true
			deleted++
		}
	}
	if deleted > 0 {
		s.state.customer(id).DeletedTenants += deleted
	}
	return http.StatusOK, map[string]any{"customer_id": id, "existed": len(ts) > 0, "deleted": deleted}
}

func (s *Simulator) upsertCRM(r *http.Request, body []byte) (int, any) {
	id := r.PathValue("id")
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil {
		return invalid("a JSON object is required")
	}
	rec, ok := s.state.crm[id]
	if !ok {
		rec = &crmRecord{id: s.state.nextID("crm")}
		s.state.crm[id] = rec
		s.state.customer(id).CRMRecords++
	} else {
		rec.updates++
		s.state.customer(id).CRMUpdates++
	}
	return http.StatusOK, map[string]any{"id": rec.id, "external_id": id, "created": !ok}
}

// deleteCRM deletes a customer's CRM record after its erasure.
func (s *Simulator) deleteCRM(r *http.Request, _ []byte) (int, any) {
	id := r.PathValue("id")
	_, existed := s.state.crm[id]
	if existed {
		delete(s.state.crm, id)
		s.state.customer(id).CRMDeleted++
	}
	return http.StatusOK, map[string]any{"external_id": id, "existed": existed}
}

// suppressEmail forgets a customer's addresses and suppresses them after
// its erasure.
func (s *Simulator) suppressEmail(r *http.Request, _ []byte) (int, any) {
	id := r.PathValue("id")
	_, existed := s.state.emails[id]
	delete(s.state.emails, id)
	s.state.customer(id).EmailSuppressed = true
	return http.StatusOK, map[string]any{"customer_id": id, "existed": existed}
}

type emailBody struct {
	CustomerID string `json:"customer_id"`
	To         string `json:"to"`
	Template   string `json:"template"`
}

func (s *Simulator) sendEmail(_ *http.Request, body []byte) (int, any) {
	var in emailBody
	if err := json.Unmarshal(body, &in); err != nil || in.CustomerID == "" || in.To == "" || in.Template == "" {
		return invalid("customer_id, to and template are required")
	}
	m := email{id: s.state.nextID("msg"), template: in.Template, to: in.To}
	s.state.emails[in.CustomerID] = append(s.state.emails[in.CustomerID], m)
	e := s.state.customer(in.CustomerID)
	e.Emails++
	if e.EmailsByType == nil {
		e.EmailsByType = map[string]int{}
	}
	e.EmailsByType[in.Template]++
	return http.StatusAccepted, map[string]string{"id": m.id, "status": "queued"}
}

// verdictTime is when a verdict scheduled now with delay becomes visible.
func (s *Simulator) verdictTime(delay time.Duration) time.Time { return s.cfg.Now().Add(delay) }
