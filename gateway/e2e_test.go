package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/gateway/admin"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/vault"
)

// syncBuffer collects the gateway's logs so tests can scan them for PII.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rig is a dev environment whose workers the test drives by hand, so the
// test decides what happens between acceptance and sending.
type rig struct {
	t    testing.TB
	dir  string
	env  *devenv.Env
	in   *devenv.Info
	ad   *admin.Client
	logs *syncBuffer
	opts devenv.Options
}

func newRig(t testing.TB, opts devenv.Options) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), logs: &syncBuffer{}, opts: opts}
	r.start()
	return r
}

func (r *rig) start() {
	r.t.Helper()
	opts := r.opts
	opts.Logger = slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Manual = true
	env, err := devenv.Start(context.Background(), r.dir, opts)
	if err != nil {
		r.t.Fatalf("start dev env: %v", err)
	}
	r.env, r.in = env, &env.Info
	tok, err := r.in.AdminToken()
	if err != nil {
		r.t.Fatal(err)
	}
	r.ad = &admin.Client{BaseURL: r.in.AdminURL, Token: tok, HTTP: &http.Client{Timeout: 10 * time.Second}}
	r.t.Cleanup(func() { r.stop() })
}

func (r *rig) stop() {
	if r.env != nil {
		r.env.Close()
		r.env = nil
	}
}

// restart stops the gateway and starts it again on the same directory.
func (r *rig) restart() {
	r.t.Helper()
	r.stop()
	r.start()
}

func (r *rig) put(user string, rec vault.Record) *admin.PutResult {
	r.t.Helper()
	s, err := r.ad.Put(context.Background(), devenv.Brand, user, rec)
	if err != nil {
		r.t.Fatalf("put %s: %v", user, err)
	}
	return s
}

func (r *rig) sealer() *envelope.Sealer {
	r.t.Helper()
	key, err := envelope.LoadSigningKey(r.in.CoreSigningKey)
	if err != nil {
		r.t.Fatal(err)
	}
	pub, err := envelope.LoadRecipientPublicKey(r.in.GatewayHPKEPub)
	if err != nil {
		r.t.Fatal(err)
	}
	return &envelope.Sealer{Key: key, Recipient: pub, Rand: rand.Reader, Now: time.Now}
}

func (r *rig) seal(s *envelope.Sealer, msgs ...envelope.Message) *envelope.Envelope {
	r.t.Helper()
	raws := make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		b, err := json.Marshal(m)
		if err != nil {
			r.t.Fatal(err)
		}
		raws[i] = b
	}
	env, err := s.Seal(r.in.Tenant, raws)
	if err != nil {
		r.t.Fatalf("seal: %v", err)
	}
	return env
}

func (r *rig) post(env *envelope.Envelope) (*gateway.Response, error) {
	r.t.Helper()
	client, err := r.in.HTTPClient()
	if err != nil {
		r.t.Fatal(err)
	}
	return devenv.PostEnvelope(context.Background(), client, r.in.MessageURL, env)
}

func (r *rig) send(msgs ...envelope.Message) *gateway.Response {
	r.t.Helper()
	resp, err := r.post(r.seal(r.sealer(), msgs...))
	if err != nil {
		r.t.Fatalf("post: %v", err)
	}
	return resp
}

// drain runs the send workers and the callback poster until both are idle.
func (r *rig) drain() {
	r.t.Helper()
	ctx := context.Background()
	for range 100 {
		n, err := r.env.Gateway.SendDue(ctx, 10)
		if err != nil {
			r.t.Fatalf("send: %v", err)
		}
		m := r.env.Gateway.PostCallbacks(ctx, 50)
		if n == 0 && m == 0 {
			return
		}
	}
	r.t.Fatal("queue did not drain")
}

func (r *rig) callback(id string) (status, reason string) {
	r.t.Helper()
	for _, p := range r.env.Core.Received() {
		if p.ID == id {
			status, reason = p.Status, p.Reason
		}
	}
	return status, reason
}

