package messaging

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{5, 1600 * time.Millisecond},
		{6, 2 * time.Second},
		{1000, 2 * time.Second},
	}
	for _, tc := range tests {
		if got := backoff(tc.failures); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

// TestDoubling pins the relay's poll after activity: 1ms doubling while
// below the polling interval, then the polling interval.
func TestDoubling(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		first, most time.Duration
		want        []time.Duration
	}{
		{ms, 250 * ms, []time.Duration{ms, 2 * ms, 4 * ms, 8 * ms, 16 * ms, 32 * ms, 64 * ms, 128 * ms, 250 * ms, 250 * ms}},
		{ms, 256 * ms, []time.Duration{ms, 2 * ms, 4 * ms, 8 * ms, 16 * ms, 32 * ms, 64 * ms, 128 * ms, 256 * ms, 256 * ms}},
		{ms, ms / 2, []time.Duration{ms / 2, ms / 2}},
	}
	for _, tc := range tests {
		b := doubling(tc.first, tc.most)
		for i, want := range tc.want {
			if got := b.NextBackOff(); got != want {
				t.Errorf("doubling(%v, %v): wait %d = %v, want %v", tc.first, tc.most, i+1, got, want)
			}
		}
		b.Reset()
		if got := b.NextBackOff(); got != tc.want[0] {
			t.Errorf("doubling(%v, %v) after Reset = %v, want %v", tc.first, tc.most, got, tc.want[0])
		}
	}
}
