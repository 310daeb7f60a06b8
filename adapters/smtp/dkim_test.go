package smtp_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/adapters/smtp/capture"
)

// rsaKey is made once per test binary: 2048-bit generation is slow, the
// race detector slower. Keys are never committed.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

type dkimKey struct {
	name   string
	signer crypto.Signer
	algo   string // a= of the signature
	txt    string // the DNS record, built here and not by the package
}

func dkimKeys(t testing.TB) []dkimKey {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(&rsaKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []dkimKey{
		{"rsa", rsaKey(), "rsa-sha256", "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(spki)},
		{"ed25519", priv, "ed25519-sha256", "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)},
	}
}

// signedMessage is testMessage with one-click unsubscribe, signed with k
// for brand.example under the selector "bp1".
func signedMessage(k dkimKey) smtp.Message {
	m := testMessage()
	m.ListUnsubscribe = "https://brand.example/u/abc?sig=Zm9v"
	m.ListUnsubscribePost = true
	m.DKIM = &smtp.DKIM{Domain: "brand.example", Selector: "bp1", Signer: k.signer}
	return m
}

// verify checks raw's DKIM signatures with go-msgauth, the key served from
// a fake DNS holding only k's record.
func verify(t *testing.T, raw []byte, k dkimKey) *dkim.Verification {
	t.Helper()
	lookup := func(name string) ([]string, error) {
		if name == "bp1._domainkey.brand.example" {
			return []string{k.txt}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(vs) != 1 {
		t.Fatalf("%d signatures, want 1", len(vs))
	}
	return vs[0]
}

func mustBuild(t *testing.T, m smtp.Message) []byte {
	t.Helper()
	raw, err := smtp.BuildMIME(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestDKIMSignatureVerifies(t *testing.T) {
	for _, k := range dkimKeys(t) {
		t.Run(k.name, func(t *testing.T) {
			raw := mustBuild(t, signedMessage(k))
			v := verify(t, raw, k)
			if v.Err != nil {
				t.Fatalf("signature does not verify: %v", v.Err)
			}
			if v.Domain != "brand.example" {
				t.Errorf("d= %q", v.Domain)
			}
			sig := unfolded(raw, "DKIM-Signature")
			for _, tag := range []string{"a=" + k.algo + ";", "c=relaxed/relaxed;", "s=bp1;", "d=brand.example;"} {
				if !strings.Contains(strings.ReplaceAll(sig, " ", ""), tag) {
					t.Errorf("signature lacks %s: %s", tag, sig)
				}
			}
			signed := map[string]int{}
			for _, h := range v.HeaderKeys {
				signed[strings.ToLower(h)]++
			}
			for _, h := range []string{"from", "to", "subject", "date", "message-id", "mime-version",
				"content-type", "reply-to", "list-unsubscribe", "list-unsubscribe-post"} {
				// Each once for the field and once more, so that a second
				// one added on the way breaks the signature.
				if signed[h] != 2 {
					t.Errorf("%s signed %d times, want 2", h, signed[h])
				}
			}
			if p := mustParse(t, raw); len(p.parts) != 2 {
				t.Errorf("signed message reads back with %d parts", len(p.parts))
			}
		})
	}
}

// TestDKIMSignedMessageVerifiesAtTheRelay: what the relay stores, after the
// SMTP session's dot-stuffing and line handling, still verifies.
func TestDKIMSignedMessageVerifiesAtTheRelay(t *testing.T) {
	stored := make(chan string, 4)
	srv := startCapture(t, capture.Options{OnMessage: func(p string) { stored <- p }})
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1}})
	for _, k := range dkimKeys(t) {
		m := signedMessage(k)
		m.Text = "A line.\n.\n..starts with dots\n"
		mustSend(t, s, m)
		raw, err := os.ReadFile(<-stored)
		if err != nil {
			t.Fatal(err)
		}
		if v := verify(t, raw, k); v.Err != nil {
			t.Errorf("%s: stored message does not verify: %v", k.name, v.Err)
		}
	}
}

// TestDKIMTamperingFailsVerification changes a signed message as a
// forwarder or an attacker replaying it might. Relaxed canonicalisation
// forgives changes in white space and nothing else.
func TestDKIMTamperingFailsVerification(t *testing.T) {
	for _, k := range dkimKeys(t) {
		raw := mustBuild(t, signedMessage(k))
		for _, tc := range []struct {
			name  string
			edit  func(string) string
			valid bool
		}{
			{"untouched", func(s string) string { return s }, true},
			{"white space refolded", func(s string) string {
				return strings.Replace(s, "Subject: Your weekly summary", "Subject:   Your\r\n\tweekly   summary ", 1)
			}, true},
			{"unsigned field added", func(s string) string { return strings.Replace(s, "\r\nDate:", "\r\nX-Relay: 1\r\nDate:", 1) }, true},
			{"Subject changed", func(s string) string { return strings.Replace(s, "weekly summary", "weekly summarY", 1) }, false},
			{"body changed", func(s string) string { return strings.Replace(s, "Hello Ada,", "Hello Eve,", 1) }, false},
			{"List-Unsubscribe changed", func(s string) string { return strings.Replace(s, "brand.example/u/abc", "brand.example/u/abd", 1) }, false},
			{"List-Unsubscribe-Post removed", func(s string) string {
				return strings.Replace(s, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", "", 1)
			}, false},
			{"second From added", func(s string) string {
				return strings.Replace(s, "\r\nDate:", "\r\nFrom: eve@example.com\r\nDate:", 1)
			}, false},
			{"Reply-To replaced", func(s string) string {
				return strings.Replace(s, "support@brand.example", "eve@example.com", 1)
			}, false},
		} {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				v := verify(t, []byte(tc.edit(string(raw))), k)
				if (v.Err == nil) != tc.valid {
					t.Errorf("verification error %v, want valid=%v", v.Err, tc.valid)
				}
			})
		}
	}
}

// TestDKIMAlignment: d= must be the From domain or a parent of it, so the
// signature can pass DMARC; otherwise nothing is sent.
func TestDKIMAlignment(t *testing.T) {
	k := dkimKeys(t)[1]
	for _, tc := range []struct {
		from, domain string
		ok           bool
	}{
		{"news@brand.example", "brand.example", true},
		{"news@mail.brand.example", "brand.example", true},
		{"news@Brand.Example", "brand.EXAMPLE", true},
		{"news@brand.example", "mail.brand.example", false},
		{"news@evilbrand.example", "brand.example", false},
		{"news@brand.example", "other.example", false},
	} {
		m := testMessage()
		m.From = tc.from
		m.DKIM = &smtp.DKIM{Domain: tc.domain, Selector: "bp1", Signer: k.signer}
		_, err := smtp.BuildMIME(m)
		if tc.ok != (err == nil) || (err != nil && (!errors.Is(err, smtp.ErrDKIMAlignment) || !errors.Is(err, smtp.ErrInvalidMessage))) {
			t.Errorf("From %s, d=%s: err = %v", tc.from, tc.domain, err)
		}
	}

	srv := startCapture(t, capture.Options{})
	m := testMessage()
	m.DKIM = &smtp.DKIM{Domain: "other.example", Selector: "bp1", Signer: k.signer}
	_, err := newSender(t, smtp.Config{Addr: srv.Addr()}).Send(testContext(t), m)
	if !errors.Is(err, smtp.ErrDKIMAlignment) || !errors.Is(err, smtp.ErrPermanent) || adapters.Code(err) != "smtp_dkim_alignment" {
		t.Errorf("Send: err = %v (code %q), want a permanent alignment error", err, adapters.Code(err))
	}
	if srv.Connections() != 0 {
		t.Error("misaligned message: a connection was made")
	}
}

func TestDKIMRefusesUnusableSettings(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := dkimKeys(t)[1].signer
	for _, tc := range []struct {
		name string
		d    smtp.DKIM
	}{
		{"no key", smtp.DKIM{Domain: "brand.example", Selector: "bp1"}},
		{"RSA-1024", smtp.DKIM{Domain: "brand.example", Selector: "bp1", Signer: weak}},
		{"ECDSA", smtp.DKIM{Domain: "brand.example", Selector: "bp1", Signer: ec}},
		{"no domain", smtp.DKIM{Selector: "bp1", Signer: good}},
		{"single label domain", smtp.DKIM{Domain: "example", Selector: "bp1", Signer: good}},
		{"public suffix", smtp.DKIM{Domain: "co.uk", Selector: "bp1", Signer: good}},
		{"no selector", smtp.DKIM{Domain: "brand.example", Signer: good}},
		{"selector with a space", smtp.DKIM{Domain: "brand.example", Selector: "bp 1", Signer: good}},
		{"signs DKIM-Signature", smtp.DKIM{Domain: "brand.example", Selector: "bp1", Signer: good, Headers: []string{"From", "DKIM-Signature"}}},
		{"bad field name", smtp.DKIM{Domain: "brand.example", Selector: "bp1", Signer: good, Headers: []string{"From", "X:Y"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.d.Validate(); !errors.Is(err, smtp.ErrConfig) {
				t.Errorf("Validate = %v, want ErrConfig", err)
			}
			m := testMessage()
			m.DKIM = &tc.d
			if _, err := smtp.BuildMIME(m); !errors.Is(err, smtp.ErrConfig) {
				t.Errorf("BuildMIME = %v, want ErrConfig", err)
			}
		})
	}
	// Through Send it is the operator's to fix: temporary, nothing sent.
	srv := startCapture(t, capture.Options{})
	m := testMessage()
	m.DKIM = &smtp.DKIM{Domain: "brand.example", Selector: "bp1", Signer: weak}
	_, err = newSender(t, smtp.Config{Addr: srv.Addr()}).Send(testContext(t), m)
	if !errors.Is(err, smtp.ErrTemporary) || adapters.Code(err) != "smtp_config" || srv.Connections() != 0 {
		t.Errorf("Send: err = %v (code %q), %d connections", err, adapters.Code(err), srv.Connections())
	}
}

// TestDKIMCustomHeadersStillCoverRequired: a shorter list still signs From
// and both unsubscribe fields (RFC 6376 §5.4, RFC 8058 §3).
func TestDKIMCustomHeadersStillCoverRequired(t *testing.T) {
	k := dkimKeys(t)[1]
	m := signedMessage(k)
	m.DKIM.Headers = []string{"Subject", "subject"}
	v := verify(t, mustBuild(t, m), k)
	if v.Err != nil {
		t.Fatal(v.Err)
	}
	var got []string
	for _, h := range v.HeaderKeys {
		if l := strings.ToLower(h); !slices.Contains(got, l) {
			got = append(got, l)
		}
	}
	slices.Sort(got)
	if want := []string{"from", "list-unsubscribe", "list-unsubscribe-post", "subject"}; !slices.Equal(got, want) {
		t.Errorf("signed fields %q, want %q", got, want)
	}
}

func TestDKIMTXTRecord(t *testing.T) {
	for _, k := range dkimKeys(t) {
		d := smtp.DKIM{Domain: "brand.example", Selector: "bp1", Signer: k.signer}
		name, value, err := d.TXTRecord()
		if err != nil || name != "bp1._domainkey.brand.example" || value != k.txt {
			t.Errorf("%s: TXTRecord = %q, %q, %v; want the record %q", k.name, name, value, err, k.txt)
		}
	}
}

func TestLoadDKIMKey(t *testing.T) {
	rsaPKCS8, err := x509.MarshalPKCS8PrivateKey(rsaKey())
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPKCS8, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPKCS8, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	block := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	for _, tc := range []struct {
		name string
		pem  []byte
		want string // "rsa", "ed25519", or "" for an error
	}{
		{"RSA PKCS#8", block("PRIVATE KEY", rsaPKCS8), "rsa"},
		{"RSA PKCS#1", block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey())), "rsa"},
		{"Ed25519 PKCS#8", block("PRIVATE KEY", edPKCS8), "ed25519"},
		{"key after a public key", append(block("PUBLIC KEY", []byte{1, 2, 3}), block("PRIVATE KEY", edPKCS8)...), "ed25519"},
		{"RSA-1024", block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(weak)), ""},
		{"ECDSA", block("PRIVATE KEY", ecPKCS8), ""},
		{"encrypted PKCS#8", block("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), ""},
		{"encrypted PKCS#1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}), ""},
		{"corrupt", block("PRIVATE KEY", []byte("secret-key-material")), ""},
		{"not PEM", []byte("secret-key-material"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signer, err := smtp.LoadDKIMKey(tc.pem)
			if tc.want == "" {
				if !errors.Is(err, smtp.ErrConfig) {
					t.Fatalf("err = %v, want ErrConfig", err)
				}
				if strings.Contains(err.Error(), "secret-key-material") || strings.Contains(err.Error(), "c2VjcmV0") {
					t.Errorf("error quotes the file: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch signer.Public().(type) {
			case *rsa.PublicKey:
				if tc.want != "rsa" {
					t.Errorf("got an RSA key, want %s", tc.want)
				}
			case ed25519.PublicKey:
				if tc.want != "ed25519" {
					t.Errorf("got an Ed25519 key, want %s", tc.want)
				}
			}
		})
	}

	// A loaded key signs what its record verifies.
	signer, err := smtp.LoadDKIMKey(block("PRIVATE KEY", edPKCS8))
	if err != nil {
		t.Fatal(err)
	}
	k := dkimKey{name: "loaded", signer: signer,
		txt: "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edKey.Public().(ed25519.PublicKey))}
	if v := verify(t, mustBuild(t, signedMessage(k)), k); v.Err != nil {
		t.Errorf("loaded key: %v", v.Err)
	}
}
