package main

import (
	"context"
	"log/slog"
	"time"
)

// pruneChunk bounds the rows one pruning statement deletes, so that a
// large backlog does not hold one long transaction.
const pruneChunk = 10000

// pruneEvery runs del every interval (and once at the start), in chunks of
// pruneChunk until a chunk comes back short, until ctx is done; it returns
// nil then. deleted, when not nil, is told how many rows each chunk
// removed. A failed round is logged and tried again the next time. It is
// the one schedule of the tables that are pruned: the consumers' inbox
// and the expired idempotency records.
func pruneEvery(ctx context.Context, what string, interval time.Duration, del func(ctx context.Context, limit int) (int64, error),
	deleted func(n int64), log *slog.Logger) error {
	for {
		var total int64
		for {
			n, err := del(ctx, pruneChunk)
			total += n
			if n > 0 && deleted != nil {
				deleted(n)
			}
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("pruning failed; trying again later", "table", what, "err", err, "deleted", total)
				}
				break
			}
			if n < pruneChunk {
				break
			}
		}
		if total > 0 {
			log.Info("pruned", "table", what, "deleted", total)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}
