package sim

import (
	"fmt"
	"maps"
	"time"
)

// state is everything the providers remember; guarded by Simulator.mu.
type state struct {
	seq       map[string]int // id counters per prefix, for reproducible ids
	idem      map[string]*idemRecord
	prevented map[string]int // duplicate effects prevented, per provider
	checks    map[string]*check
	accounts  map[string][]*account // by customer id
	tenants   map[string][]*tenant  // by customer id
	crm       map[string]*crmRecord // by external id
	emails    map[string][]email    // by customer id
	effects   map[string]*CustomerEffects
}

type check struct {
	id, customerID string
	status, reason string
	verdictAt      time.Time
}

type account struct {
	id, subscriptionID string
	closed             bool
}

type tenant struct {
	id      string
	deleted bool
}

type crmRecord struct {
	id      string
	updates int
}

type email struct {
	id, template, to string
}

func newState() *state {
	return &state{
		seq:       map[string]int{},
		idem:      map[string]*idemRecord{},
		prevented: map[string]int{},
		checks:    map[string]*check{},
		accounts:  map[string][]*account{},
		tenants:   map[string][]*tenant{},
		crm:       map[string]*crmRecord{},
		emails:    map[string][]email{},
		effects:   map[string]*CustomerEffects{},
	}
}

func (st *state) nextID(prefix string) string {
	st.seq[prefix]++
	return fmt.Sprintf("%s_%06d", prefix, st.seq[prefix])
}

func (st *state) customer(id string) *CustomerEffects {
	e, ok := st.effects[id]
	if !ok {
		e = &CustomerEffects{}
		st.effects[id] = e
	}
	return e
}

// CustomerEffects counts the effects that exist for one customer (or, in
// Ledger.Totals, for all).
type CustomerEffects struct {
	KYCChecks       int            `json:"kyc_checks"`
	BillingAccounts int            `json:"billing_accounts"`
	Subscriptions   int            `json:"subscriptions"`
	ClosedAccounts  int            `json:"closed_accounts"`
	Tenants         int            `json:"tenants"`
	DeletedTenants  int            `json:"deleted_tenants"`
	CRMRecords      int            `json:"crm_records"`
	CRMUpdates      int            `json:"crm_updates"`
	Emails          int            `json:"emails"`
	EmailsByType    map[string]int `json:"emails_by_template,omitempty"`
	// CRMDeleted and EmailSuppressed record what an erasure asked of
	// the CRM and the email provider.
	CRMDeleted      int  `json:"crm_deleted,omitempty"`
	EmailSuppressed bool `json:"email_suppressed,omitempty"`
	// Duplicates counts the effects beyond the first of each kind
	// (billing accounts, subscriptions, tenants, CRM records, emails of one
	// template): what a pipeline that double-charges or double-provisions
	// leaves behind. KYC checks are not counted: an operator may rightly
	// start a second one.
	Duplicates int `json:"duplicates"`
}

func (e *CustomerEffects) add(o CustomerEffects) {
	e.KYCChecks += o.KYCChecks
	e.BillingAccounts += o.BillingAccounts
	e.Subscriptions += o.Subscriptions
	e.ClosedAccounts += o.ClosedAccounts
	e.Tenants += o.Tenants
	e.DeletedTenants += o.DeletedTenants
	e.CRMRecords += o.CRMRecords
	e.CRMUpdates += o.CRMUpdates
	e.CRMDeleted += o.CRMDeleted
	e.EmailSuppressed = e.EmailSuppressed || o.EmailSuppressed
	e.Emails += o.Emails
	e.Duplicates += o.Duplicates
	for k, v := range o.EmailsByType {
		if e.EmailsByType == nil {
			e.EmailsByType = map[string]int{}
		}
		e.EmailsByType[k] += v
	}
}

func (e CustomerEffects) duplicates() int {
	n := 0
	for _, c := range []int{e.BillingAccounts, e.Subscriptions, e.Tenants, e.CRMRecords} {
		n += max(0, c-1)
	}
	for _, c := range e.EmailsByType {
		n += max(0, c-1)
	}
	return n
}

// Ledger is the effects ledger: what actually exists at the providers.
type Ledger struct {
	Customers map[string]CustomerEffects `json:"customers"`
	Totals    CustomerEffects            `json:"totals"`
	// DuplicateEffects sums Customers[*].Duplicates; the reliability
	// suite asserts it is zero.
	DuplicateEffects int `json:"duplicate_effects"`
	// DuplicatesPrevented counts the requests answered from an idempotency
	// record instead of taking effect again, in total and per provider.
	DuplicatesPrevented           int            `json:"duplicates_prevented"`
	DuplicatesPreventedByProvider map[string]int `json:"duplicates_prevented_by_provider"`
	Webhooks                      WebhookCounts  `json:"webhooks"`
}

// WebhookCounts counts the KYC webhooks.
type WebhookCounts struct {
	Scheduled  int `json:"scheduled"`  // verdicts that will be sent
	Silent     int `json:"silent"`     // checks that will never be answered
	Delivered  int `json:"delivered"`  // deliveries answered 2xx (duplicates included)
	Duplicated int `json:"duplicated"` // events delivered a second time on purpose
	Failed     int `json:"failed"`     // webhooks given up after every attempt
}

// Ledger returns the effects ledger.
func (s *Simulator) Ledger() Ledger {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := Ledger{
		Customers:                     make(map[string]CustomerEffects, len(s.state.effects)),
		DuplicatesPreventedByProvider: maps.Clone(s.state.prevented),
		Webhooks:                      s.webhooks,
	}
	for id, e := range s.state.effects {
		c := *e
		c.EmailsByType = maps.Clone(e.EmailsByType)
		c.Duplicates = c.duplicates()
		l.Customers[id] = c
		l.Totals.add(c)
		l.DuplicateEffects += c.Duplicates
	}
	for _, n := range s.state.prevented {
		l.DuplicatesPrevented += n
	}
	return l
}
