package projections

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// Customer is one row of the customer summary: what the query API shows of
// a customer without replaying its stream.
type Customer struct {
	ID          uuid.UUID `json:"id"`
	Email       string    `json:"email"`
	Company     string    `json:"company"`
	ContactName string    `json:"contact_name"`
	Country     string    `json:"country"`
	Plan        string    `json:"plan"`
	State       string    `json:"state"`
	// Step is the step being worked on, or the next to start.
	Step string `json:"step"`
	// Attempts is the last attempt number of Step in its current attempt
	// group (an operator retry starts a new group at 0).
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
	// PausedStep, PauseReason and PausedAt are set while the customer is
	// paused.
	PausedStep  string     `json:"paused_step,omitempty"`
	PauseReason string     `json:"pause_reason,omitempty"`
	PausedAt    *time.Time `json:"paused_at,omitempty"`
	// CreatedAt, UpdatedAt and ActivatedAt are the store's recording times
	// of the first, the last and the onboarding_completed event.
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	ActivatedAt *time.Time `json:"activated_at,omitempty"`
	// Version is the stream version of the last applied event.
	Version int64 `json:"version"`
	// Position is the global position of the last applied event.
	Position int64 `json:"position"`
	// CreatedBy is the actor recorded on the signed_up event: the client
	// that signed the customer up.
	CreatedBy string `json:"created_by"`
	// BlockedOn names the provider the customer waits on while it is
	// down, "" when it waits on none.
	BlockedOn string `json:"blocked_on,omitempty"`
}

// customerStreamType is the stream type of customer streams; events of
// other streams are not the customer projections' business.
const customerStreamType = "customer"

// CustomerIDFromStream returns the customer id of a customer stream id
// ("customer-<uuid>").
func CustomerIDFromStream(streamID string) (uuid.UUID, error) {
	raw, ok := strings.CutPrefix(streamID, customerStreamType+"-")
	if !ok {
		return uuid.Nil, fmt.Errorf("stream %q is not a customer stream", streamID)
	}
	return uuid.Parse(raw)
}

// CustomerStreamID is the stream id of a customer.
func CustomerStreamID(id uuid.UUID) string { return customerStreamType + "-" + id.String() }

// decodeCustomerEvent decodes a customer event; ok is false for events of
// other streams.
func decodeCustomerEvent(e eventstore.Envelope) (id uuid.UUID, ev domain.Event, ok bool, err error) {
	if e.StreamType != customerStreamType {
		return uuid.Nil, nil, false, nil
	}
	id, err = CustomerIDFromStream(e.StreamID)
	if err != nil {
		return uuid.Nil, nil, false, fmt.Errorf("event %s at %s: %w", e.ID, e.Cursor(), err)
	}
	ev, err = domain.DecodeEvent(e.Type, e.Data)
	if err != nil {
		return uuid.Nil, nil, false, fmt.Errorf("event %s at %s: %w", e.ID, e.Cursor(), err)
	}
	return id, ev, true, nil
}

// dataKeys returns the data keys of the customers whose events in the
// batch hold personal data, in one look-up. Without a key store there are
// none, and apply shows encrypted fields as domain.Encrypted.
func (p customersProjection) dataKeys(ctx context.Context, events []eventstore.Envelope) (map[string][]byte, error) {
	if p.keys == nil {
		return nil, nil
	}
	var streams []string
	for _, e := range events {
		if e.StreamType == customerStreamType && domain.HasPersonalDataType(e.Type) {
			streams = append(streams, e.StreamID)
		}
	}
	if len(streams) == 0 {
		return nil, nil
	}
	return p.keys.DataKeys(ctx, streams)
}

