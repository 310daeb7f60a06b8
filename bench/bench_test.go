package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/adapters/smtp/capture"
)

// BenchmarkRawSMTPPipe is the baseline: the rendered message the gateway
// would send, sent with the gateway's SMTP client settings
// (adapters/smtp.Sender, one connection per message) to a capture server,
// with no blindpost code in between. One op is one delivered message.
func BenchmarkRawSMTPPipe(b *testing.B) {
	srv, err := capture.Listen("127.0.0.1:0", b.TempDir(), capture.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	cfg, workers := gatewaySMTP(srv.Addr())
	sender := smtp.NewSender(cfg)
	ctx := context.Background()
	if err := sendRaw(ctx, sender, rawMessages(b, warmup), 1); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	for _, w := range []int{1, workers} {
		name := "sequential"
		if w > 1 {
			name = fmt.Sprintf("workers=%d", w)
		}
		b.Run(name, func(b *testing.B) {
			msgs := rawMessages(b, b.N)
			runtime.GC()
			b.ResetTimer()
			if err := sendRaw(ctx, sender, msgs, w); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			reportRate(b, b.N)
		})
	}
}

// BenchmarkGatewayEndToEnd posts envelopes of 100 messages, sealed and
// signed ahead of time, to a running dev gateway over TLS; the clock stops
// when the capture server has received every message. Between the two: open,
// verify, de-duplicate, pre-check, durable enqueue, resolve from the vault,
// policy, render, SMTP, and the status callbacks. One op is one delivered
// message.
func BenchmarkGatewayEndToEnd(b *testing.B) {
	r := startGateway(b)
	r.warm(b)
	envs := r.seal(b, b.N)
	runtime.GC()
	b.ResetTimer()
	if err := r.deliver(context.Background(), envs, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportRate(b, b.N)
	r.checkMail(b)
}

// BenchmarkRatio runs both pipelines back to back in one process, b.N
// messages each, against the same capture server with the same worker
// count, and reports gateway throughput as a fraction of the raw pipe's.
// Run it with a fixed count: -bench Ratio -benchtime 2000x.
func BenchmarkRatio(b *testing.B) {
	r := startGateway(b)
	cfg, _ := gatewaySMTP(r.env.Info.SMTPAddr)
	sender := smtp.NewSender(cfg)
	ctx := context.Background()
	if err := sendRaw(ctx, sender, rawMessages(b, warmup), r.workers); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	r.warm(b)
	raw := rawMessages(b, b.N)
	envs := r.seal(b, b.N)

	runtime.GC()
	b.ResetTimer()
	start := time.Now()
	if err := sendRaw(ctx, sender, raw, r.workers); err != nil {
		b.Fatal(err)
	}
	rawDur := time.Since(start)
	start = time.Now()
	if err := r.deliver(ctx, envs, b.N); err != nil {
		b.Fatal(err)
	}
	gwDur := time.Since(start)
	b.StopTimer()
	r.checkMail(b)

	rawRate := float64(b.N) / rawDur.Seconds()
	gwRate := float64(b.N) / gwDur.Seconds()
	b.ReportMetric(gwRate/rawRate, "ratio")
	b.ReportMetric(gwRate, "gateway-msgs/s")
	b.ReportMetric(rawRate, "raw-msgs/s")
	if b.N > 1 { // the framework's first probe, b.N=1, says nothing
		b.Logf("gateway/raw-smtp ratio = %.2f (gateway %.0f msg/s, raw %.0f msg/s, %d messages each, %d workers, machine: %d cores, %s/%s)",
			gwRate/rawRate, gwRate, rawRate, b.N, r.workers, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	}
}
