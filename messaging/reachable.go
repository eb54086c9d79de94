package messaging

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsAway reports whether err means the NATS server (or its JetStream)
// did not answer, as while it restarts, rather than that it refused.
func natsAway(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// whileAway runs op until it succeeds, fails for another reason than NATS
// being away, or ctx is done: a process that starts while NATS restarts
// waits for it instead of exiting. Each try gets tryTimeout; the tries are
// backoff apart.
func whileAway(ctx context.Context, op func(ctx context.Context) error) error {
	const tryTimeout = 5 * time.Second
	for failures := 1; ; failures++ {
		tctx, cancel := context.WithTimeout(ctx, tryTimeout)
		err := op(tctx)
		cancel()
		if err == nil || ctx.Err() != nil || !natsAway(err) {
			return err
		}
		if sleep(ctx, backoff(failures)) != nil {
			return err
		}
	}
}
