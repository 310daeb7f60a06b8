package smtp_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/adapters/smtp/capture"
)

// benchMessage is a typical marketing email: about 10 KB of table-laid-out
// HTML with inline styles, and a short text part.
func benchMessage(b *testing.B) smtp.Message {
	b.Helper()
	var html strings.Builder
	html.WriteString(`<!DOCTYPE html><html><head><style>body{margin:0;font-family:Helvetica,Arial,sans-serif}</style></head><body><table width="100%" role="presentation">`)
	for i := 0; html.Len() < 10_000; i++ {
		fmt.Fprintf(&html, `<tr><td style="padding:12px 32px;color:#4a5568;font-size:14px;line-height:21px"><h2 style="font-size:18px;margin:0 0 8px">Tournament #%d</h2><p>Climb the leaderboard from Friday to Sunday: the top 100 players share the prize pool.</p><p><a href="https://brand.example/t/%d?utm_source=email" style="color:#2b6cb0">See the leaderboard</a></p></td></tr>`+"\n", i, i)
	}
	html.WriteString("</table></body></html>\n")
	m := testMessage()
	m.HTML = html.String()
	m.Text = strings.Repeat("Here is what happened on your account this week.\n", 20)
	return m
}

// BenchmarkSend sends one message per iteration through a Sender without a
// pool to the capture server: build, connect, EHLO, MAIL, RCPT, DATA, QUIT.
func BenchmarkSend(b *testing.B) {
	m := benchMessage(b)
	srv := startCapture(b, capture.Options{})
	s := smtp.NewSender(smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSNone, Timeout: 5 * time.Second})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Send(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawSMTP is BenchmarkSend's baseline: the same message bytes and
// the same session steps with a bare go-smtp client and no blindpost code.
func BenchmarkRawSMTP(b *testing.B) {
	m := benchMessage(b)
	raw, err := smtp.BuildMIME(m)
	if err != nil {
		b.Fatal(err)
	}
	srv := startCapture(b, capture.Options{})
	b.ReportAllocs()
	for b.Loop() {
		c, err := gosmtp.Dial(srv.Addr())
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Hello("localhost"); err != nil {
			b.Fatal(err)
		}
		if err := c.SendMail("news@brand.example", []string{"ada@example.com"}, bytes.NewReader(raw)); err != nil {
			b.Fatal(err)
		}
		c.Quit()
	}
}

// BenchmarkBuildMIME is the message-building share of BenchmarkSend.
func BenchmarkBuildMIME(b *testing.B) {
	m := benchMessage(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := smtp.BuildMIME(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendPool compares one connection per message ("dial") with a
// pool ("pool"), in plain text and with STARTTLS, one sender at a time and
// eight at once (the pool capped at four connections). The capture server
// writes every message to disk, in both.
func BenchmarkSendPool(b *testing.B) {
	m := benchMessage(b)
	cert, roots := testCert(b)
	srv := startCapture(b, capture.Options{TLSConfig: tlsServerConfig(cert)})
	for _, tlsMode := range []smtp.TLSMode{smtp.TLSNone, smtp.TLSRequire} {
		for _, mode := range []struct {
			name string
			pool smtp.PoolConfig
		}{
			{"dial", smtp.PoolConfig{}},
			{"pool", smtp.PoolConfig{MaxConns: 4, MaxIdle: 4}},
		} {
			cfg := smtp.Config{Addr: srv.Addr(), TLS: tlsMode, RootCAs: roots, Timeout: 5 * time.Second, Pool: mode.pool}
			b.Run(fmt.Sprintf("tls=%s/%s/sequential", tlsMode, mode.name), func(b *testing.B) {
				s := smtp.NewSender(cfg)
				defer s.Close()
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.Send(ctx, m); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("tls=%s/%s/parallel", tlsMode, mode.name), func(b *testing.B) {
				s := smtp.NewSender(cfg)
				defer s.Close()
				ctx := context.Background()
				b.SetParallelism(8 / runtime.GOMAXPROCS(0))
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := s.Send(ctx, m); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkPoolRatio sends b.N messages one connection per message and b.N
// through a pool, against the same server in one run, alternating batches
// of 20 so that a change in the machine's load weighs on both alike. It
// reports each one's time per message and how many times faster the pool
// is; ns/op counts both halves. With STARTTLS, each new connection costs
// a TLS handshake (ECDSA P-256) as well.
func BenchmarkPoolRatio(b *testing.B) {
	cert, roots := testCert(b)
	srv := startCapture(b, capture.Options{TLSConfig: tlsServerConfig(cert)})
	for _, mode := range []smtp.TLSMode{smtp.TLSNone, smtp.TLSRequire} {
		b.Run("tls="+string(mode), func(b *testing.B) {
			poolRatio(b, smtp.Config{Addr: srv.Addr(), TLS: mode, RootCAs: roots, Timeout: 5 * time.Second})
		})
	}
}

func poolRatio(b *testing.B, cfg smtp.Config) {
	m := benchMessage(b)
	ctx := context.Background()
	newSender := func(pc smtp.PoolConfig) *smtp.Sender {
		cfg := cfg
		cfg.Pool = pc
		s := smtp.NewSender(cfg)
		b.Cleanup(func() { s.Close() })
		if _, err := s.Send(ctx, m); err != nil { // warm: the pool's first dial is not the point
			b.Fatal(err)
		}
		return s
	}
	dialer, pooled := newSender(smtp.PoolConfig{}), newSender(smtp.PoolConfig{MaxConns: 1, MaxIdle: 1})
	var dialTime, poolTime time.Duration
	batch := func(s *smtp.Sender, n int) time.Duration {
		start := time.Now()
		for range n {
			if _, err := s.Send(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for done := 0; done < b.N; done += 20 {
		n := min(20, b.N-done)
		dialTime += batch(dialer, n)
		poolTime += batch(pooled, n)
	}
	b.ReportMetric(float64(dialTime.Nanoseconds())/float64(b.N), "dial-ns/msg")
	b.ReportMetric(float64(poolTime.Nanoseconds())/float64(b.N), "pool-ns/msg")
	b.ReportMetric(float64(dialTime)/float64(poolTime), "speedup")
}

// BenchmarkBuildMIMEDKIM is the cost of signing on top of BenchmarkBuildMIME.
func BenchmarkBuildMIMEDKIM(b *testing.B) {
	for _, k := range dkimKeys(b) {
		b.Run(k.name, func(b *testing.B) {
			m := benchMessage(b)
			m.ListUnsubscribe, m.ListUnsubscribePost = "https://brand.example/u/abc", true
			m.DKIM = &smtp.DKIM{Domain: "brand.example", Selector: "bp1", Signer: k.signer}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := smtp.BuildMIME(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