func (r *rig) mails() []*mail.Message {
	r.t.Helper()
	paths, _ := filepath.Glob(filepath.Join(r.in.MailDir, "*.eml"))
	var out []*mail.Message
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			r.t.Fatal(err)
		}
		m, err := mail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			r.t.Fatalf("captured mail %s: %v", p, err)
		}
		out = append(out, m)
	}
	return out
}

const (
	alexEmail = "alex.e2e@example.com"
	alexName  = "Alexandrina"
)

func alex() vault.Record {
	return vault.Record{Email: alexEmail, FirstName: alexName, Country: "MT", Timezone: "Europe/Malta",
		Consents: map[string]bool{"marketing_email": true}}
}

func message(id, user string) envelope.Message {
	return envelope.Message{
		ID: id, Tenant: devenv.Tenant, Brand: devenv.Brand, Channel: "email",
		Category: "transactional", Purpose: "password_reset",
		To:      envelope.Recipient{Subject: user},
		From:    "Example Casino <news@example.com>",
		Subject: "Reset your password, {{pii.first_name}}",
		HTML:    `<p>Hello <b>{{pii.first_name}}</b>, <a href="https://casino.example.com/reset">reset</a>.</p>`,
		Text:    "Hello {{pii.first_name}}, visit https://casino.example.com/reset",
	}
}

func accepted(t testing.TB, resp *gateway.Response) []string {
	t.Helper()
	var ids []string
	for _, r := range resp.Results {
		if r.Status != gateway.StatusAccepted {
			t.Fatalf("message %s: %s %s %s", r.ID, r.Status, r.Code, r.Message)
		}
		ids = append(ids, r.ExtMessageID)
	}
	return ids
}

func TestEndToEndDeliveredOverSMTP(t *testing.T) {
	r := newRig(t, devenv.Options{})
	sub := r.put("u-1", alex())
	byToken := message("m-token", "")
	byToken.To = envelope.Recipient{Token: sub.Tokens["email"]}
	ext := accepted(t, r.send(message("m-subject", "u-1"), byToken))
	r.drain()

	mails := r.mails()
	if len(mails) != 2 {
		t.Fatalf("SMTP server received %d mails, want 2", len(mails))
	}
	for _, m := range mails {
		if got := m.Header.Get("To"); !strings.Contains(got, alexEmail) {
			t.Errorf("To = %q, want the record's address", got)
		}
		if got := m.Header.Get("Subject"); got != "Reset your password, "+alexName {
			t.Errorf("Subject = %q", got)
		}
		id := m.Header.Get("Message-ID")
		if !strings.HasPrefix(id, "<"+ext[0]+"@") && !strings.HasPrefix(id, "<"+ext[1]+"@") {
			t.Errorf("Message-ID %q is not derived from the ext_message_id", id)
		}
		body, _ := io.ReadAll(m.Body)
		if !bytes.Contains(body, []byte(alexName)) {
			t.Errorf("body not personalised")
		}
	}
	for _, id := range []string{"m-subject", "m-token"} {
		if st, _ := r.callback(id); st != gateway.StatusSent {
			t.Errorf("callback for %s = %q, want sent", id, st)
		}
	}
}

