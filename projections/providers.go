package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// ProviderCalls counts the calls of one step to its provider, as recorded by
// step_requested, step_succeeded and step_failed events.
type ProviderCalls struct {
	Step     string `json:"step"`
	Provider string `json:"provider"`
	// Requested counts attempts started; Succeeded and Failed their
	// recorded outcomes (an attempt still in flight has neither).
	Requested int64 `json:"requested"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	// PermanentFailures is the part of Failed classed permanent.
	PermanentFailures int64 `json:"permanent_failures"`
}

// ProviderOf names the provider that serves a step.
func ProviderOf(step domain.Step) string {
	switch step {
	case domain.StepVerification:
		return "kyc"
	case domain.StepBilling:
		return "payments"
	case domain.StepTenant:
		return "provisioning"
	case domain.StepCRM:
		return "crm"
	case domain.StepWelcome:
		return "email"
	}
	return "unknown"
}

type providerStatsProjection struct{}

func (providerStatsProjection) name() string { return ProviderStats }
func (providerStatsProjection) view() string { return "provider_stats" }
func (providerStatsProjection) table(version int) string {
	return fmt.Sprintf("rm_provider_stats_v%d", version)
}

func (p providerStatsProjection) create(ctx context.Context, tx pgx.Tx, version int) error {
	_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+p.table(version)+` (
		step               text   PRIMARY KEY,
		provider           text   NOT NULL,
		requested          bigint NOT NULL,
		succeeded          bigint NOT NULL,
		failed             bigint NOT NULL,
		permanent_failures bigint NOT NULL
	)`)
	return err
}

func (providerStatsProjection) index(context.Context, pgx.Tx, int) error { return nil }

func (p providerStatsProjection) drop(ctx context.Context, tx pgx.Tx, version int) error {
	_, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+p.table(version))
	return err
}

// countCalls adds the calls recorded by events to counts, keyed by step.
func countCalls(counts map[domain.Step]*ProviderCalls, events []eventstore.Envelope) error {
	get := func(s domain.Step) *ProviderCalls {
		c := counts[s]
		if c == nil {
			c = &ProviderCalls{Step: string(s), Provider: ProviderOf(s)}
			counts[s] = c
		}
		return c
	}
	for _, env := range events {
		switch env.Type {
		case domain.TypeStepRequested, domain.TypeStepSucceeded, domain.TypeStepFailed:
		default:
			continue // skip decoding what cannot count
		}
		_, ev, ok, err := decodeCustomerEvent(env)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		switch e := ev.(type) {
		case domain.StepRequested:
			get(e.Step).Requested++
		case domain.StepSucceeded:
			get(e.Step).Succeeded++
		case domain.StepFailed:
			c := get(e.Step)
			c.Failed++
			if e.Class == domain.ErrorPermanent {
				c.PermanentFailures++
			}
		}
	}
	return nil
}

// apply adds the batch's counts. The counters are not idempotent by
// themselves: exactly-once comes from the checkpoint stored in the same
// transaction, which keeps events already applied out of every batch.
func (p providerStatsProjection) apply(ctx context.Context, tx pgx.Tx, version int, events []eventstore.Envelope) error {
	counts := map[domain.Step]*ProviderCalls{}
	if err := countCalls(counts, events); err != nil {
		return err
	}
	for _, c := range counts {
		_, err := tx.Exec(ctx, `INSERT INTO `+p.table(version)+` AS t
			(step, provider, requested, succeeded, failed, permanent_failures) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (step) DO UPDATE SET requested = t.requested + EXCLUDED.requested,
				succeeded = t.succeeded + EXCLUDED.succeeded, failed = t.failed + EXCLUDED.failed,
				permanent_failures = t.permanent_failures + EXCLUDED.permanent_failures`,
			c.Step, c.Provider, c.Requested, c.Succeeded, c.Failed, c.PermanentFailures)
		if err != nil {
			return fmt.Errorf("store provider stats: %w", err)
		}
	}
	return nil
}
