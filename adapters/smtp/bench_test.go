package smtp_test

import (
	"bytes"
	"context"
	"fmt"
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

// BenchmarkSend sends one message per iteration through Sender to the
// capture server: build, connect, EHLO, MAIL, RCPT, DATA, QUIT.
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
