// Package throttle paces the calls the gateway makes to one delivery adapter:
// at most so many at once, at most so many a second (a token bucket), and
// none while the adapter keeps failing (a circuit breaker).
//
// A call that would have to wait long for its turn is not made to wait: Do
// returns a *Deferred that says when to try again, and the gateway puts the
// message back in its queue for then. So a slow or broken provider never
// holds the gateway's workers, and no message waits in memory where a crash
// would lose it.
package throttle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Config limits one adapter. The zero value allows 4 calls at once, no rate
// limit, and opens the circuit after 5 temporary failures in a row for 30 s.
type Config struct {
	// Concurrency is how many calls may run at once.
	Concurrency int
	// Rate is how many calls may start per second, on average; 0 means no
	// limit. Burst is how many may start at once after a quiet spell
	// (default: Rate rounded up, at least 1).
	Rate  float64
	Burst int
	// BreakerFailures is how many temporary failures in a row open the
	// circuit; a negative value never opens it. Permanent failures (a bad
	// number, a refused address) are the message's fault, not the
	// adapter's, and do not count.
	BreakerFailures int
	// BreakerCooldown is how long an open circuit stays open before one
	// trial call may go through. Each failed trial doubles it, up to
	// BreakerMaxCooldown (default 10 min).
	BreakerCooldown    time.Duration
	BreakerMaxCooldown time.Duration
	// MaxWait is the longest a call waits for a free slot or a token
	// before it is deferred instead (default 1 s).
	MaxWait time.Duration
}

func (c *Config) setDefaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.Rate > 0 && c.Burst <= 0 {
		c.Burst = max(1, int(math.Ceil(c.Rate)))
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerCooldown <= 0 {
		c.BreakerCooldown = 30 * time.Second
	}
	if c.BreakerMaxCooldown <= 0 {
		c.BreakerMaxCooldown = 10 * time.Minute
	}
	if c.BreakerMaxCooldown < c.BreakerCooldown {
		c.BreakerMaxCooldown = c.BreakerCooldown
	}
	if c.MaxWait <= 0 {
		c.MaxWait = time.Second
	}
}

// Validate reports settings that make no sense.
func (c Config) Validate() error {
	switch {
	case c.Concurrency < 0:
		return errors.New("concurrency must not be negative")
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return errors.New("rate must be a non-negative number")
	case c.Burst < 0:
		return errors.New("burst must not be negative")
	case c.BreakerCooldown < 0 || c.BreakerMaxCooldown < 0 || c.MaxWait < 0:
		return errors.New("durations must not be negative")
	}
	return nil
}

var (
	// ErrCircuitOpen: the adapter failed too often; calls wait for the
	// cooldown.
	ErrCircuitOpen = errors.New("circuit open")
	// ErrRateLimited: the adapter's rate limit has no token soon enough.
	ErrRateLimited = errors.New("rate limited")
	// ErrBusy: every slot stayed taken for MaxWait.
	ErrBusy = errors.New("adapter busy")
)

// Deferred is Do's answer when the call was not made: try again at Until.
type Deferred struct {
	Until time.Time
	Err   error // ErrCircuitOpen, ErrRateLimited or ErrBusy
}

func (d *Deferred) Error() string { return fmt.Sprintf("deferred: %v", d.Err) }
func (d *Deferred) Unwrap() error { return d.Err }

// Breaker states, as State reports them.
const (
	Closed   = "closed"
	Open     = "open"
	HalfOpen = "half_open"
)

// Limiter paces the calls to one adapter. It is safe for concurrent use.
type Limiter struct {
	cfg   Config
	now   func() time.Time
	slots chan struct{}

	mu       sync.Mutex
	tokens   float64
	last     time.Time // when tokens was last brought up to date
	fails    int       // temporary failures in a row
	openTill time.Time // zero: closed
	cooldown time.Duration
	trial    bool // a half-open trial call is running
}

// New returns a Limiter; now is the clock (nil: time.Now).
func New(cfg Config, now func() time.Time) *Limiter {
	cfg.setDefaults()
	if now == nil {
		now = time.Now
	}
	return &Limiter{
		cfg: cfg, now: now, slots: make(chan struct{}, cfg.Concurrency),
		tokens: float64(cfg.Burst), cooldown: cfg.BreakerCooldown,
	}
}