func TestForgedOrStaleEnvelopesAreRejectedAndNothingIsDelivered(t *testing.T) {
	r := newRig(t, devenv.Options{})
	r.put("u-1", alex())
	other, err := envelope.GenerateSigningKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	replayed := r.seal(r.sealer(), message("m-replay", "u-1"))
	if _, err := r.post(replayed); err != nil {
		t.Fatalf("first post of the replayed envelope: %v", err)
	}

	cases := []struct {
		name string
		env  func() *envelope.Envelope
		code string
	}{
		{"forged signature", func() *envelope.Envelope {
			s := r.sealer()
			good := r.seal(s, message("m-forged", "u-1"))
			s.Key = &envelope.SigningKey{ID: s.Key.ID, Private: other.Private}
			forged := r.seal(s, message("m-forged", "u-1"))
			forged.KidSender = good.KidSender
			return forged
		}, "bad_signature"},
		{"tampered ciphertext", func() *envelope.Envelope {
			e := r.seal(r.sealer(), message("m-ct", "u-1"))
			e.CT[len(e.CT)/2] ^= 1
			return e
		}, "bad_signature"},
		{"tampered header", func() *envelope.Envelope {
			e := r.seal(r.sealer(), message("m-hdr", "u-1"))
			e.TS++
			return e
		}, "bad_signature"},
		{"replayed nonce", func() *envelope.Envelope { return replayed }, "replay"},
		{"stale timestamp", func() *envelope.Envelope {
			s := r.sealer()
			s.Now = func() time.Time { return time.Now().Add(-6 * time.Minute) }
			return r.seal(s, message("m-stale", "u-1"))
		}, "stale"},
		{"future timestamp", func() *envelope.Envelope {
			s := r.sealer()
			s.Now = func() time.Time { return time.Now().Add(6 * time.Minute) }
			return r.seal(s, message("m-future", "u-1"))
		}, "stale"},
		{"unknown sender key id", func() *envelope.Envelope {
			s := r.sealer()
			s.Key = other
			return r.seal(s, message("m-unpinned", "u-1"))
		}, "unknown_key"},
		{"unknown recipient key id", func() *envelope.Envelope {
			e := r.seal(r.sealer(), message("m-kid", "u-1"))
			e.KidRecipient = "00000000deadbeef"
			return e
		}, "unknown_key"},
		// (A message whose tenant differs from its envelope's cannot even be
		// sealed by our Sealer; the Opener's own check is proven in
		// envelope's batch tests with hand-built plaintexts.)
		{"core key used for a tenant it is not pinned for", func() *envelope.Envelope {
			m := message("m-tenant", "u-1")
			m.Tenant = "someone-else"
			raw, _ := json.Marshal(m)
			e, err := r.sealer().Seal("someone-else", []json.RawMessage{raw})
			if err != nil {
				t.Fatal(err)
			}
			return e
		}, "unknown_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.post(tc.env())
			var he *devenv.HTTPError
			if !errors.As(err, &he) || he.Code != tc.code {
				t.Fatalf("post: %v, want error code %q", err, tc.code)
			}
		})
	}
	r.drain()
	if n := r.env.Capture.Count(); n != 1 {
		t.Fatalf("SMTP server received %d mails, want only the one legitimate first post", n)
	}
}

func TestOptedOutSubjectIsDeniedWithCallback(t *testing.T) {
	r := newRig(t, devenv.Options{})
	rec := alex()
	rec.OptOuts = map[string]bool{"core_is_email_disabled_by_platform": true}
	r.put("u-out", rec)
	accepted(t, r.send(message("m-out", "u-out")))
	r.drain()
	if n := r.env.Capture.Count(); n != 0 {
		t.Fatalf("opted-out subject received %d mails", n)
	}
	if st, reason := r.callback("m-out"); st != gateway.StatusDenied || !strings.Contains(reason, "opted_out") {
		t.Fatalf("callback = %q %q, want denied opted_out", st, reason)
	}
}

func TestOptOutAfterAcceptanceBeforeSendingIsNotSent(t *testing.T) {
	r := newRig(t, devenv.Options{})
	r.put("u-1", alex())
	accepted(t, r.send(message("m-late-optout", "u-1")))
	rec := alex()
	rec.OptOuts = map[string]bool{"core_is_email_disabled_by_platform": true}
	r.put("u-1", rec)
	r.drain()
	if n := r.env.Capture.Count(); n != 0 {
		t.Fatalf("sent %d mails to a subject who opted out before sending", n)
	}
	if st, _ := r.callback("m-late-optout"); st != gateway.StatusDenied {
		t.Fatalf("callback = %q, want denied", st)
	}
}

