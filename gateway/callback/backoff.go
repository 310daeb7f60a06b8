package callback

import (
	"math/rand/v2"
	"time"
)

// Backoff returns how long to wait after attempt failed attempts (1 for the
// first failure) before trying again: exponential with full jitter, a
// uniformly random duration in [0, min(limit, base·2^(attempt-1))). Full
// jitter spreads out the retries of many callbacks that failed together,
// such as when the core was down. random returns values in [0, 1); nil
// means math/rand/v2.
func Backoff(attempt int, base, limit time.Duration, random func() float64) time.Duration {
	if base <= 0 || limit <= 0 {
		return 0
	}
	if random == nil {
		random = rand.Float64
	}
	ceiling := limit
	if n := uint(max(attempt, 1) - 1); n < 63 {
		if d := base << n; d>>n == base && d < limit {
			ceiling = d
		}
	}
	return time.Duration(random() * float64(ceiling))
}
