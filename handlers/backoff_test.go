package handlers_test

import (
	"math"
	"testing"
	"time"

	"github.com/onboard/onboard/handlers"
)

func TestFullJitter(t *testing.T) {
	tests := []struct {
		base, cap time.Duration
		attempt   int
		r         float64
		want      time.Duration
	}{
		{time.Second, time.Minute, 1, 0.5, 500 * time.Millisecond},
		{time.Second, time.Minute, 3, 1, 4 * time.Second},
		{time.Second, time.Minute, 10, 1, time.Minute}, // capped
		{time.Second, time.Minute, 0, 1, time.Second},  // attempt < 1 counts as 1
		{time.Second, time.Minute, 1, 0, 0},
		{time.Second, time.Minute, 5000, 0.5, 30 * time.Second}, // no overflow
	}
	for _, tc := range tests {
		if got := handlers.FullJitter(tc.base, tc.cap, tc.attempt, tc.r); got != tc.want {
			t.Errorf("FullJitter(%v, %v, %d, %v) = %v, want %v", tc.base, tc.cap, tc.attempt, tc.r, got, tc.want)
		}
	}
}

func FuzzFullJitter(f *testing.F) {
	f.Add(int64(time.Second), int64(time.Minute), 3, 0.7)
	f.Add(int64(1), int64(math.MaxInt64), 80, 0.999)
	f.Add(int64(time.Hour), int64(time.Millisecond), -4, 2.0)
	f.Fuzz(func(t *testing.T, base, capDelay int64, attempt int, r float64) {
		if base < 0 || capDelay < 0 {
			return
		}
		d := handlers.FullJitter(time.Duration(base), time.Duration(capDelay), attempt, r)
		if d < 0 || d > time.Duration(capDelay) {
			t.Fatalf("delay %v outside [0, %v]", d, time.Duration(capDelay))
		}
	})
}