func TestErasedSubjectMessagesEndUnknownRecipient(t *testing.T) {
	r := newRig(t, devenv.Options{})
	r.put("u-1", alex())
	accepted(t, r.send(message("m-erased", "u-1")))
	if err := r.ad.Erase(context.Background(), devenv.Brand, "u-1"); err != nil {
		t.Fatal(err)
	}
	r.drain()
	if n := r.env.Capture.Count(); n != 0 {
		t.Fatalf("sent %d mails to an erased subject", n)
	}
	if st, _ := r.callback("m-erased"); st != gateway.StatusUnknownRecipient {
		t.Fatalf("callback = %q, want unknown_recipient", st)
	}
}

func TestNoOrBrokenPolicyBundleRefusesToStart(t *testing.T) {
	for name, bundle := range map[string]fstest.MapFS{
		"no bundle":     {},
		"broken bundle": {"x.rego": {Data: []byte("package blindpost.gateway\n\ndecision := {")}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := devenv.Start(context.Background(), t.TempDir(), devenv.Options{
				Manual: true, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
				GatewayOptions: gateway.Options{Policy: bundle},
			})
			if err == nil {
				t.Fatal("gateway started without a valid policy bundle")
			}
		})
	}
}

// A bundle that decides at acceptance but fails at send time: the message
// waits in the queue, nothing is sent.
func TestPolicyFailureAtSendTimeSendsNothing(t *testing.T) {
	bundle := fstest.MapFS{"p.rego": {Data: []byte(`package blindpost.gateway

decision := {"allow": true, "reasons": [], "obligations": {}} if input.stage == "accept"

decision := {"allow": true, "reasons": [], "obligations": {}} if {
	input.stage == "send"
	1 / 0 == 1
}
`)}}
	r := newRig(t, devenv.Options{GatewayOptions: gateway.Options{Policy: bundle}})
	r.put("u-1", alex())
	accepted(t, r.send(message("m-policy-down", "u-1")))
	r.drain()
	if n := r.env.Capture.Count(); n != 0 {
		t.Fatalf("sent %d mails while the policy could not decide", n)
	}
	if st, reason := r.callback("m-policy-down"); st != gateway.StatusDeferred || reason != "policy_unavailable" {
		t.Fatalf("callback = %q %q, want deferred policy_unavailable", st, reason)
	}
}

func TestPlaceholdersAndHeaderInjectionAreRejected(t *testing.T) {
	r := newRig(t, devenv.Options{})
	r.put("u-1", alex())
	cases := []struct {
		name   string
		modify func(*envelope.Message)
	}{
		{"unknown field", func(m *envelope.Message) { m.Text = "Hi {{pii.shoe_size}}" }},
		{"forbidden field for marketing", func(m *envelope.Message) {
			m.Category, m.Purpose = "marketing", "promotion"
			m.Text = "Your address {{pii.email}}"
		}},
		{"placeholder in an attribute", func(m *envelope.Message) {
			m.HTML = `<p title="{{pii.first_name}}">hi</p>`
		}},
		{"placeholder in a URL", func(m *envelope.Message) {
			m.HTML = `<img src="https://tracker.example.com/p.gif?e={{pii.email}}">`
		}},
		{"placeholder in a style", func(m *envelope.Message) {
			m.HTML = `<style>p{background:url(https://x.example.com/{{pii.email}})}</style><p>hi</p>`
		}},
		{"CR/LF in the subject", func(m *envelope.Message) {
			m.Subject = "Hello\r\nBcc: victim@example.com"
		}},
		{"CR/LF in from", func(m *envelope.Message) {
			m.From = "news@example.com\r\nBcc: victim@example.com"
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := message("m-bad-"+string(rune('a'+i)), "u-1")
			tc.modify(&m)
			resp := r.send(m)
			if got := resp.Results[0]; got.Status != gateway.StatusRejected {
				// Accepted at the door is acceptable only if the send half
				// then refuses it.
				r.drain()
				if st, _ := r.callback(m.ID); st != gateway.StatusFailed && st != gateway.StatusDenied {
					t.Fatalf("accepted as %+v, then %q", got, st)
				}
			}
		})
	}
	r.drain()
	if n := r.env.Capture.Count(); n != 0 {
		t.Fatalf("SMTP server received %d mails, want none", n)
	}
}

