package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestPruneEvery: each round deletes in chunks until one comes back short,
// reports every chunk, goes on after a failed round, and stops with its
// context.
func TestPruneEvery(t *testing.T) {
	// Round 1: a full chunk, then a short one. Round 2 fails. Round 3
	// deletes a few more.
	answers := []struct {
		n   int64
		err error
	}{{pruneChunk, nil}, {7, nil}, {0, errors.New("connection lost")}, {3, nil}}
	var (
		mu       sync.Mutex
		calls    int
		reported []int64
	)
	del := func(_ context.Context, limit int) (int64, error) {
		mu.Lock()
		defer mu.Unlock()
		if limit != pruneChunk {
			t.Errorf("limit %d, want %d", limit, pruneChunk)
		}
		if calls >= len(answers) {
			calls++
			return 0, nil
		}
		a := answers[calls]
		calls++
		return a.n, a.err
	}
	report := func(n int64) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- pruneEvery(ctx, "test", time.Millisecond, del, report, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := calls
		mu.Unlock()
		if n > len(answers) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("pruneEvery = %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pruneEvery did not stop with its context")
	}
	mu.Lock()
	defer mu.Unlock()
	if calls <= len(answers) {
		t.Fatalf("%d calls, want more than %d: a failed round must not stop the pruning", calls, len(answers))
	}
	if want := []int64{pruneChunk, 7, 3}; !slices.Equal(reported, want) {
		t.Errorf("reported %v, want %v", reported, want)
	}
}
