package operator

import (
	"context"
	"sort"
	"time"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/projections"
)

// Group is the paused customers of one step and cause: what one bulk
// retry fixes once the cause is gone.
type Group struct {
	Step     string `json:"step"`
	Provider string `json:"provider"`
	Cause    string `json:"cause"`
	Count    int    `json:"count"`
	// Oldest is the earliest pause; Example the reason of one of them.
	Oldest  time.Time `json:"oldest"`
	Example string    `json:"example"`
	// Filter selects exactly the group, for a bulk action.
	Filter Filter `json:"filter"`
}

// PausedGroups groups the paused customers by step and cause, largest
// group first.
func PausedGroups(ctx context.Context, reads CustomerLister, limit int) ([]Group, error) {
	paused, err := Select(ctx, reads, Filter{State: string(domain.StatePaused)}, limit)
	if err != nil {
		return nil, err
	}
	type key struct{ step, cause string }
	idx := map[key]int{}
	groups := []Group{}
	for _, c := range paused {
		k := key{c.PausedStep, CauseOf(c)}
		i, ok := idx[k]
		if !ok {
			i = len(groups)
			idx[k] = i
			groups = append(groups, Group{Step: k.step, Provider: projections.ProviderOf(domain.Step(k.step)), Cause: k.cause,
				Example: c.PauseReason, Filter: Filter{State: string(domain.StatePaused), Step: k.step, ErrorCode: k.cause}})
		}
		g := &groups[i]
		g.Count++
		if c.PausedAt != nil && (g.Oldest.IsZero() || c.PausedAt.Before(g.Oldest)) {
			g.Oldest = *c.PausedAt
		}
	}
	sort.SliceStable(groups, func(i, j int) bool {
		if groups[i].Count != groups[j].Count {
			return groups[i].Count > groups[j].Count
		}
		return groups[i].Oldest.Before(groups[j].Oldest)
	})
	return groups, nil
}