func TestRepeatedIDSameContentGetsFirstAnswerOtherContentConflicts(t *testing.T) {
	r := newRig(t, devenv.Options{})
	r.put("u-1", alex())
	m := message("m-dup", "u-1")
	first := accepted(t, r.send(m))
	again := r.send(m)
	if got := again.Results[0]; got.Status != gateway.StatusAccepted || got.ExtMessageID != first[0] || !got.Duplicate {
		t.Fatalf("repeat = %+v, want the first answer", got)
	}
	m.Text = "different content"
	if got := r.send(m).Results[0]; got.Status != gateway.StatusRejected || got.Code != "conflict" {
		t.Fatalf("conflicting repeat = %+v, want rejected conflict", got)
	}
	r.drain()
	if n := r.env.Capture.Count(); n != 1 {
		t.Fatalf("SMTP server received %d mails, want 1", n)
	}
}

func TestRestartBetweenAcceptAndSendDeliversOnce(t *testing.T) {
	r := newRig(t, devenv.Options{})
	r.put("u-1", alex())
	accepted(t, r.send(message("m-restart", "u-1")))
	r.restart()
	r.drain()
	var n int
	for _, m := range r.mails() {
		if strings.Contains(m.Header.Get("Subject"), alexName) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("delivered %d times after a restart, want once", n)
	}
	if st, _ := r.callback("m-restart"); st != gateway.StatusSent {
		t.Fatalf("callback = %q, want sent", st)
	}
}

// Invariants 2 and 9: the queue, the vault file, the logs, the metrics and
// the callbacks hold no test subject's email or name in clear.
func TestNoPIIInQueueLogsMetricsOrCallbacks(t *testing.T) {
	r := newRig(t, devenv.Options{})
	r.put("u-1", alex())
	denied := alex()
	denied.Email, denied.OptOuts = "opted.e2e@example.com", map[string]bool{"core_is_email_disabled_by_platform": true}
	r.put("u-2", denied)
	accepted(t, r.send(message("m-1", "u-1"), message("m-2", "u-2")))
	r.drain()
	if r.env.Capture.Count() != 1 {
		t.Fatal("expected one delivery")
	}
	metrics, err := http.Get(r.in.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()

	canaries := []string{alexEmail, alexName, "opted.e2e@example.com"}
	scan := func(what string, b []byte) {
		for _, c := range canaries {
			if bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(c))) {
				t.Errorf("%s contains %q", what, c)
			}
		}
	}
	filepath.Walk(filepath.Join(r.dir, "data"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			scan(p, b)
		}
		return nil
	})
	scan("logs", []byte(r.logs.String()))
	scan("metrics", mb)
	cb, _ := os.ReadFile(r.in.CallbacksFile)
	if len(cb) == 0 {
		t.Fatal("no callbacks recorded")
	}
	scan("callbacks", cb)
}

