// Package devenv runs a whole gateway on one machine with embedded defaults:
// generated keys and TLS certificate, the embedded vault, an SMTP capture
// server standing in for the operator's relay, and a callback receiver
// standing in for the vendor's core. `blindpost dev`, `blindpost demo`,
// `blindpost send` and the end-to-end tests share it, so they all run the
// code an operator runs.
package devenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/blindpost/blindpost/adapters/smtp/capture"
	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/gateway/callback"
	"github.com/blindpost/blindpost/vault/embedded"
)

// Tenant, Brand and From are the dev environment's fixed example identities.
const (
	Tenant = "dev"
	Brand  = "casino-1"
	From   = "Example Casino <news@example.com>"
)

// Info is DIR/dev.json: where everything of a running dev environment is.
type Info struct {
	Tenant            string `json:"tenant"`
	Brand             string `json:"brand"`
	From              string `json:"from"`
	MessageURL        string `json:"message_url"`
	AdminURL          string `json:"admin_url"`
	SMTPAddr          string `json:"smtp_addr"`
	CallbackURL       string `json:"callback_url"`
	MailDir           string `json:"mail_dir"`
	AuditLog          string `json:"audit_log"`
	Witness           string `json:"witness"`
	CallbacksFile     string `json:"callbacks_file"`
	CACert            string `json:"ca_cert"`
	AdminTokenFile    string `json:"admin_token_file"`
	CoreSigningKey    string `json:"core_signing_key"`
	GatewayHPKEPub    string `json:"gateway_hpke_pub"`
	GatewaySigningPub string `json:"gateway_signing_pub"`
	PublicURL         string `json:"public_url"`
	Config            string `json:"config"`
}

// LoadInfo reads DIR/dev.json.
func LoadInfo(dir string) (*Info, error) {
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		return nil, fmt.Errorf("dev env: %w (is `blindpost dev --data %s` running?)", err, dir)
	}
	var in Info
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("dev env: dev.json: %w", err)
	}
	return &in, nil
}

func p(dir string, parts ...string) string { return filepath.Join(append([]string{dir}, parts...)...) }

