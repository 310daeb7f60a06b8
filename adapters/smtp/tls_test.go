package smtp_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/adapters/smtp/capture"
)

func tlsServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// testCA makes, at test time, a private CA and a certificate for 127.0.0.1
// that it signed; it returns the server's certificate and the CA in PEM, as
// an operator's CA file would hold it.
func testCA(t testing.TB) (tls.Certificate, []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "blindpost test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "relay"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRelayCertificateFromPrivateCA: a relay whose certificate a private
// CA signed is trusted with that CA (Config.RootCAs, from LoadCAFile) and
// refused without it, as a temporary failure, in both TLS modes, with no
// second, plain-text attempt.
func TestRelayCertificateFromPrivateCA(t *testing.T) {
	cert, caPEM := testCA(t)
	srv := startCapture(t, capture.Options{TLSConfig: tlsServerConfig(cert)})
	roots, err := smtp.LoadCAFile(writeFile(t, "ca.pem", caPEM))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("trusted with the CA", func(t *testing.T) {
		for _, mode := range []smtp.TLSMode{smtp.TLSRequire, smtp.TLSOpportunistic} {
			s := newSender(t, smtp.Config{Addr: srv.Addr(), TLS: mode, RootCAs: roots})
			if res := mustSend(t, s, testMessage()); !res.TLS {
				t.Errorf("%s: message went without TLS", mode)
			}
		}
	})
	t.Run("refused without it", func(t *testing.T) {
		before, stored := srv.Connections(), srv.Count()
		for _, mode := range []smtp.TLSMode{smtp.TLSRequire, smtp.TLSOpportunistic} {
			s := newSender(t, smtp.Config{Addr: srv.Addr(), TLS: mode, Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1}})
			_, err := s.Send(testContext(t), testMessage())
			var certErr *tls.CertificateVerificationError
			if !errors.Is(err, smtp.ErrTemporary) || !errors.As(err, &certErr) || adapters.Code(err) != "smtp_tls" {
				t.Errorf("%s: err = %v (code %q), want a temporary certificate error", mode, err, adapters.Code(err))
			}
		}
		if got := srv.Connections() - before; got != 2 {
			t.Errorf("%d connections for 2 refused sends, want 2: no plain-text retry", got)
		}
		if srv.Count() != stored {
			t.Error("a message was delivered over an unverified connection")
		}
	})
}

func TestLoadCAFile(t *testing.T) {
	_, caPEM := testCA(t)
	if _, err := smtp.LoadCAFile(writeFile(t, "ca.pem", caPEM)); err != nil {
		t.Errorf("CA file: %v", err)
	}
	if _, err := smtp.LoadCAFile(writeFile(t, "junk.pem", []byte("not a certificate\n"))); !errors.Is(err, smtp.ErrConfig) {
		t.Errorf("junk file: %v, want ErrConfig", err)
	}
	if _, err := smtp.LoadCAFile(filepath.Join(t.TempDir(), "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}

func TestRootCAsInTwoPlacesIsAConfigError(t *testing.T) {
	pool := x509.NewCertPool()
	err := smtp.Config{Addr: "relay.example:25", RootCAs: pool, TLSConfig: &tls.Config{RootCAs: pool}}.Validate()
	if !errors.Is(err, smtp.ErrConfig) {
		t.Errorf("Validate = %v, want ErrConfig", err)
	}
}