// The operator's log verifies offline with only the gateway's public key,
// holds a decision and an outcome for every message, and is consistent with
// the checkpoints the core kept as a witness.
func TestAuditLogVerifiesAndMatchesTheCoresWitnessCopies(t *testing.T) {
	// Sign a checkpoint after every commit, so the callbacks carry
	// checkpoints that cover the messages they report.
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) { c.Audit.CheckpointEvery = -1 }})
	r.put("u-1", alex())
	denied := alex()
	denied.OptOuts = map[string]bool{"core_is_email_disabled_by_platform": true}
	r.put("u-2", denied)
	accepted(t, r.send(message("m-a1", "u-1"), message("m-a2", "u-2")))
	r.drain()
	if err := r.ad.Erase(context.Background(), devenv.Brand, "u-2"); err != nil {
		t.Fatal(err)
	}
	witnessed, cp := r.env.Core.Witness().Latest()
	if witnessed == nil || cp.Size == 0 {
		t.Fatal("the core side holds no checkpoint of the gateway's log")
	}
	r.stop() // Close signs the tail

	pub, err := envelope.LoadVerifyingKey(r.in.GatewaySigningPub)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(r.in.AuditLog, pub.Public, gateway.AuditOriginPrefix+string(pub.ID), witnessed)
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	for kind, want := range map[string]int{
		audit.KindEnvelopeAccepted: 1, audit.KindMessageAccepted: 2, audit.KindDecision: 4,
		audit.KindDelivery: 2, audit.KindErasure: 1,
	} {
		if got := rep.ByKind[kind]; got != want {
			t.Errorf("%s records = %d, want %d (all: %v)", kind, got, want, rep.ByKind)
		}
	}
	if rep.Unsigned != 0 {
		t.Errorf("%d entries are not covered by a signed checkpoint after Close", rep.Unsigned)
	}

	// An auditor proves offline that the core asked for m-a1.
	rd, err := audit.OpenReader(r.in.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := rd.FindMessage("m-a1")
	if err != nil {
		t.Fatal(err)
	}
	core, err := envelope.LoadVerifyingKey(filepath.Join(r.dir, "keys", "core", "signing.pub"))
	if err != nil {
		t.Fatal(err)
	}
	proven := false
	for _, rec := range recs {
		if rec.Kind == audit.KindMessageAccepted {
			var md audit.MessageData
			if err := json.Unmarshal(rec.Data, &md); err != nil {
				t.Fatal(err)
			}
			if err := md.Proof.Verify(core); err != nil {
				t.Fatalf("message proof: %v", err)
			}
			proven = true
		}
	}
	if !proven {
		t.Fatal("no message_accepted record for m-a1")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	r := newRig(t, devenv.Options{})
	for _, u := range []string{r.in.AdminURL + "/healthz", r.in.AdminURL + "/readyz"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", u, resp.StatusCode)
		}
	}
	client, err := r.in.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(r.in.MessageURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("message listener /readyz: %d", resp.StatusCode)
	}
}

// Every answer the core receives is on record, the final one last: a
// repeated id's record names the first ext_message_id and says duplicate.
func TestEveryAnswerIsOnRecordBeforeTheCoreSeesIt(t *testing.T) {
	r := newRig(t, devenv.Options{})
	r.put("u-1", alex())
	m := message("m-twice", "u-1")
	first := accepted(t, r.send(m))[0]
	again := r.send(m).Results[0]
	if !again.Duplicate || again.ExtMessageID != first {
		t.Fatalf("repeat: %+v", again)
	}
	rd, err := audit.OpenReader(r.in.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := rd.FindMessage("m-twice")
	if err != nil {
		t.Fatal(err)
	}
	var answers []audit.Record
	for _, rec := range recs {
		if rec.Kind == audit.KindMessageAccepted || rec.Kind == audit.KindMessageRejected {
			answers = append(answers, rec)
		}
	}
	if len(answers) < 2 || answers[0].ExtID != first {
		t.Fatalf("answers on record: %+v", answers)
	}
	last := answers[len(answers)-1]
	var md audit.MessageData
	json.Unmarshal(last.Data, &md)
	if last.ExtID != first || md.Code != "duplicate" {
		t.Fatalf("last answer on record: %s %+v, want the first ext id marked duplicate", last.ExtID, md)
	}
}
