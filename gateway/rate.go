package gateway

import (
	"context"
	"sync"
	"time"
)

// volumeCounter counts a tenant's requests over the last minute for the
// volume guard: rateWindow on one node, the shared queue on a cluster (so
// the limit does not multiply by the number of nodes).
type volumeCounter interface {
	// AddVolume counts n requests of tenant at now and returns the total
	// over the minute ending at now.
	AddVolume(ctx context.Context, tenant string, now time.Time, n int) (int, error)
}

// rateWindow counts requests per tenant over the last minute, in one-second
// buckets: the volume guard's input. It is per node; several nodes need the
// shared counters of the PostgreSQL backend.
type rateWindow struct {
	mu      sync.Mutex
	tenants map[string]*[60]bucket
}

type bucket struct {
	second int64
	n      int
}

// AddVolume implements volumeCounter.
func (w *rateWindow) AddVolume(_ context.Context, tenant string, now time.Time, n int) (int, error) {
	return w.add(tenant, now, n), nil
}

// add counts n requests for tenant at now and returns the total over the
// minute ending at now.
func (w *rateWindow) add(tenant string, now time.Time, n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tenants == nil {
		w.tenants = map[string]*[60]bucket{}
	}
	bs := w.tenants[tenant]
	if bs == nil {
		bs = new([60]bucket)
		w.tenants[tenant] = bs
	}
	sec := now.Unix()
	b := &bs[sec%60]
	if b.second != sec {
		*b = bucket{second: sec}
	}
	b.n += n
	total := 0
	for _, b := range bs {
		if sec-b.second < 60 {
			total += b.n
		}
	}
	return total
}
