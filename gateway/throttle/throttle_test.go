package throttle

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)} }
func isTemp(err error) bool          { return errors.Is(err, errTemp) }
func ok(context.Context) error       { return nil }
func failTemp(context.Context) error { return errTemp }
func failPerm(context.Context) error { return errPerm }

var (
	errTemp = errors.New("temporary")
	errPerm = errors.New("permanent")
)

func deferredBy(t *testing.T, err error, want error) *Deferred {
	t.Helper()
	var d *Deferred
	if !errors.As(err, &d) || !errors.Is(err, want) {
		t.Fatalf("err = %v, want a deferral for %v", err, want)
	}
	return d
}

func TestRateLimit(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 2, Burst: 2, MaxWait: time.Millisecond}, c.now)
	ctx := context.Background()
	for i := range 2 {
		if err := l.Do(ctx, ok, isTemp); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	d := deferredBy(t, l.Do(ctx, ok, isTemp), ErrRateLimited)
	if got := d.Until.Sub(c.now()); got != 500*time.Millisecond {
		t.Errorf("deferred by %v, want 500ms (one token at 2/s)", got)
	}
	c.add(500 * time.Millisecond)
	if err := l.Do(ctx, ok, isTemp); err != nil {
		t.Fatalf("after a token's time: %v", err)
	}
	// A long quiet spell refills only up to the burst.
	c.add(time.Hour)
	for i := range 2 {
		if err := l.Do(ctx, ok, isTemp); err != nil {
			t.Fatalf("call %d after a quiet hour: %v", i, err)
		}
	}
	deferredBy(t, l.Do(ctx, ok, isTemp), ErrRateLimited)
}

// A token due within MaxWait is waited for, not deferred; the calls that
// waited keep the average rate.
func TestRateWaitsWithinMaxWait(t *testing.T) {
	l := New(Config{Rate: 100, Burst: 1, MaxWait: time.Second}, nil)
	start := time.Now()
	for i := range 6 {
		if err := l.Do(context.Background(), ok, isTemp); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if el := time.Since(start); el < 45*time.Millisecond {
		t.Errorf("6 calls at 100/s with a burst of 1 took %v, want at least 50ms", el)
	}
}

func TestBreaker(t *testing.T) {
	c := newClock()
	l := New(Config{BreakerFailures: 3, BreakerCooldown: 10 * time.Second, BreakerMaxCooldown: 25 * time.Second}, c.now)
	ctx := context.Background()

	// Permanent failures are the message's fault: they never open it.
	for range 10 {
		l.Do(ctx, failPerm, isTemp)
	}
	if s := l.State(); s != Closed {
		t.Fatalf("after permanent failures: %s", s)
	}
	// A success in between resets the count.
	l.Do(ctx, failTemp, isTemp)
	l.Do(ctx, failTemp, isTemp)
	l.Do(ctx, ok, isTemp)
	l.Do(ctx, failTemp, isTemp)
	l.Do(ctx, failTemp, isTemp)
	if s := l.State(); s != Closed {
		t.Fatalf("after 2+2 temporary failures around a success: %s", s)
	}
	l.Do(ctx, failTemp, isTemp)
	if s := l.State(); s != Open {
		t.Fatalf("after 3 in a row: %s", s)
	}
	called := false
	d := deferredBy(t, l.Do(ctx, func(context.Context) error { called = true; return nil }, isTemp), ErrCircuitOpen)
	if called || !d.Until.Equal(c.now().Add(10*time.Second)) {
		t.Fatalf("open circuit: called=%v until %v", called, d.Until)
	}

	// Half-open: one trial; it fails, and the cooldown doubles (capped).
	c.add(10 * time.Second)
	if s := l.State(); s != HalfOpen {
		t.Fatalf("after the cooldown: %s", s)
	}
	l.Do(ctx, failTemp, isTemp)
	d = deferredBy(t, l.Do(ctx, ok, isTemp), ErrCircuitOpen)
	if got := d.Until.Sub(c.now()); got != 20*time.Second {
		t.Errorf("second cooldown %v, want 20s", got)
	}
	c.add(20 * time.Second)
	l.Do(ctx, failTemp, isTemp)
	d = deferredBy(t, l.Do(ctx, ok, isTemp), ErrCircuitOpen)
	if got := d.Until.Sub(c.now()); got != 25*time.Second {
		t.Errorf("third cooldown %v, want the 25s cap", got)
	}

	// While the trial runs, nobody else gets through; its success closes.
	c.add(25 * time.Second)
	inTrial, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- l.Do(ctx, func(context.Context) error { close(inTrial); <-release; return nil }, isTemp)
	}()
	<-inTrial
	deferredBy(t, l.Do(ctx, ok, isTemp), ErrCircuitOpen)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := l.State(); s != Closed {
		t.Fatalf("after a good trial: %s", s)
	}
	if err := l.Do(ctx, ok, isTemp); err != nil {
		t.Fatalf("closed again: %v", err)
	}
}

