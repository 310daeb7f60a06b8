package smtp

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// conn is one SMTP session to the relay, greeted, past STARTTLS and AUTH.
// Only the goroutine that holds it touches its fields, except idleSince and
// timer, which the pool guards.
type conn struct {
	client *gosmtp.Client
	raw    net.Conn // the TCP connection, closed to interrupt a command
	wire   net.Conn // what the client talks over: raw, or TLS on top of it
	tls    bool
	used   int  // mail transactions begun on it
	dirty  bool // a transaction may be open: RSET before the next one
	broken bool // saw a transport error, a 421 or a cancelled context

	idleSince time.Time   // under pool.mu
	timer     *time.Timer // closes it once idle too long
}

// PoolStats is a snapshot of a Sender's connections, for metrics.
type PoolStats struct {
	Open    int // connections open or being opened, in use or idle
	Idle    int
	Waiting int // Sends waiting for a connection because MaxConns are open

	Dials    int64 // connections dialled, successfully or not
	Reuses   int64 // message attempts over a connection that had carried one before
	Discards int64 // connections dropped without QUIT: a transport error, a 421, a failed NOOP, a cancelled context
}

// pool hands out connections to one relay: an idle one if it has one, a
// new one while fewer than MaxConns are open, otherwise the next one
// released, in the order Sends asked (waiters is FIFO). A released
// connection goes straight to a waiter if there is one, else to the idle
// list, else it is closed.
type pool struct {
	cfg  PoolConfig                               // with defaults
	dial func(ctx context.Context) (*conn, error) // a new, ready session
	noop func(ctx context.Context, c *conn) error // health check
	quit func(c *conn)                            // polite close

	mu      sync.Mutex
	idle    []*conn        // most recently used last
	open    int            // connections counted against MaxConns
	waiters []chan *conn   // nil from the channel: dial one, a slot is yours
	closed  bool           // Close has run: nothing goes idle any more
	bg      sync.WaitGroup // idle timeouts closing connections
	stats   PoolStats      // counters only; gauges are computed
}

// get returns a connection for one message.
func (p *pool) get(ctx context.Context) (*conn, error) {
	for {
		p.mu.Lock()
		if n := len(p.idle); n > 0 {
			c := p.idle[n-1]
			p.idle = p.idle[:n-1]
			c.timer.Stop() // if it fires anyway, expire will not find c
			idle := time.Since(c.idleSince)
			p.mu.Unlock()
			if idle > p.cfg.IdleTimeout { // its timer is late
				p.drop(c)
				continue
			}
			if idle > p.cfg.HealthCheckAfter {
				if err := p.noop(ctx, c); err != nil {
					p.drop(c)
					if ctx.Err() != nil {
						return nil, withCommand("NOOP", ctx.Err())
					}
					continue
				}
			}
			return c, nil
		}
		if p.cfg.MaxConns == 0 || p.open < p.cfg.MaxConns {
			p.open++
			p.mu.Unlock()
			return p.dialOrRelease(ctx)
		}
		ch := make(chan *conn, 1)
		p.waiters = append(p.waiters, ch)
		p.mu.Unlock()

		select {
		case c := <-ch:
			if c == nil {
				return p.dialOrRelease(ctx)
			}
			return c, nil // just released: no need to check it
		case <-ctx.Done():
			p.mu.Lock()
			i := slices.Index(p.waiters, ch)
			if i >= 0 {
				p.waiters = slices.Delete(p.waiters, i, i+1)
			}
			p.mu.Unlock()
			if i < 0 { // granted meanwhile: give it back
				if c := <-ch; c != nil {
					p.put(c)
				} else {
					p.release()
				}
			}
			return nil, withCommand("wait for connection", ctx.Err())
		}
	}
}

// dialOrRelease dials on a slot already counted in open.
func (p *pool) dialOrRelease(ctx context.Context) (*conn, error) {
	p.mu.Lock()
	p.stats.Dials++
	p.mu.Unlock()
	c, err := p.dial(ctx)
	if err != nil {
		p.release()
		return nil, err
	}
	return c, nil
}

// put returns a connection after a message. A broken one is closed at
// once; a worn-out one (MaxMessagesPerConn) gets a QUIT.
func (p *pool) put(c *conn) {
	if c.broken {
		p.drop(c)
		return
	}
	if c.used < p.cfg.MaxMessagesPerConn {
		p.mu.Lock()
		if !p.closed {
			if len(p.waiters) > 0 {
				ch := p.waiters[0]
				p.waiters = p.waiters[1:]
				p.mu.Unlock()
				ch <- c
				return
			}
			if len(p.idle) < p.cfg.MaxIdle {
				c.idleSince = time.Now()
				if c.timer == nil {
					c.timer = time.AfterFunc(p.cfg.IdleTimeout, func() { p.expire(c) })
				} else {
					c.timer.Reset(p.cfg.IdleTimeout)
				}
				p.idle = append(p.idle, c)
				p.mu.Unlock()
				return
			}
		}
		p.mu.Unlock()
	}
	p.quit(c)
	p.release()
}

// drop closes a connection without QUIT.
func (p *pool) drop(c *conn) {
	c.client.Close()
	p.mu.Lock()
	p.stats.Discards++
	p.mu.Unlock()
	p.release()
}

// release gives up a closed connection's slot, to a waiter if any.
func (p *pool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open--
	if len(p.waiters) > 0 && (p.cfg.MaxConns == 0 || p.open < p.cfg.MaxConns) {
		p.open++
		ch := p.waiters[0]
		p.waiters = p.waiters[1:]
		ch <- nil
	}
}

// expire closes c if it is still idle; its timer calls it.
func (p *pool) expire(c *conn) {
	p.mu.Lock()
	i := slices.Index(p.idle, c)
	if i < 0 {
		p.mu.Unlock()
		return
	}
	p.idle = slices.Delete(p.idle, i, i+1)
	p.bg.Add(1) // not closed: Close empties idle under mu before it waits
	p.mu.Unlock()
	defer p.bg.Done()
	p.quit(c)
	p.release()
}

// close QUITs the idle connections and stops keeping any.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	for _, c := range idle {
		c.timer.Stop()
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Go(func() {
			p.quit(c)
			p.release()
		})
	}
	wg.Wait()
	p.bg.Wait()
}

// begin counts a message about to go over c.
func (p *pool) begin(c *conn) {
	if c.used > 0 {
		p.mu.Lock()
		p.stats.Reuses++
		p.mu.Unlock()
	}
	c.used++
}

func (p *pool) snapshot() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Open, s.Idle, s.Waiting = p.open, len(p.idle), len(p.waiters)
	return s
}
