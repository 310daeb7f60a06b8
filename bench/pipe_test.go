// Package bench measures blindpost against its baselines in one run
// (DESIGN.md §10). It holds only benchmarks and their fixtures.
//
// It sits on both sides of the trust boundary at once: it plays the vendor's
// core (sealing envelopes with the core's key) and the operator's mail relay
// (the capture server), with a whole dev gateway in between. The one record
// it puts in the vault is a test fixture (@example.com); its logs hold
// throughput figures only.
package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/gateway/admin"
	"github.com/blindpost/blindpost/gateway/render"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/vault"
)

const (
	benchUser = "bench-1"
	// batchSize is how many messages one envelope carries.
	batchSize = 100
	// warmup messages go through a pipeline, untimed, before it is measured.
	warmup = 10
)

// runID keeps message ids unique across the runs of one process, so the
// gateway's de-duplication never drops a benchmark message.
var runID atomic.Int64

// template is what every benchmark sends: a transactional email of about
// 3 KB of HTML and a short text part, personalised with {{pii.first_name}}.
func template() render.Template {
	var h strings.Builder
	h.WriteString(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>Your account</title></head>` +
		`<body style="margin:0;background:#f4f5f7;font-family:Helvetica,Arial,sans-serif">` +
		`<table width="100%" role="presentation" cellpadding="0" cellspacing="0">` +
		`<tr><td style="padding:24px 32px;font-size:20px;color:#1a202c">Hello <b>{{pii.first_name}}</b>,</td></tr>` + "\n")
	for i := 1; h.Len() < 2900; i++ {
		fmt.Fprintf(&h, `<tr><td style="padding:8px 32px;color:#4a5568;font-size:14px;line-height:21px">`+
			`<p>Step %d: someone asked to reset the password of your account. If it was you, follow the link below; `+
			`it works once and expires in 30 minutes.</p></td></tr>`+"\n", i)
	}
	h.WriteString(`<tr><td style="padding:16px 32px"><a href="https://casino.example.com/reset" ` +
		`style="background:#2b6cb0;color:#fff;padding:10px 18px;text-decoration:none">Reset my password</a></td></tr>` +
		`<tr><td style="padding:16px 32px;color:#718096;font-size:12px">Thanks, {{pii.first_name}}. Example Casino</td></tr>` +
		"</table></body></html>\n")
	return render.Template{
		Subject: "Reset your password, {{pii.first_name}}",
		HTML:    h.String(),
		Text: "Hello {{pii.first_name}},\n\nSomeone asked to reset the password of your account. If it was you,\n" +
			"visit https://casino.example.com/reset within 30 minutes. If it was not, ignore this email.\n\n" +
			"Thanks, {{pii.first_name}}.\nExample Casino\n",
	}
}

// record is the one subject every gateway message goes to.
func record() vault.Record {
	return vault.Record{Email: "ada.bench@example.com", FirstName: "Adalind", Country: "MT",
		Timezone: "Europe/Malta", Consents: map[string]bool{"marketing_email": true}}
}

// rendered is template() as the gateway renders it for record(): the
// message the baseline sends is the one the gateway sends.
func rendered(tb testing.TB) render.Template {
	tb.Helper()
	rec := record()
	out, err := render.Render(template(), func(string) bool { return true }, rec.Field)
	if err != nil {
		tb.Fatalf("render: %v", err)
	}
	return out
}

// gatewaySMTP returns the SMTP client settings and the send worker count of
// the dev gateway, pointed at addr, so the baseline is the gateway's own
// client with blindpost taken out.
func gatewaySMTP(addr string) (smtp.Config, int) {
	cfg := devenv.Config("", addr, "")
	return smtp.Config{
		Addr:     addr,
		HeloName: cfg.SMTP.Helo,
		TLS:      smtp.TLSMode(cfg.SMTP.TLS),
		Timeout:  time.Duration(cfg.SMTP.Timeout),
		Pool: smtp.PoolConfig{MaxConns: cfg.SMTP.Pool.MaxConns, MaxIdle: cfg.SMTP.Pool.MaxIdle,
			IdleTimeout: time.Duration(cfg.SMTP.Pool.IdleTimeout), MaxMessagesPerConn: cfg.SMTP.Pool.MaxMessagesPerConn},
	}, cfg.Send.Workers
}

// rawMessages returns n copies of the rendered message, each with its own
// Message-ID as the gateway gives them.
func rawMessages(tb testing.TB, n int) []smtp.Message {
	tb.Helper()
	t := rendered(tb)
	run := runID.Add(1)
	msgs := make([]smtp.Message, n)
	for i := range msgs {
		msgs[i] = smtp.Message{
			From: devenv.From, To: record().Email,
			Subject: t.Subject, HTML: t.HTML, Text: t.Text,
			MessageID: fmt.Sprintf("<raw-%d-%d@example.com>", run, i),
		}
	}
	return msgs
}

// sendRaw sends msgs through s from workers goroutines, each message on its
// own connection as the gateway's workers do.
func sendRaw(ctx context.Context, s *smtp.Sender, msgs []smtp.Message, workers int) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(msgs) {
					return
				}
				if _, err := s.Send(ctx, msgs[i]); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("raw send %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// gatewayRig is a running dev gateway with its workers on, the one subject
// registered, and the core's side ready to seal.
type gatewayRig struct {
	env     *devenv.Env
	client  *http.Client
	sealer  *envelope.Sealer
	token   string // the subject's email token
	workers int
}

func startGateway(tb testing.TB) *gatewayRig {
	tb.Helper()
	ctx := context.Background()
	env, err := devenv.Start(ctx, tb.TempDir(), devenv.Options{
		Logger: slog.New(slog.DiscardHandler),
		// The production checkpoint cadence, not dev's sign-every-commit.
		Gateway: func(c *gateway.Config) { c.Audit.CheckpointEvery = 0 },
	})
	if err != nil {
		tb.Fatalf("start dev gateway: %v", err)
	}
	r := &gatewayRig{env: env}
	tb.Cleanup(func() {
		if r.client != nil {
			r.client.CloseIdleConnections()
		}
		env.Close()
	})
	tok, err := env.Info.AdminToken()
	if err != nil {
		tb.Fatal(err)
	}
	ad := &admin.Client{BaseURL: env.Info.AdminURL, Token: tok, HTTP: &http.Client{Timeout: 10 * time.Second}}
	sub, err := ad.Put(ctx, devenv.Brand, benchUser, record())
	if err != nil {
		tb.Fatalf("put subject: %v", err)
	}
	r.token = sub.Tokens[vault.KindEmail]
	if r.client, err = env.Info.HTTPClient(); err != nil {
		tb.Fatal(err)
	}
	key, err := envelope.LoadSigningKey(env.Info.CoreSigningKey)
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := envelope.LoadRecipientPublicKey(env.Info.GatewayHPKEPub)
	if err != nil {
		tb.Fatal(err)
	}
	r.sealer = &envelope.Sealer{Key: key, Recipient: pub, Rand: rand.Reader, Now: time.Now}
	_, r.workers = gatewaySMTP(env.Info.SMTPAddr)
	return r
}

// seal builds n messages, every other one addressed by token, in envelopes
// of batchSize, sealed and signed as the core does.
func (r *gatewayRig) seal(tb testing.TB, n int) []*envelope.Envelope {
	tb.Helper()
	t := template()
	run := runID.Add(1)
	var envs []*envelope.Envelope
	for start := 0; start < n; start += batchSize {
		raws := make([]json.RawMessage, 0, batchSize)
		for i := start; i < min(n, start+batchSize); i++ {
			m := envelope.Message{
				ID: fmt.Sprintf("bench-%d-%d", run, i), Tenant: devenv.Tenant, Brand: devenv.Brand,
				Channel: "email", Category: "transactional", Purpose: "password_reset",
				To:   envelope.Recipient{Subject: benchUser},
				From: devenv.From, Subject: t.Subject, HTML: t.HTML, Text: t.Text,
			}
			if i%2 == 1 {
				m.To = envelope.Recipient{Token: r.token}
			}
			b, err := json.Marshal(m)
			if err != nil {
				tb.Fatal(err)
			}
			raws = append(raws, b)
		}
		env, err := r.sealer.Seal(devenv.Tenant, raws)
		if err != nil {
			tb.Fatalf("seal: %v", err)
		}
		envs = append(envs, env)
	}
	return envs
}

// deliver posts envs, which hold n messages, and returns once the capture
// server has received all n. It polls the count every millisecond: that
// poll is the only wait in the timed section.
func (r *gatewayRig) deliver(ctx context.Context, envs []*envelope.Envelope, n int) error {
	want := r.env.Capture.Count() + n
	for _, e := range envs {
		resp, err := devenv.PostEnvelope(ctx, r.client, r.env.Info.MessageURL, e)
		if err != nil {
			return fmt.Errorf("post: %w", err)
		}
		for _, res := range resp.Results {
			if res.Status != gateway.StatusAccepted {
				return fmt.Errorf("message %s: %s %s", res.ID, res.Status, res.Code)
			}
		}
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30*time.Second + time.Duration(n)*50*time.Millisecond)
	for r.env.Capture.Count() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("capture server has %d of %d messages after the deadline; callbacks by status: %v",
				n-(want-r.env.Capture.Count()), n, r.statuses())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// statuses counts the callbacks received so far by status, for errors.
func (r *gatewayRig) statuses() map[string]int {
	out := map[string]int{}
	for _, p := range r.env.Core.Received() {
		out[p.Status]++
	}
	return out
}

// warm sends a few messages through the gateway, untimed, so the first
// measured message does not pay for cold caches and connections.
func (r *gatewayRig) warm(tb testing.TB) {
	tb.Helper()
	if err := r.deliver(context.Background(), r.seal(tb, warmup), warmup); err != nil {
		tb.Fatalf("warm-up: %v", err)
	}
}

// checkMail proves a captured mail is the rendered message: placeholders
// replaced with the record's first name. It runs after the timed section.
func (r *gatewayRig) checkMail(tb testing.TB) {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(r.env.Info.MailDir, "*.eml"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no captured mail (%v)", err)
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		tb.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		tb.Fatalf("captured mail: %v", err)
	}
	want := rendered(tb).Subject
	if got := m.Header.Get("Subject"); got != want || bytes.Contains(b, []byte("{{pii.")) {
		tb.Fatalf("captured mail is not the rendered message (subject matches: %v)", got == want)
	}
}

// reportRate reports msgs/s and ns/msg over the timed section.
func reportRate(b *testing.B, n int) {
	el := b.Elapsed()
	if el <= 0 || n == 0 {
		return
	}
	b.ReportMetric(float64(n)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(el.Nanoseconds())/float64(n), "ns/msg")
}