func TestBreakerDisabled(t *testing.T) {
	l := New(Config{BreakerFailures: -1}, nil)
	for range 20 {
		if err := l.Do(context.Background(), failTemp, isTemp); !errors.Is(err, errTemp) {
			t.Fatalf("err = %v, want the call's own error", err)
		}
	}
	if s := l.State(); s != Closed {
		t.Fatalf("state %s", s)
	}
}

func TestConcurrencyBound(t *testing.T) {
	const limit = 3
	l := New(Config{Concurrency: limit, MaxWait: 5 * time.Second}, nil)
	var cur, peak atomic.Int32
	var wg sync.WaitGroup
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.Do(context.Background(), func(context.Context) error {
				n := cur.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(2 * time.Millisecond)
				cur.Add(-1)
				return nil
			}, isTemp)
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > limit || p < 1 {
		t.Fatalf("peak concurrency %d, limit %d", p, limit)
	}
}

func TestBusyDefersAndRefunds(t *testing.T) {
	l := New(Config{Concurrency: 1, Rate: 1000, Burst: 1, MaxWait: 20 * time.Millisecond}, nil)
	hold, held := make(chan struct{}), make(chan struct{})
	go l.Do(context.Background(), func(context.Context) error { close(held); <-hold; return nil }, isTemp)
	<-held
	time.Sleep(5 * time.Millisecond) // a token's worth
	deferredBy(t, l.Do(context.Background(), ok, isTemp), ErrBusy)
	close(hold)
	for l.InFlight() > 0 {
		time.Sleep(time.Millisecond)
	}
	// The deferred call's token came back: the next call goes through.
	time.Sleep(2 * time.Millisecond)
	if err := l.Do(context.Background(), ok, isTemp); err != nil {
		t.Fatalf("after the slot freed: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Concurrency: -1}, {Rate: -1}, {Burst: -2}, {MaxWait: -time.Second}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
}

func BenchmarkDo(b *testing.B) {
	l := New(Config{Concurrency: 8, Rate: 1e9, Burst: 1 << 20}, nil)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Do(ctx, ok, isTemp)
		}
	})
}

// Blocked agrees with what Do would do, and takes nothing.
func TestBlocked(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 2, Burst: 1, MaxWait: time.Millisecond, BreakerFailures: 1, BreakerCooldown: time.Minute}, c.now)
	ctx := context.Background()
	for range 3 {
		if d := l.Blocked(); d != nil {
			t.Fatalf("fresh limiter blocked: %v", d)
		}
	}
	if err := l.Do(ctx, ok, isTemp); err != nil {
		t.Fatal(err)
	}
	d := l.Blocked()
	if d == nil || !errors.Is(d, ErrRateLimited) || d.Until.Sub(c.now()) != 500*time.Millisecond {
		t.Fatalf("after the only token: %v", d)
	}
	c.add(500 * time.Millisecond)
	if d := l.Blocked(); d != nil {
		t.Fatalf("a token later: %v", d)
	}
	l.Do(ctx, failTemp, isTemp)
	if d := l.Blocked(); d == nil || !errors.Is(d, ErrCircuitOpen) {
		t.Fatalf("open circuit: %v", d)
	}
}
