package gateway

import (
	"context"

	"github.com/blindpost/blindpost/gateway/queue"
)

// Deliver exposes the send half for one claimed entry to benchmarks,
// without the queue bookkeeping around it.
func (g *Gateway) Deliver(ctx context.Context, e queue.Entry) (status, reason string) {
	o, _, _ := g.deliver(ctx, e)
	return o.status, o.reason
}

// Claim exposes the queue's claim to benchmarks.
func (g *Gateway) Claim(ctx context.Context, n int) ([]queue.Entry, error) {
	return g.queue.Claim(ctx, n, 0)
}
