package gateway_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
)

// discard is an EmailSender that delivers nowhere, so the send-side
// benchmark measures blindpost's own work (resolve, policy, render).
type discard struct{ n atomic.Int64 }

func (d *discard) Send(ctx context.Context, m smtp.Message) (smtp.Result, error) {
	d.n.Add(1)
	return smtp.Result{}, nil
}

func newBenchRig(b *testing.B, email gateway.EmailSender) *rig {
	r := newRig(b, devenv.Options{
		GatewayOptions: gateway.Options{Email: email},
		// The production checkpoint cadence, not dev's sign-every-commit.
		Gateway: func(c *gateway.Config) { c.Audit.CheckpointEvery = 0 },
	})
	r.put("u-1", alex())
	return r
}

// BenchmarkAccept measures verify + open + dedupe + pre-check + durable
// enqueue, per envelope; the per-message figure is reported as ns/msg.
func BenchmarkAccept(b *testing.B) {
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			r := newBenchRig(b, nil)
			s := r.sealer()
			envs := make([]*envelope.Envelope, b.N)
			for i := range envs {
				msgs := make([]envelope.Message, size)
				for j := range msgs {
					msgs[j] = message(fmt.Sprintf("b-%d-%d", i, j), "u-1")
				}
				envs[i] = r.seal(s, msgs...)
			}
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				resp, err := r.env.Gateway.Accept(ctx, envs[i])
				if err != nil || resp.Results[0].Status != gateway.StatusAccepted {
					b.Fatalf("accept: %v %+v", err, resp)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/msg")
		})
	}
}

// BenchmarkSendSide measures resolve + policy + render for one message,
// handing the result to a discarding sender.
func BenchmarkSendSide(b *testing.B) {
	d := &discard{}
	r := newBenchRig(b, d)
	const n = 500
	for i := 0; i < n; i += 100 {
		msgs := make([]envelope.Message, 100)
		for j := range msgs {
			msgs[j] = message(fmt.Sprintf("s-%d-%d", i, j), "u-1")
		}
		accepted(b, r.send(msgs...))
	}
	ctx := context.Background()
	es, err := r.env.Gateway.Claim(ctx, n)
	if err != nil || len(es) != n {
		b.Fatalf("claim: %v (%d)", err, len(es))
	}
	b.ResetTimer()
	for i := range b.N {
		if st, reason := r.env.Gateway.Deliver(ctx, es[i%n]); st != gateway.StatusSent {
			b.Fatalf("deliver: %s %s", st, reason)
		}
	}
}
