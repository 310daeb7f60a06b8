package capture_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/blindpost/blindpost/adapters/smtp/capture"
)

const msg = "From: news@brand.example\r\nTo: ada@example.com\r\nMessage-ID: <m1@brand.example>\r\nSubject: hi\r\n\r\nHello\r\n"

func listen(t *testing.T, opts capture.Options) *capture.Server {
	t.Helper()
	srv, err := capture.Listen("127.0.0.1:0", filepath.Join(t.TempDir(), "mail"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// sendRaw sends msg with a bare go-smtp client.
func sendRaw(t *testing.T, addr string, auth sasl.Client) error {
	t.Helper()
	c, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	return c.SendMail("news@brand.example", []string{"ada@example.com"}, strings.NewReader(msg))
}

func TestStoresEachMessageWhole(t *testing.T) {
	srv := listen(t, capture.Options{})
	for range 3 {
		if err := sendRaw(t, srv.Addr(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if srv.Count() != 3 {
		t.Errorf("Count = %d, want 3", srv.Count())
	}
	entries, err := os.ReadDir(srv.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("%d files, want 3 and no temporary file left", len(entries))
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") {
			t.Errorf("unexpected file %s", e.Name())
		}
		data, err := os.ReadFile(filepath.Join(srv.Dir(), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != msg {
			t.Errorf("%s = %q, want the message as sent", e.Name(), data)
		}
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	if fi, err := os.Stat(srv.Dir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
}

func TestAuthIsRequiredWhenConfigured(t *testing.T) {
	srv := listen(t, capture.Options{Username: "u", Password: "test-only"})
	var se *gosmtp.SMTPError
	if err := sendRaw(t, srv.Addr(), nil); !errors.As(err, &se) || se.Code != 530 {
		t.Errorf("without AUTH: %v, want 530", err)
	}
	if err := sendRaw(t, srv.Addr(), sasl.NewPlainClient("", "u", "nope")); !errors.As(err, &se) || se.Code != 535 {
		t.Errorf("wrong password: %v, want 535", err)
	}
	if err := sendRaw(t, srv.Addr(), sasl.NewPlainClient("", "u", "test-only")); err != nil {
		t.Errorf("right password: %v", err)
	}
	if srv.Count() != 1 {
		t.Errorf("Count = %d, want 1", srv.Count())
	}
}

func TestCheckRecipientRefuses(t *testing.T) {
	srv := listen(t, capture.Options{CheckRecipient: func(string) error { return errors.New("no") }})
	var se *gosmtp.SMTPError
	if err := sendRaw(t, srv.Addr(), nil); !errors.As(err, &se) || se.Code != 550 {
		t.Errorf("err = %v, want 550", err)
	}
}

func TestCloseStopsAccepting(t *testing.T) {
	srv := listen(t, capture.Options{})
	addr := srv.Addr()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := gosmtp.Dial(addr); err == nil {
		c.Close()
		t.Error("server still accepts after Close")
	}
}

// TestCountsConnectionsAndCommands: commands are counted as the server
// reads them; a message's lines are content, not commands.
func TestCountsConnectionsAndCommands(t *testing.T) {
	srv := listen(t, capture.Options{})
	c, err := gosmtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	body := "Subject: hi\r\n\r\nNOOP\r\nRSET\r\n..\r\nQUIT\r\n"
	if err := c.SendMail("news@brand.example", []string{"ada@example.com"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	for verb, want := range map[string]int{"EHLO": 2, "NOOP": 1, "MAIL": 1, "RCPT": 1, "DATA": 1, "RSET": 1, "QUIT": 1} {
		if got := srv.Commands(verb); got != want {
			t.Errorf("Commands(%s) = %d, want %d", verb, got, want)
		}
	}
	if srv.Connections() != 1 || srv.Count() != 1 {
		t.Errorf("Connections = %d, Count = %d, want 1 and 1", srv.Connections(), srv.Count())
	}
}

func TestPeakTransactions(t *testing.T) {
	var (
		mu     sync.Mutex
		inRcpt int
		both   = make(chan struct{})
	)
	srv := listen(t, capture.Options{CheckRecipient: func(string) error {
		mu.Lock()
		inRcpt++
		if inRcpt == 2 {
			close(both)
		}
		mu.Unlock()
		<-both
		return nil
	}})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := sendRaw(t, srv.Addr(), nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := srv.PeakTransactions(); p != 2 {
		t.Errorf("PeakTransactions = %d, want 2", p)
	}
	if err := sendRaw(t, srv.Addr(), nil); err != nil {
		t.Fatal(err)
	}
	if p := srv.PeakTransactions(); p != 2 {
		t.Errorf("PeakTransactions after a lone message = %d, want still 2", p)
	}
}

func TestErrDropClosesTheConnection(t *testing.T) {
	srv := listen(t, capture.Options{CheckRecipient: func(string) error { return capture.ErrDrop }})
	err := sendRaw(t, srv.Addr(), nil)
	var se *gosmtp.SMTPError
	if err == nil || errors.As(err, &se) {
		t.Fatalf("err = %v, want the connection gone without a reply", err)
	}
	if srv.Count() != 0 {
		t.Errorf("Count = %d, want 0", srv.Count())
	}
}

func TestDropConnections(t *testing.T) {
	srv := listen(t, capture.Options{})
	c, err := gosmtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	srv.DropConnections()
	if err := c.Noop(); err == nil {
		t.Error("NOOP succeeded on a dropped connection")
	}
}

func TestCommandsAfterSTARTTLSAreNotCounted(t *testing.T) {
	cert, roots := selfSigned(t)
	srv := listen(t, capture.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	c, err := gosmtp.DialStartTLS(srv.Addr(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	if srv.Commands("STARTTLS") != 1 || srv.Commands("EHLO") != 1 || srv.Commands("NOOP") != 0 {
		t.Errorf("STARTTLS %d, EHLO %d, NOOP %d; want 1, 1, 0", srv.Commands("STARTTLS"), srv.Commands("EHLO"), srv.Commands("NOOP"))
	}
}

// selfSigned returns a certificate for 127.0.0.1 made at test time, and a
// pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, roots
}