// Prepare creates, once, everything a dev gateway needs in dir: keys, the
// vault key, an admin token, a TLS certificate, and the config file. Running
// it again keeps what exists.
func Prepare(dir string) error {
	for _, d := range []string{dir, p(dir, "keys"), p(dir, "mail"), p(dir, "data")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if !exists(p(dir, "keys", "gateway", "hpke.key")) {
		if err := envelope.WriteGatewayKeys(p(dir, "keys", "gateway"), rand.Reader); err != nil {
			return fmt.Errorf("gateway keys: %w", err)
		}
	}
	if !exists(p(dir, "keys", "core", "signing.key")) {
		if err := envelope.WriteCoreKeys(p(dir, "keys", "core"), rand.Reader); err != nil {
			return fmt.Errorf("core keys: %w", err)
		}
	}
	if !exists(p(dir, "keys", "vault.key")) {
		if err := embedded.GenerateKeyFile(p(dir, "keys", "vault.key")); err != nil {
			return fmt.Errorf("vault key: %w", err)
		}
	}
	if !exists(p(dir, "admin.token")) {
		var b [32]byte
		rand.Read(b[:])
		if err := os.WriteFile(p(dir, "admin.token"), []byte(hex.EncodeToString(b[:])+"\n"), 0o600); err != nil {
			return err
		}
	}
	if !exists(p(dir, "policy-data.json")) {
		if err := os.WriteFile(p(dir, "policy-data.json"), []byte(PolicyData), 0o600); err != nil {
			return err
		}
	}
	if !exists(p(dir, "tls.crt")) {
		if err := writeSelfSigned(p(dir, "tls.crt"), p(dir, "tls.key")); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	}
	return nil
}

// PolicyData is the dev tenant's operator settings: the policy bundle's
// defaults allow no sender domain until the operator names one.
const PolicyData = `{
  "blindpost": {
    "tenants": {
      "dev": {
        "brands": {
          "casino-1": {
            "settings": {
              "sender_domains": ["example.com"],
              "default_timezone": "Europe/Malta"
            }
          }
        }
      }
    }
  }
}
`

// Config is the dev gateway's config: loopback only, TLS with the generated
// certificate, the embedded vault, the capture server as the relay.
func Config(dir, smtpAddr, callbackURL string) *gateway.Config {
	cfg := &gateway.Config{
		Listen:      "127.0.0.1:0",
		AdminListen: "127.0.0.1:0",
		TLS:         gateway.TLSConfig{CertFile: p(dir, "tls.crt"), KeyFile: p(dir, "tls.key")},
		DataDir:     p(dir, "data"),
		Keys: gateway.KeysConfig{
			HPKE:    []string{p(dir, "keys", "gateway", "hpke.key")},
			Signing: p(dir, "keys", "gateway", "signing.key"),
		},
		Vault: gateway.VaultConfig{Embedded: gateway.EmbeddedVaultConfig{
			Path: p(dir, "data", "vault.db"), KeyFile: p(dir, "keys", "vault.key"),
		}},
		SMTP:      gateway.SMTPConfig{Addr: smtpAddr, Helo: "gateway.dev.example.com", TLS: "opportunistic"},
		Policy:    gateway.PolicyConfig{DataFile: p(dir, "policy-data.json")},
		Callbacks: gateway.CallbackConf{AllowPrivate: true},
		// Sign a checkpoint after every commit (a negative interval), so even
		// a short dev session shows the core's witness copies growing.
		Audit: gateway.AuditConfig{CheckpointEvery: -1},
		Send:  gateway.SendConfig{Workers: 2},
		// Unsubscribe pages on loopback; links point straight at them.
		Public: gateway.PublicConfig{Listen: "127.0.0.1:0", TLS: true},
		Tenants: []gateway.Tenant{{
			ID:              Tenant,
			CoreKeys:        []string{p(dir, "keys", "core", "signing.pub")},
			AdminTokensFile: p(dir, "admin.token"),
			CallbackURL:     callbackURL,
		}},
	}
	cfg.SetDefaults()
	return cfg
}

// Env is a running dev environment.
type Env struct {
	Dir     string
	Info    Info
	Gateway *gateway.Gateway
	Capture *capture.Server
	Core    *CallbackSink

	cancel context.CancelFunc
	done   chan error
}

// Options tune Start for tests.
type Options struct {
	Logger       *slog.Logger
	PollInterval time.Duration
	// Gateway lets a caller adjust the generated config before start.
	Gateway func(*gateway.Config)
	// GatewayOptions are passed to gateway.Open.
	GatewayOptions gateway.Options
	// Manual leaves the workers stopped: the listeners serve, but the
	// caller drives sending and callbacks (SendDue, PostCallbacks), so a
	// test controls what happens between acceptance and sending.
	Manual bool
}

// Start prepares dir and runs the dev environment until Close.
func Start(ctx context.Context, dir string, opts Options) (_ *Env, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if err := Prepare(dir); err != nil {
		return nil, err
	}
	e := &Env{Dir: dir}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	e.Capture, err = capture.Listen("127.0.0.1:0", p(dir, "mail"), capture.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("smtp capture: %w", err)
	}
	sigPub, err := envelope.LoadVerifyingKey(p(dir, "keys", "gateway", "signing.pub"))
	if err != nil {
		return nil, err
	}
	e.Core, err = ListenCallbacks(p(dir, "callbacks.ndjson"), sigPub.Public, nil)
	if err != nil {
		return nil, fmt.Errorf("callback receiver: %w", err)
	}
	cfg := Config(dir, e.Capture.Addr(), e.Core.URL())
	if opts.Gateway != nil {
		opts.Gateway(cfg)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The core side keeps witness copies of the gateway's audit log: every
	// checkpoint that arrives in a callback. Nothing calls back before the
	// gateway starts, below.
	e.Core.witness, err = audit.OpenWitness(p(dir, "witness"), sigPub.Public, cfg.AuditOrigin(sigPub.ID))
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	if b, err := cfg.Marshal(); err == nil {
		os.WriteFile(p(dir, "gateway.yaml"), b, 0o600)
	}
	gopts := opts.GatewayOptions
	gopts.Logger = log
	if opts.PollInterval != 0 {
		gopts.PollInterval = opts.PollInterval
	}
	e.Gateway, err = gateway.Open(ctx, cfg, gopts)
	if err != nil {
		return nil, err
	}
	if err := e.Gateway.Listen(); err != nil {
		return nil, err
	}
	e.Info = Info{
		Tenant: Tenant, Brand: Brand, From: From,
		MessageURL:        "https://" + e.Gateway.MessageAddr(),
		AdminURL:          "http://" + e.Gateway.AdminAddr(),
		SMTPAddr:          e.Capture.Addr(),
		CallbackURL:       e.Core.URL(),
		MailDir:           p(dir, "mail"),
		AuditLog:          p(dir, "data", "audit"),
		Witness:           p(dir, "witness"),
		CallbacksFile:     p(dir, "callbacks.ndjson"),
		CACert:            p(dir, "tls.crt"),
		AdminTokenFile:    p(dir, "admin.token"),
		CoreSigningKey:    p(dir, "keys", "core", "signing.key"),
		GatewayHPKEPub:    p(dir, "keys", "gateway", "hpke.pub"),
		GatewaySigningPub: p(dir, "keys", "gateway", "signing.pub"),
		PublicURL:         "https://" + e.Gateway.PublicAddr(),
		Config:            p(dir, "gateway.yaml"),
	}
	b, _ := json.MarshalIndent(e.Info, "", "  ")
	if err := os.WriteFile(p(dir, "dev.json"), append(b, '\n'), 0o600); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.done = make(chan error, 1)
	serve := e.Gateway.Serve
	if opts.Manual {
		serve = e.Gateway.ServeListeners
	}
	go func() { e.done <- serve(sctx) }()
	return e, nil
}

// Close stops the gateway and the stand-ins.
func (e *Env) Close() error {
	var errs []error
	if e.cancel != nil {
		e.cancel()
		errs = append(errs, <-e.done)
		e.cancel = nil
	}
	if e.Gateway != nil {
		errs = append(errs, e.Gateway.Close())
	}
	if e.Core != nil {
		errs = append(errs, e.Core.Close())
	}
	if e.Capture != nil {
		errs = append(errs, e.Capture.Close())
	}
	return errors.Join(errs...)
}

// AdminToken reads the dev admin token.
func (in *Info) AdminToken() (string, error) {
	b, err := os.ReadFile(in.AdminTokenFile)
	return string(bytes.TrimSpace(b)), err
}

// HTTPClient trusts the dev gateway's self-signed certificate.
func (in *Info) HTTPClient() (*http.Client, error) {
	b, err := os.ReadFile(in.CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("dev CA: no certificate")
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}, nil
}

// Send acts as the vendor's core: it seals and signs msgs in one envelope,
// posts it to the dev gateway and returns the gateway's answer.
func (in *Info) Send(ctx context.Context, msgs ...envelope.Message) (*gateway.Response, error) {
	key, err := envelope.LoadSigningKey(in.CoreSigningKey)
	if err != nil {
		return nil, err
	}
	pub, err := envelope.LoadRecipientPublicKey(in.GatewayHPKEPub)
	if err != nil {
		return nil, err
	}
	raws := make([]json.RawMessage, len(msgs))
	for i := range msgs {
		if raws[i], err = json.Marshal(msgs[i]); err != nil {
			return nil, err
		}
	}
	env, err := (&envelope.Sealer{Key: key, Recipient: pub, Rand: rand.Reader, Now: time.Now}).Seal(in.Tenant, raws)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	client, err := in.HTTPClient()
	if err != nil {
		return nil, err
	}
	return PostEnvelope(ctx, client, in.MessageURL, env)
}

// PostEnvelope posts one envelope to a gateway's message API.
func PostEnvelope(ctx context.Context, client *http.Client, baseURL string, env *envelope.Envelope) (*gateway.Response, error) {
	body, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusAccepted {
		var eb gateway.ErrorBody
		json.Unmarshal(rb, &eb)
		return nil, &HTTPError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	var out gateway.Response
	if err := json.Unmarshal(rb, &out); err != nil {
		return nil, fmt.Errorf("gateway answer: %w", err)
	}
	return &out, nil
}

// HTTPError is a non-202 answer of the message API.
type HTTPError struct {
	Status        int
	Code, Message string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("gateway answered %d %s: %s", e.Status, e.Code, e.Message)
}

// CallbackSink is the dev stand-in for the core's callback endpoint. It
// verifies every callback's Standard Webhooks signature against the
// gateway's public key before it believes it.
type CallbackSink struct {
	pub     []byte
	path    string
	witness *audit.Witness
	srv     *http.Server
	l       net.Listener

	mu       sync.Mutex
	received []callback.Payload
	changed  chan struct{}
}

// ListenCallbacks starts a callback receiver on loopback that appends each
// verified callback to path as a JSON line.
// Checkpoints in the callbacks go to witness, if it is not nil.
func ListenCallbacks(path string, gatewayPub []byte, witness *audit.Witness) (*CallbackSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &CallbackSink{pub: gatewayPub, path: path, witness: witness, l: l, changed: make(chan struct{})}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(l)
	return s, nil
}

func (s *CallbackSink) URL() string { return "http://" + s.l.Addr().String() + "/callbacks" }

func (s *CallbackSink) Close() error {
	err := s.srv.Close()
	if s.witness != nil {
		err = errors.Join(err, s.witness.Close())
	}
	return err
}

// Witness returns the core side's copies of the gateway's checkpoints.
func (s *CallbackSink) Witness() *audit.Witness { return s.witness }

func (s *CallbackSink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	if err := callback.Verify(s.pub, r.Header, body, time.Now(), 5*time.Minute); err != nil {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var pl callback.Payload
	if err := json.Unmarshal(body, &pl); err != nil {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.witness != nil && pl.Checkpoint != "" {
		if err := s.witness.Observe([]byte(pl.Checkpoint)); err != nil {
			// A rollback or a fork of the operator's log: the core would
			// alert; the dev stand-in refuses the callback loudly.
			http.Error(w, "checkpoint refused: "+err.Error(), http.StatusConflict)
			return
		}
	}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err == nil {
		f.Write(append(bytes.TrimSpace(body), '\n'))
		f.Close()
	}
	s.received = append(s.received, pl)
	close(s.changed)
	s.changed = make(chan struct{})
	w.WriteHeader(http.StatusNoContent)
}

// Received returns the callbacks received so far.
func (s *CallbackSink) Received() []callback.Payload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]callback.Payload(nil), s.received...)
}

// Wait blocks until a callback for the core message id with one of the
// given statuses arrives, or ctx ends.
func (s *CallbackSink) Wait(ctx context.Context, id string, statuses ...string) (callback.Payload, error) {
	for {
		s.mu.Lock()
		for _, pl := range s.received {
			if pl.ID != id {
				continue
			}
			for _, st := range statuses {
				if pl.Status == st {
					s.mu.Unlock()
					return pl, nil
				}
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return callback.Payload{}, fmt.Errorf("waiting for callback of %s: %w", id, ctx.Err())
		case <-ch:
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func writeSelfSigned(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "blindpost dev gateway"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