// applyCustomer folds one event into a summary row. The state comes from
// the domain's transition table (domain.NextState); the other fields
// mirror the domain's appliers, and the projection tests compare the row
// with domain.FromHistory over generated histories. It returns false when
// the event was already applied (its version is not newer).
func applyCustomer(c *Customer, env eventstore.Envelope, ev domain.Event) bool {
	if env.Version <= c.Version {
		return false
	}
	at := env.RecordedAt
	c.State = string(domain.NextState(domain.State(c.State), ev))
	switch e := ev.(type) {
	case domain.SignedUp:
		c.Email, c.Company, c.ContactName, c.Country, c.Plan = e.Email, e.Company, e.ContactName, e.Country, string(e.Plan)
		c.Step, c.Attempts = string(domain.StepVerification), 0
		c.CreatedAt, c.CreatedBy = at, env.Metadata.Actor
	case domain.StepRequested:
		c.moveTo(e.Step)
		c.Attempts = e.Attempt
	case domain.StepSucceeded:
		c.LastError = ""
		if s := domain.State(c.State); s == domain.StateVerified || s == domain.StateProvisioning {
			if next, ok := e.Step.Next(); ok {
				c.moveTo(next)
			}
		}
	case domain.StepFailed:
		c.LastError = e.Message
	case domain.VerificationRejected:
		c.LastError = e.Reason
	case domain.Paused:
		c.PausedStep, c.PauseReason, c.PausedAt = string(e.Step), e.Reason, &at
	case domain.StepRetryRequested:
		c.moveTo(e.Step)
		c.Attempts = 0
		c.clearPause()
	case domain.StepSkipped:
		if next, ok := e.Step.Next(); ok {
			c.moveTo(next)
		}
		c.clearPause()
	case domain.CancellationRequested:
		c.clearPause()
		c.BlockedOn = ""
	case domain.Blocked:
		c.BlockedOn = e.Provider
		c.Attempts = max(e.Attempt-1, 0)
	case domain.Unblocked:
		c.BlockedOn = ""
	case domain.PersonalDataErased:
		c.Email, c.Company, c.ContactName, c.Country = domain.Erased, domain.Erased, domain.Erased, domain.Erased
		if domain.State(c.State) == domain.StateRejected {
			c.LastError = domain.Erased // the verdict's reason
		}
	case domain.OnboardingCompleted:
		c.ActivatedAt = &at
	}
	c.Version, c.Position, c.UpdatedAt = env.Version, env.Position, at
	return true
}

// moveTo makes step the current one. Steps only move forward (or stay, on
// an operator retry), and a step that becomes current has not been
// attempted in its group yet.
func (c *Customer) moveTo(step domain.Step) {
	if c.Step != string(step) {
		c.Step, c.Attempts = string(step), 0
	}
}

func (c *Customer) clearPause() {
	c.PausedStep, c.PauseReason, c.PausedAt = "", "", nil
}

// customersProjection keeps the customer summary. It holds personal data
// decrypted (the console searches it) until the customer's erasure, which
// scrubs it to domain.Erased.
type customersProjection struct {
	keys eventstore.KeyReader
}

func (customersProjection) name() string             { return Customers }
func (customersProjection) view() string             { return "customer_summary" }
func (customersProjection) table(version int) string { return fmt.Sprintf("rm_customers_v%d", version) }

func (p customersProjection) create(ctx context.Context, tx pgx.Tx, version int) error {
	t := p.table(version)
	_, err := tx.Exec(ctx, fmt.Sprintf(`
CREATE TABLE IF NOT EXISTS %[1]s (
	id            uuid        PRIMARY KEY,
	email         text        NOT NULL,
	company       text        NOT NULL,
	contact_name  text        NOT NULL,
	country       text        NOT NULL,
	plan          text        NOT NULL,
	state         text        NOT NULL,
	step          text        NOT NULL,
	attempts      integer     NOT NULL,
	last_error    text        NOT NULL,
	paused_step   text        NOT NULL,
	pause_reason  text        NOT NULL,
	paused_at     timestamptz,
	created_at    timestamptz NOT NULL,
	updated_at    timestamptz NOT NULL,
	activated_at  timestamptz,
	version       bigint      NOT NULL,
	position      bigint      NOT NULL,
	created_by    text        NOT NULL,
	blocked_on    text        NOT NULL DEFAULT ''
);
`, t))
	return err
}

