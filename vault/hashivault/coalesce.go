package hashivault

import (
	"context"
	"errors"
	"sync"
)

// coalescer turns concurrent single calls (Wrap, Unwrap, TokenMAC) into
// batch requests. Per tenant and operation at most max requests are in
// flight; a call that arrives while all of them are busy waits, and the
// next free slot sends every waiting call (up to size) as one batch_input
// request. An idle provider therefore sends each call at once, alone,
// adding no latency; a busy one sends fewer, larger requests, which is
// what a Transit server handles best (one request of 256 decrypts costs
// little more than one of a single decrypt).
type coalescer struct {
	max, size int

	mu sync.Mutex
	qs map[batchKey]*queue
}

type batchKey struct {
	op      string
	tenant  string
	version int
}

type queue struct {
	pending  []*call
	inflight int
}

type call struct {
	item Item
	res  Result
	done chan struct{}
}

// sendFunc sends one batch and returns one result per item, or an error
// for all of them.
type sendFunc func(ctx context.Context, items []Item) ([]Result, error)

func newCoalescer(max, size int) *coalescer {
	return &coalescer{max: max, size: size, qs: map[batchKey]*queue{}}
}

// do queues it and waits for its result, or for ctx.
func (c *coalescer) do(ctx context.Context, k batchKey, it Item, send sendFunc) (Result, error) {
	cl := &call{item: it, done: make(chan struct{})}
	c.mu.Lock()
	q := c.qs[k]
	if q == nil {
		q = &queue{}
		c.qs[k] = q
	}
	q.pending = append(q.pending, cl)
	if q.inflight < c.max {
		q.inflight++
		batch := c.take(q)
		go c.run(k, q, batch, send)
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.res, nil
	case <-ctx.Done():
		// The batch goes on without this caller; its result is dropped.
		return Result{}, ctx.Err()
	}
}

// take removes up to size calls from q; c.mu is held.
func (c *coalescer) take(q *queue) []*call {
	n := min(len(q.pending), c.size)
	batch := make([]*call, n)
	copy(batch, q.pending)
	q.pending = q.pending[n:]
	if len(q.pending) == 0 {
		q.pending = nil // let the backing array go
	}
	return batch
}

// run sends batches for k until none is waiting, then frees its slot. The
// requests run under their own deadline (Config.Timeout), not a caller's:
// a batch serves many callers, and one leaving must not cancel it.
func (c *coalescer) run(k batchKey, q *queue, batch []*call, send sendFunc) {
	for {
		items := make([]Item, len(batch))
		for i, cl := range batch {
			items[i] = cl.item
		}
		res, err := send(context.Background(), items)
		for i, cl := range batch {
			switch {
			case err != nil:
				cl.res = Result{Err: err}
			case i < len(res):
				cl.res = res[i]
			default:
				cl.res = Result{Err: badReply(k.op, "", errors.New("missing batch result"))}
			}
			close(cl.done)
		}
		c.mu.Lock()
		if len(q.pending) == 0 {
			q.inflight--
			if q.inflight == 0 {
				delete(c.qs, k)
			}
			c.mu.Unlock()
			return
		}
		batch = c.take(q)
		c.mu.Unlock()
	}
}
