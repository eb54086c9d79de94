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
func ProviderOf(step domain.Step) string { return step.Provider() }

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

// CountsCall reports whether events of type typ can record a provider
// call, so that a reader can skip decoding the others.
func CountsCall(typ string) bool {
	return typ == domain.TypeStepRequested || typ == domain.TypeStepSucceeded || typ == domain.TypeStepFailed || typ == domain.TypeBlocked
}

// CallOf is the one rule of what provider_stats counts: the step of the
// call e records and what it adds to that step's counts, or ok false when
// e records no call. The projection, audit's diff and coverage all count
// with it.
func CallOf(e domain.Event) (step domain.Step, add ProviderCalls, ok bool) {
	switch e := e.(type) {
	case domain.StepRequested:
		return e.Step, ProviderCalls{Requested: 1}, true
	case domain.StepSucceeded:
		return e.Step, ProviderCalls{Succeeded: 1}, true
	case domain.StepFailed:
		add := ProviderCalls{Failed: 1}
		if e.Class == domain.ErrorPermanent {
			add.PermanentFailures = 1
		}
		return e.Step, add, true
	case domain.Blocked:
		// The attempt the provider's outage refused: it failed, though the
		// customer does not count it against its attempts.
		return e.Step, ProviderCalls{Failed: 1}, true
	}
	return "", ProviderCalls{}, false
}

// Add adds the counts of o to c.
func (c *ProviderCalls) Add(o ProviderCalls) {
	c.Requested += o.Requested
	c.Succeeded += o.Succeeded
	c.Failed += o.Failed
	c.PermanentFailures += o.PermanentFailures
}

// countCalls adds the calls recorded by events to counts, keyed by step.
func countCalls(counts map[domain.Step]*ProviderCalls, events []eventstore.Envelope) error {
	for _, env := range events {
		if !CountsCall(env.Type) {
			continue // skip decoding what cannot count
		}
		_, ev, ok, err := decodeCustomerEvent(env)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		step, add, ok := CallOf(ev)
		if !ok {
			continue
		}
		if counts[step] == nil {
			counts[step] = &ProviderCalls{Step: string(step), Provider: ProviderOf(step)}
		}
		counts[step].Add(add)
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