// Do calls fn if the breaker, the rate and a slot allow it within MaxWait,
// and returns fn's error; otherwise it returns a *Deferred without calling
// fn. temporary tells which of fn's errors count towards the breaker.
func (l *Limiter) Do(ctx context.Context, fn func(context.Context) error, temporary func(error) bool) error {
	trial, delay, err := l.admit()
	if err != nil {
		return err
	}
	if trial {
		defer l.endTrial()
	}
	if delay > 0 {
		// The token is ours from then on: wait for it rather than
		// postpone a call that is due so soon.
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			l.refund()
			return ctx.Err()
		}
	}
	wait := time.NewTimer(l.cfg.MaxWait)
	defer wait.Stop()
	select {
	case l.slots <- struct{}{}:
	case <-wait.C:
		l.refund()
		return &Deferred{Until: l.now().Add(l.cfg.MaxWait), Err: ErrBusy}
	case <-ctx.Done():
		l.refund()
		return ctx.Err()
	}
	err = fn(ctx)
	<-l.slots
	l.record(err, temporary)
	return err
}

// admit checks the breaker and takes a token, which may be one that is
// only due after delay (at most MaxWait). trial reports that this call is
// the half-open circuit's one trial.
func (l *Limiter) admit() (trial bool, delay time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.openTill.IsZero() {
		if now.Before(l.openTill) || l.trial {
			until := l.openTill
			if !until.After(now) {
				until = now.Add(time.Second) // the trial is still running
			}
			return false, 0, &Deferred{Until: until, Err: ErrCircuitOpen}
		}
		l.trial, trial = true, true
	}
	if l.cfg.Rate > 0 {
		l.fill(now)
		if l.tokens < 1 {
			delay = time.Duration((1 - l.tokens) / l.cfg.Rate * float64(time.Second))
			if delay > l.cfg.MaxWait {
				if trial {
					l.trial = false
				}
				return false, 0, &Deferred{Until: now.Add(delay), Err: ErrRateLimited}
			}
		}
		l.tokens-- // may go below zero: tokens promised to waiting calls
	}
	return trial, delay, nil
}

func (l *Limiter) fill(now time.Time) {
	if el := now.Sub(l.last).Seconds(); el > 0 {
		l.tokens = math.Min(float64(l.cfg.Burst), l.tokens+el*l.cfg.Rate)
	}
	l.last = now
}

// refund returns the token of a call that was not made.
func (l *Limiter) refund() {
	if l.cfg.Rate <= 0 {
		return
	}
	l.mu.Lock()
	l.tokens = math.Min(float64(l.cfg.Burst), l.tokens+1)
	l.mu.Unlock()
}

func (l *Limiter) endTrial() {
	l.mu.Lock()
	l.trial = false
	l.mu.Unlock()
}

func (l *Limiter) record(err error, temporary func(error) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil || temporary == nil || !temporary(err) {
		// A success, or the message's own fault: the adapter works.
		l.fails, l.openTill, l.cooldown = 0, time.Time{}, l.cfg.BreakerCooldown
		return
	}
	l.fails++
	if l.cfg.BreakerFailures < 0 {
		return
	}
	switch {
	case !l.openTill.IsZero():
		// The half-open trial failed: open again, for longer.
		l.cooldown = min(2*l.cooldown, l.cfg.BreakerMaxCooldown)
		l.openTill = l.now().Add(l.cooldown)
	case l.fails >= l.cfg.BreakerFailures:
		l.openTill = l.now().Add(l.cooldown)
	}
}

// Blocked reports, taking nothing, whether a call now would be put off: the
// circuit is open, or the next token is further away than MaxWait. Callers
// use it to skip work (a vault lookup, a policy decision) for a message
// that could not be sent anyway; Do still decides.
func (l *Limiter) Blocked() *Deferred {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.openTill.IsZero() && (now.Before(l.openTill) || l.trial) {
		until := l.openTill
		if !until.After(now) {
			until = now.Add(time.Second)
		}
		return &Deferred{Until: until, Err: ErrCircuitOpen}
	}
	if l.cfg.Rate > 0 {
		tokens := l.tokens
		if el := now.Sub(l.last).Seconds(); el > 0 {
			tokens = math.Min(float64(l.cfg.Burst), tokens+el*l.cfg.Rate)
		}
		if tokens < 1 {
			if delay := time.Duration((1 - tokens) / l.cfg.Rate * float64(time.Second)); delay > l.cfg.MaxWait {
				return &Deferred{Until: now.Add(delay), Err: ErrRateLimited}
			}
		}
	}
	return nil
}

// State reports the breaker's state: Closed, Open or HalfOpen.
func (l *Limiter) State() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.openTill.IsZero():
		return Closed
	case l.now().Before(l.openTill):
		return Open
	default:
		return HalfOpen
	}
}

// InFlight reports how many calls are running.
func (l *Limiter) InFlight() int { return len(l.slots) }
