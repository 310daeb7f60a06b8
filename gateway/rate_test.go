package gateway

import (
	"testing"
	"time"
)

func TestRateWindowCountsTheLastMinutePerTenant(t *testing.T) {
	var w rateWindow
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 30 {
		w.add("a", t0.Add(time.Duration(i)*time.Second), 2)
	}
	if got := w.add("a", t0.Add(30*time.Second), 0); got != 60 {
		t.Fatalf("after 30 s: %d, want 60", got)
	}
	if got := w.add("b", t0.Add(30*time.Second), 1); got != 1 {
		t.Fatalf("tenant b: %d, want 1 (tenants are separate)", got)
	}
	// At 70 s the window holds seconds 11..70: 19 of the busy seconds.
	if got := w.add("a", t0.Add(70*time.Second), 0); got != 38 {
		t.Fatalf("after 70 s: %d, want 38", got)
	}
	if got := w.add("a", t0.Add(10*time.Minute), 0); got != 0 {
		t.Fatalf("after 10 min: %d, want 0", got)
	}
}
