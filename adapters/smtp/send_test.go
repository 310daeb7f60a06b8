package smtp_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/adapters/smtp/capture"
)

// testCert returns a self-signed certificate for 127.0.0.1, made at test
// time, and a pool trusting it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "blindpost test relay"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

func startCapture(t testing.TB, opts capture.Options) *capture.Server {
	t.Helper()
	srv, err := capture.Listen("127.0.0.1:0", t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func send(t testing.TB, cfg smtp.Config, m smtp.Message) (smtp.Result, error) {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return smtp.NewSender(cfg).Send(ctx, m)
}

func storedFiles(t testing.TB, srv *capture.Server) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(srv.Dir(), "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestSendPlain(t *testing.T) {
	srv := startCapture(t, capture.Options{})
	res, err := send(t, smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSNone}, testMessage())
	if err != nil {
		t.Fatal(err)
	}
	if res.TLS || res.MessageID != testMessage().MessageID {
		t.Errorf("Result = %+v", res)
	}
	if srv.Count() != 1 {
		t.Errorf("Count = %d, want 1", srv.Count())
	}
}

// TestSendStoresReadableMessage reads the stored .eml back as a mail client
// would: both parts, in order, with the right content and the Message-ID
// the caller chose.
func TestSendStoresReadableMessage(t *testing.T) {
	stored := make(chan string, 10)
	srv := startCapture(t, capture.Options{OnMessage: func(p string) { stored <- p }})
	m := testMessage()
	m.Subject = "Grüße, Ada"
	m.HTML = "<p>Hello Ada &amp; welcome.</p>\n<p>" + strings.Repeat("A long line of text. ", 20) + "</p>\n.\n"
	if _, err := send(t, smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSNone}, m); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 {
		t.Fatalf("OnMessage called %d times, want once before Send returned", len(stored))
	}
	path := <-stored
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, raw)
	if got := p.header.Get("Message-Id"); got != m.MessageID {
		t.Errorf("Message-ID = %q, want %q", got, m.MessageID)
	}
	if len(p.parts) != 2 || p.parts[0].body != crlf(m.Text) || p.parts[1].body != crlf(m.HTML) {
		t.Errorf("parts = %+v", p.parts)
	}
}

// TestSendTwiceKeepsBothCopies: SMTP is at-least-once, and a retry keeps its
// Message-ID, so the capture server files a duplicate next to the first copy
// and a test can count duplicates.
func TestSendTwiceKeepsBothCopies(t *testing.T) {
	srv := startCapture(t, capture.Options{})
	for range 2 {
		if _, err := send(t, smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSNone}, testMessage()); err != nil {
			t.Fatal(err)
		}
	}
	files := storedFiles(t, srv)
	if len(files) != 2 || !strings.HasSuffix(files[0], ".2.eml") && !strings.HasSuffix(files[1], ".2.eml") {
		t.Errorf("files = %q, want <id>.eml and <id>.2.eml", files)
	}
}

func TestSendSTARTTLS(t *testing.T) {
	cert, pool := testCert(t)
	srv := startCapture(t, capture.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	for _, mode := range []smtp.TLSMode{smtp.TLSRequire, smtp.TLSOpportunistic} {
		t.Run(string(mode), func(t *testing.T) {
			res, err := send(t, smtp.Config{Addr: srv.Addr(), TLS: mode, TLSConfig: &tls.Config{RootCAs: pool}}, testMessage())
			if err != nil {
				t.Fatal(err)
			}
			if !res.TLS {
				t.Error("message went without TLS")
			}
		})
	}
	if srv.Count() != 2 {
		t.Errorf("Count = %d, want 2", srv.Count())
	}
}

func TestSendOpportunisticWithoutTLSGoesPlain(t *testing.T) {
	srv := startCapture(t, capture.Options{})
	res, err := send(t, smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSOpportunistic}, testMessage())
	if err != nil {
		t.Fatal(err)
	}
	if res.TLS || srv.Count() != 1 {
		t.Errorf("Result = %+v, Count = %d", res, srv.Count())
	}
}

