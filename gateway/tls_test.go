package gateway_test

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
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
)

// newClientCA makes a CA and a client certificate it signed, as an
// operator would issue to the vendor's core.
func newClientCA(t *testing.T, dir string) (caPath string, client tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test core CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "core"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caPath = filepath.Join(dir, "core-ca.crt")
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return caPath, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestMessageAPIRequiresClientCertificateWhenConfigured(t *testing.T) {
	caPath, clientCert := newClientCA(t, t.TempDir())
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) { c.TLS.ClientCAFile = caPath }})
	r.put("u-1", alex())
	env := r.seal(r.sealer(), message("m-mtls", "u-1"))

	if _, err := r.post(env); err == nil {
		t.Fatal("message API answered a client without a certificate")
	} else if he := (*devenv.HTTPError)(nil); errors.As(err, &he) {
		t.Fatalf("got an HTTP answer (%v), want a TLS handshake failure", err)
	}

	client, err := r.in.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{clientCert}
	resp, err := devenv.PostEnvelope(t.Context(), client, r.in.MessageURL, env)
	if err != nil {
		t.Fatalf("with the core's certificate: %v", err)
	}
	accepted(t, resp)
}
