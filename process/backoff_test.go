package process

import (
	"math"
	"testing"
	"time"
)

// ceiling is the full-jitter bound of attempt n: min(capDelay, base·2^(n-1)).
func ceiling(base, capDelay time.Duration, attempt int) float64 {
	c := float64(base) * math.Pow(2, float64(max(attempt, 1)-1))
	return math.Min(c, float64(capDelay))
}

// TestFullJitter draws many delays of one attempt: all lie in [0, ceiling]
// and they spread over the whole of it, so that customers that failed
// together do not retry together.
func TestFullJitter(t *testing.T) {
	tests := []struct {
		name      string
		base, cap time.Duration
		attempt   int
	}{
		{"first attempt", time.Second, time.Minute, 1},
		{"third attempt", time.Second, time.Minute, 3},
		{"capped", time.Second, time.Minute, 10},
		{"attempt below 1 counts as 1", time.Second, time.Minute, 0},
		{"no overflow", time.Second, time.Minute, 5000},
		{"base above the cap", time.Hour, time.Millisecond, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ceil := ceiling(tc.base, tc.cap, tc.attempt)
			lo, hi := math.Inf(1), 0.0
			for range 2000 {
				d := float64(fullJitter(tc.base, tc.cap, tc.attempt))
				if d < 0 || d > ceil {
					t.Fatalf("delay %v outside [0, %v]", time.Duration(d), time.Duration(ceil))
				}
				lo, hi = math.Min(lo, d), math.Max(hi, d)
			}
			if lo > ceil/8 || hi < ceil*7/8 {
				t.Errorf("2000 delays span [%v, %v], want most of [0, %v]", time.Duration(lo), time.Duration(hi), time.Duration(ceil))
			}
		})
	}
}

func FuzzFullJitter(f *testing.F) {
	f.Add(int64(time.Second), int64(time.Minute), 3)
	f.Add(int64(1), int64(math.MaxInt64), 80)
	f.Add(int64(time.Hour), int64(time.Millisecond), -4)
	f.Fuzz(func(t *testing.T, base, capDelay int64, attempt int) {
		if base < 0 || capDelay < 0 {
			return
		}
		d := fullJitter(time.Duration(base), time.Duration(capDelay), attempt)
		// The bound is computed in float64 here, rounded at large values.
		if ceil := ceiling(time.Duration(base), time.Duration(capDelay), attempt); d < 0 || float64(d) > ceil*(1+1e-12) {
			t.Fatalf("delay %v outside [0, %v]", d, time.Duration(ceil))
		}
	})
}
