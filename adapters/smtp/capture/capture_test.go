package capture_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
