package messaging

import (
	"context"
	"time"

	backoffv5 "github.com/cenkalti/backoff/v5"
)

// Every wait in this package that grows comes from doubling: the retry
// backoff below, whileAway's wait for NATS, and the relay's poll after
// activity.

// doubling returns the schedule first, 2·first, 4·first, ... capped at most,
// without jitter; Reset starts it over.
func doubling(first, most time.Duration) *backoffv5.ExponentialBackOff {
	b := &backoffv5.ExponentialBackOff{InitialInterval: min(first, most), Multiplier: 2, MaxInterval: most}
	b.Reset()
	return b
}

// backoff is the wait after the n-th consecutive failure: 100ms doubling to
// at most 2s.
func backoff(n int) time.Duration {
	b := doubling(100*time.Millisecond, 2*time.Second)
	d := b.NextBackOff()
	for i := 1; i < n && d < b.MaxInterval; i++ {
		d = b.NextBackOff()
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