// index creates the secondary indexes. A rebuild creates them after the
// bulk load, which is faster than maintaining them row by row.
func (p customersProjection) index(ctx context.Context, tx pgx.Tx, version int) error {
	_, err := tx.Exec(ctx, fmt.Sprintf(`
-- Keyset pagination is newest first by id (UUIDv7, so by signup time),
-- within a filter.
CREATE INDEX IF NOT EXISTS %[1]s_state_idx ON %[1]s (state, id);
CREATE INDEX IF NOT EXISTS %[1]s_step_idx ON %[1]s (step, id);
CREATE INDEX IF NOT EXISTS %[1]s_created_by_idx ON %[1]s (created_by, id);
CREATE INDEX IF NOT EXISTS %[1]s_paused_idx ON %[1]s (paused_at, id) WHERE state = 'paused';
CREATE INDEX IF NOT EXISTS %[1]s_activated_idx ON %[1]s (activated_at) WHERE activated_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS %[1]s_blocked_idx ON %[1]s (blocked_on) WHERE blocked_on <> '';`, p.table(version)))
	if err != nil {
		return err
	}
	return trigramIndexes(ctx, tx, p.table(version))
}

// trigramIndexes indexes email and company for substring search (?q=),
// when the pg_trgm extension is there or can be created. Without it search
// still works, by scanning: a database role that may not create extensions
// costs speed, not function.
func trigramIndexes(ctx context.Context, tx pgx.Tx, table string) error {
	var have bool
	err := tx.QueryRow(ctx, `SELECT exists(SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')`).Scan(&have)
	if err != nil {
		return err
	}
	if !have {
		// In a savepoint: a refusal must not abort the caller's transaction.
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := sp.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_trgm`); err != nil {
			return sp.Rollback(ctx)
		}
		if err := sp.Commit(ctx); err != nil {
			return err
		}
	}
	_, err = tx.Exec(ctx, fmt.Sprintf(`
CREATE INDEX IF NOT EXISTS %[1]s_email_trgm_idx ON %[1]s USING gin (email gin_trgm_ops);
CREATE INDEX IF NOT EXISTS %[1]s_company_trgm_idx ON %[1]s USING gin (lower(company) gin_trgm_ops);`, table))
	return err
}

func (p customersProjection) drop(ctx context.Context, tx pgx.Tx, version int) error {
	_, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+p.table(version))
	return err
}

const customerColumns = `id, email, company, contact_name, country, plan, state, step, attempts, last_error,
	paused_step, pause_reason, paused_at, created_at, updated_at, activated_at, version, position, created_by, blocked_on`

func scanCustomer(row pgx.Row) (Customer, error) {
	var c Customer
	err := row.Scan(&c.ID, &c.Email, &c.Company, &c.ContactName, &c.Country, &c.Plan, &c.State, &c.Step,
		&c.Attempts, &c.LastError, &c.PausedStep, &c.PauseReason, &c.PausedAt, &c.CreatedAt, &c.UpdatedAt,
		&c.ActivatedAt, &c.Version, &c.Position, &c.CreatedBy, &c.BlockedOn)
	return c, err
}

// apply loads the rows the batch touches, folds the events into them in
// memory and writes the changed rows back with one statement: two round
// trips per batch whatever its size, which is what makes a rebuild fast.
func (p customersProjection) apply(ctx context.Context, tx pgx.Tx, version int, events []eventstore.Envelope) error {
	type item struct {
		id  uuid.UUID
		env eventstore.Envelope
		ev  domain.Event
	}
	items := make([]item, 0, len(events))
	// Only customers whose first event in the batch is not their
	// signed_up can have a row already: the others are not looked up.
	var existing []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for _, env := range events {
		id, ev, ok, err := decodeCustomerEvent(env)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		items = append(items, item{id, env, ev})
		if !seen[id] {
			seen[id] = true
			if env.Version != 1 {
				existing = append(existing, id)
			}
		}
	}
	if len(items) == 0 {
		return nil
	}
	keys, err := p.dataKeys(ctx, events)
	if err != nil {
		return err
	}
	for i, it := range items {
		if p.keys == nil {
			items[i].ev = domain.MaskEncrypted(it.ev)
		} else if items[i].ev, err = domain.DecryptPersonal(it.ev, it.id, keys[it.env.StreamID]); err != nil {
			return fmt.Errorf("event %s at %s: %w", it.env.ID, it.env.Cursor(), err)
		}
	}
	t := p.table(version)
	rows, err := tx.Query(ctx, `SELECT `+customerColumns+` FROM `+t+` WHERE id = ANY($1)`, existing)
	if err != nil {
		return fmt.Errorf("load customers: %w", err)
	}
	current, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Customer, error) { return scanCustomer(r) })
	if err != nil {
		return fmt.Errorf("load customers: %w", err)
	}
	byID := make(map[uuid.UUID]*Customer, len(seen))
	for i := range current {
		byID[current[i].ID] = &current[i]
	}
	var changed []*Customer
	dirty := map[uuid.UUID]bool{}
	for _, it := range items {
		c := byID[it.id]
		if c == nil {
			if _, first := it.ev.(domain.SignedUp); !first {
				return fmt.Errorf("event %s (%s) of customer %s before its signed_up", it.env.ID, it.env.Type, it.id)
			}
			c = &Customer{ID: it.id}
			byID[it.id] = c
		}
		if applyCustomer(c, it.env, it.ev) && !dirty[it.id] {
			dirty[it.id] = true
			changed = append(changed, c)
		}
	}
	return upsertCustomers(ctx, tx, t, changed)
}

func upsertCustomers(ctx context.Context, tx pgx.Tx, table string, cs []*Customer) error {
	if len(cs) == 0 {
		return nil
	}
	n := len(cs)
	var (
		ids                                                 = make([]pgtype.UUID, n)
		email, company, contact, country, plan, state, step = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		attempts                                            = make([]int32, n)
		lastErr, pausedStep, pauseReason, createdBy         = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		blockedOn                                           = make([]string, n)
		pausedAt, activatedAt                               = make([]*time.Time, n), make([]*time.Time, n)
		createdAt, updatedAt                                = make([]time.Time, n), make([]time.Time, n)
		version, position                                   = make([]int64, n), make([]int64, n)
	)
	for i, c := range cs {
		// pgx encodes a uuid.UUID, a driver.Valuer, through its text form,
		// planning that anew for every element; a pgtype.UUID goes straight.
		ids[i] = pgtype.UUID{Bytes: c.ID, Valid: true}
		email[i], company[i], contact[i], country[i], plan[i] = c.Email, c.Company, c.ContactName, c.Country, c.Plan
		state[i], step[i], attempts[i], lastErr[i] = c.State, c.Step, int32(c.Attempts), c.LastError
		pausedStep[i], pauseReason[i], pausedAt[i] = c.PausedStep, c.PauseReason, c.PausedAt
		createdAt[i], updatedAt[i], activatedAt[i] = c.CreatedAt, c.UpdatedAt, c.ActivatedAt
		version[i], position[i], createdBy[i] = c.Version, c.Position, c.CreatedBy
		blockedOn[i] = c.BlockedOn
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+table+` (`+customerColumns+`)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::text[], $9::int4[], $10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::timestamptz[],
			$15::timestamptz[], $16::timestamptz[], $17::int8[], $18::int8[], $19::text[], $20::text[])
		ON CONFLICT (id) DO UPDATE SET
			email = EXCLUDED.email, company = EXCLUDED.company, contact_name = EXCLUDED.contact_name,
			country = EXCLUDED.country, plan = EXCLUDED.plan, state = EXCLUDED.state, step = EXCLUDED.step,
			attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, paused_step = EXCLUDED.paused_step,
			pause_reason = EXCLUDED.pause_reason, paused_at = EXCLUDED.paused_at, created_at = EXCLUDED.created_at,
			updated_at = EXCLUDED.updated_at, activated_at = EXCLUDED.activated_at, version = EXCLUDED.version,
			position = EXCLUDED.position, created_by = EXCLUDED.created_by, blocked_on = EXCLUDED.blocked_on`,
		ids, email, company, contact, country, plan, state, step, attempts, lastErr, pausedStep, pauseReason,
		pausedAt, createdAt, updatedAt, activatedAt, version, position, createdBy, blockedOn)
	if err != nil {
		return fmt.Errorf("store customers: %w", err)
	}
	return nil
}
