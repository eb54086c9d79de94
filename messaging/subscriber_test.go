package messaging

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/eventstore"
)

// TestHandlerLongerThanAckWait runs handlers that take 2.5 times AckWait:
// the router tells JetStream they are in progress, so no event is
// delivered a second time while its handler runs.
func TestHandlerLongerThanAckWait(t *testing.T) {
	env := newTestEnv(t)
	relay, _ := env.startRelay(RelayConfig{})
	var calls atomic.Int64
	env.startRouter(RouterConfig{AckWait: time.Second, HandlerTimeout: 10 * time.Second}, func(r *Router) {
		h := env.effectsHandler("slow")
		err := r.AddHandler(context.Background(), "slow", func(ctx context.Context, tx pgx.Tx, e eventstore.Envelope) error {
			calls.Add(1)
			if err := sleep(ctx, 2500*time.Millisecond); err != nil {
				return err
			}
			return h(ctx, tx, e)
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	ids := env.appendEvents(1, 5, 5)
	waitFor(t, "relay to reach the head", env.relayedAll(relay))
	waitFor(t, "consumer to apply every event", func() (bool, error) {
		got, err := env.count(`SELECT count(*) FROM test_effects WHERE handler = 'slow'`)()
		return got >= len(ids), err
	})
	env.checkEffectsOnce("slow", ids)
	if got := calls.Load(); got != int64(len(ids)) {
		t.Errorf("handler ran %d times for %d events, want once each", got, len(ids))
	}
}