func TestRequireTLSWithoutTLSDeliversNothing(t *testing.T) {
	srv := startCapture(t, capture.Options{})
	_, err := send(t, smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSRequire}, testMessage())
	if !errors.Is(err, smtp.ErrTLSUnavailable) || !errors.Is(err, smtp.ErrTemporary) {
		t.Fatalf("err = %v, want ErrTLSUnavailable and ErrTemporary", err)
	}
	if srv.Count() != 0 {
		t.Errorf("Count = %d, want 0", srv.Count())
	}
}

func TestUntrustedCertificateDeliversNothing(t *testing.T) {
	cert, _ := testCert(t)
	srv := startCapture(t, capture.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	for _, mode := range []smtp.TLSMode{smtp.TLSRequire, smtp.TLSOpportunistic} {
		_, err := send(t, smtp.Config{Addr: srv.Addr(), TLS: mode}, testMessage())
		var certErr *tls.CertificateVerificationError
		if !errors.Is(err, smtp.ErrTemporary) || !errors.As(err, &certErr) {
			t.Errorf("%s: err = %v, want a temporary certificate error", mode, err)
		}
	}
	if srv.Count() != 0 {
		t.Errorf("Count = %d, want 0", srv.Count())
	}
}

func TestAuthPlain(t *testing.T) {
	srv := startCapture(t, capture.Options{Username: "relay-user", Password: "s3cret-test-only"})
	cfg := smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSNone, Username: "relay-user", Password: "s3cret-test-only"}
	if _, err := send(t, cfg, testMessage()); err != nil {
		t.Fatal(err)
	}
	if srv.Count() != 1 {
		t.Errorf("Count = %d, want 1", srv.Count())
	}
}

func TestAuthOverSTARTTLS(t *testing.T) {
	cert, pool := testCert(t)
	srv := startCapture(t, capture.Options{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Username:  "relay-user", Password: "s3cret-test-only",
	})
	cfg := smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSRequire, TLSConfig: &tls.Config{RootCAs: pool},
		Username: "relay-user", Password: "s3cret-test-only"}
	if res, err := send(t, cfg, testMessage()); err != nil || !res.TLS {
		t.Fatalf("Result %+v, err %v", res, err)
	}
}

func TestAuthWrongPasswordIsPermanent(t *testing.T) {
	srv := startCapture(t, capture.Options{Username: "relay-user", Password: "s3cret-test-only"})
	cfg := smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSNone, Username: "relay-user", Password: "wrong"}
	_, err := send(t, cfg, testMessage())
	var re *smtp.ReplyError
	if !errors.Is(err, smtp.ErrPermanent) || !errors.As(err, &re) || re.Code != 535 || re.Command != "AUTH" {
		t.Fatalf("err = %v, want a permanent 535 on AUTH", err)
	}
	if srv.Count() != 0 {
		t.Errorf("Count = %d, want 0", srv.Count())
	}
}

func TestMissingAuthIsPermanent(t *testing.T) {
	srv := startCapture(t, capture.Options{Username: "relay-user", Password: "s3cret-test-only"})
	_, err := send(t, smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSNone}, testMessage())
	var re *smtp.ReplyError
	if !errors.As(err, &re) || re.Code != 530 || !errors.Is(err, smtp.ErrPermanent) {
		t.Fatalf("err = %v, want a permanent 530", err)
	}
}

// TestHeaderInjectionDeliversNothing proves DESIGN §9.5 end to end: the
// message is refused before any connection is made.
func TestHeaderInjectionDeliversNothing(t *testing.T) {
	srv := startCapture(t, capture.Options{})
	for name, edit := range map[string]func(*smtp.Message){
		"Subject": func(m *smtp.Message) { m.Subject = "Hi\r\nBcc: eve@example.com" },
		"From":    func(m *smtp.Message) { m.From = "news@brand.example\r\nBcc: eve@example.com" },
	} {
		m := testMessage()
		edit(&m)
		_, err := send(t, smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSNone}, m)
		if !errors.Is(err, smtp.ErrHeaderInjection) || !errors.Is(err, smtp.ErrPermanent) {
			t.Errorf("%s: err = %v, want ErrHeaderInjection, permanent", name, err)
		}
	}
	if srv.Count() != 0 {
		t.Errorf("Count = %d, want 0", srv.Count())
	}
}

// TestServerRepliesAreClassified: 5xx is permanent, 4xx temporary; the
// codes are kept, and neither the error nor ReplyError.Message holds the
// recipient's address although the server's reply did.
func TestServerRepliesAreClassified(t *testing.T) {
	for _, tc := range []struct {
		reply *gosmtp.SMTPError
		kind  error
	}{
		{&gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}}, smtp.ErrPermanent},
		{&gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 2, 0}}, smtp.ErrTemporary},
	} {
		t.Run(tc.kind.Error(), func(t *testing.T) {
			srv := startCapture(t, capture.Options{CheckRecipient: func(addr string) error {
				e := *tc.reply
				e.Message = "<" + strings.ToUpper(addr) + ">: Recipient address rejected"
				return &e
			}})
			_, err := send(t, smtp.Config{Addr: srv.Addr(), TLS: smtp.TLSNone}, testMessage())
			var re *smtp.ReplyError
			if !errors.Is(err, tc.kind) || !errors.As(err, &re) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
			if re.Code != tc.reply.Code || re.Enhanced != [3]int(tc.reply.EnhancedCode) || re.Command != "RCPT" {
				t.Errorf("ReplyError = %+v", re)
			}
			for _, s := range []string{err.Error(), re.Message} {
				if strings.Contains(strings.ToLower(s), "ada@example.com") {
					t.Errorf("recipient address leaked: %q", s)
				}
			}
			if !strings.Contains(re.Message, "<recipient>") {
				t.Errorf("Message = %q, want the address redacted", re.Message)
			}
			if srv.Count() != 0 {
				t.Errorf("Count = %d, want 0", srv.Count())
			}
		})
	}
}

func TestDialFailureIsTemporary(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = send(t, smtp.Config{Addr: addr, TLS: smtp.TLSNone}, testMessage())
	if !errors.Is(err, smtp.ErrTemporary) {
		t.Fatalf("err = %v, want ErrTemporary", err)
	}
}

// silentServer accepts connections and never says a word.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return ln.Addr().String()
}

func TestCancelledContextStopsSend(t *testing.T) {
	addr := silentServer(t)
	for _, mode := range []smtp.TLSMode{smtp.TLSNone, smtp.TLSRequire} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		_, err := smtp.NewSender(smtp.Config{Addr: addr, TLS: mode, Timeout: time.Minute}).Send(ctx, testMessage())
		cancel()
		if !errors.Is(err, smtp.ErrTemporary) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: err = %v, want ErrTemporary and DeadlineExceeded", mode, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: Send took %v after its context ended", mode, d)
		}
	}
}

func TestTimeoutStopsSend(t *testing.T) {
	addr := silentServer(t)
	_, err := smtp.NewSender(smtp.Config{Addr: addr, TLS: smtp.TLSNone, Timeout: 200 * time.Millisecond}).Send(context.Background(), testMessage())
	if !errors.Is(err, smtp.ErrTemporary) {
		t.Fatalf("err = %v, want ErrTemporary", err)
	}
}

// TestSTARTTLSResponseInjectionIsRefused: a server (or a man in the middle)
// that sends more after "220 ready" must not have it read as if it had come
// over TLS.
func TestSTARTTLSResponseInjectionIsRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		c.Write([]byte("220 relay.example ESMTP\r\n"))
		r.ReadString('\n') // EHLO
		c.Write([]byte("250-relay.example\r\n250 STARTTLS\r\n"))
		r.ReadString('\n') // STARTTLS
		c.Write([]byte("220 go ahead\r\n250 injected\r\n"))
		r.ReadString('\n')
	}()
	_, err = send(t, smtp.Config{Addr: ln.Addr().String(), TLS: smtp.TLSOpportunistic}, testMessage())
	if !errors.Is(err, smtp.ErrTemporary) || !strings.Contains(err.Error(), "before the handshake") {
		t.Fatalf("err = %v, want a refusal of data sent before the handshake", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  smtp.Config
		ok   bool
	}{
		{"minimal", smtp.Config{Addr: "relay.example:25"}, true},
		{"no addr", smtp.Config{}, false},
		{"unknown tls mode", smtp.Config{Addr: "relay.example:25", TLS: "maybe"}, false},
		{"username without password", smtp.Config{Addr: "relay.example:25", Username: "u"}, false},
		{"helo with CRLF", smtp.Config{Addr: "relay.example:25", HeloName: "gw\r\nRCPT TO:<x>"}, false},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, smtp.ErrConfig)) {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
	}
}
