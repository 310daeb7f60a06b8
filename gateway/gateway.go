// Package gateway is the operator-side service of blindpost. It runs inside
// the operator's network, next to the vault that holds players' PII. It
// accepts sealed, signed message requests from the vendor's core (which
// carry only tokens and pseudonymous ids), checks them against the
// operator's policy, queues them durably, and at send time resolves the
// recipient from the vault, decides again, renders and delivers. Nothing it
// writes to disk outside the vault, and nothing it returns, logs, counts or
// calls back, holds resolved PII.
package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway/admin"
	"github.com/blindpost/blindpost/gateway/callback"
	"github.com/blindpost/blindpost/gateway/compat"
	"github.com/blindpost/blindpost/gateway/queue"
	"github.com/blindpost/blindpost/policy"
	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
	"github.com/blindpost/blindpost/vault/hashivault"
	"github.com/blindpost/blindpost/vault/kv"
	"github.com/blindpost/blindpost/vault/postgres"
	"github.com/prometheus/client_golang/prometheus"
)

// Decider is the policy engine as the pipeline uses it.
type Decider interface {
	Decide(ctx context.Context, in policy.Input) (policy.Decision, error)
}

// EmailSender delivers one rendered email.
type EmailSender interface {
	Send(ctx context.Context, m smtp.Message) (smtp.Result, error)
}

// CallbackPoster posts one signed status callback to the core, or, for the
// compat API, a body of the reference vendor's shape to a request's URL.
type CallbackPoster interface {
	Post(ctx context.Context, url string, p callback.Payload) error
	PostRaw(ctx context.Context, url, tenant string, seq int64, body []byte) error
}

// Options carries what a caller may inject instead of what Open builds from
// the config: tests and `blindpost dev` use them.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Policy overrides the bundle named in the config.
	Policy fs.FS
	// PolicyData overrides the bundle's operator settings.
	PolicyData map[string]any
	// Email overrides the SMTP adapter built from the config; SMS, IM and
	// Push override (or, without config, enable) the other channels.
	Email EmailSender
	SMS   SMSSender
	IM    IMSender
	Push  PushSender
	// PollInterval is how often idle workers look for due work.
	PollInterval time.Duration
}

// Gateway is one running gateway node.
type Gateway struct {
	cfg      *Config
	log      *slog.Logger
	now      func() time.Time
	poll     time.Duration
	opener   *envelope.Opener
	signing  *envelope.SigningKey
	store    vault.Store
	shredder shredder // the record store's deferred erasure, if it has one
	// vaultHealth reports a sealed or unreachable Vault (nil without one).
	vaultHealth func(context.Context) error
	policy      Decider
	evaluator   *policy.Evaluator
	queue       *queue.Queue
	audit       *audit.Log
	email       EmailSender
	channels    *channels
	dkim        map[string]*smtp.DKIM // tenant "/" brand, "/" for the default
	unsub       *unsubscriber         // nil without public.listen

	compat        *compat.Handler // nil unless a tenant enables the compat API
	compatTenants map[string]*compat.Tenant
	calls         CallbackPoster
	tenants       map[string]*Tenant
	admin         *admin.Tokens
	metrics       *metrics

	wake   chan struct{}
	volume volumeCounter // requests per tenant over the last minute (volume guard)

	mu         sync.Mutex
	listeners  []net.Listener
	servers    []*http.Server
	msgAddr    string
	adminAddr  string
	publicAddr string
	closers    []func() error
}

// Open builds a gateway from its config: it loads keys, opens the vault and
// the queue, and compiles the policy. It refuses to start without a valid
// policy bundle, so a gateway never runs without its rules.
func Open(ctx context.Context, cfg *Config, opts Options) (_ *Gateway, err error) {
	g := &Gateway{
		cfg:           cfg,
		log:           opts.Logger,
		now:           opts.Now,
		poll:          opts.PollInterval,
		tenants:       map[string]*Tenant{},
		compatTenants: map[string]*compat.Tenant{},
		metrics:       newMetrics(),
		wake:          make(chan struct{}, 1),
	}
	if g.log == nil {
		g.log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.poll == 0 {
		g.poll = 250 * time.Millisecond
	}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}

	// Keys: every configured HPKE key opens envelopes; the core picks one.
	var rks []*envelope.RecipientKey
	for _, p := range cfg.Keys.HPKE {
		k, err := envelope.LoadRecipientKey(p)
		if err != nil {
			return nil, fmt.Errorf("keys.hpke: %w", err)
		}
		rks = append(rks, k)
	}
	g.signing, err = envelope.LoadSigningKey(cfg.Keys.Signing)
	if err != nil {
		return nil, fmt.Errorf("keys.signing: %w", err)
	}
	senders := envelope.NewSenderKeyring()
	tokens := map[string]string{}
	for i := range cfg.Tenants {
		t := &cfg.Tenants[i]
		g.tenants[t.ID] = t
		for _, p := range t.CoreKeys {
			k, err := envelope.LoadVerifyingKey(p)
			if err != nil {
				return nil, fmt.Errorf("tenants[%d].core_keys: %w", i, err)
			}
			senders.Pin(t.ID, k)
		}
		toks, err := t.adminTokens()
		if err != nil {
			return nil, fmt.Errorf("tenants[%d]: %w", i, err)
		}
		for _, tok := range toks {
			tokens[tok] = t.ID
		}
	}
	g.admin = admin.NewTokens(tokens)
	g.opener = &envelope.Opener{
		Keys:    envelope.NewRecipientKeyring(rks...),
		Senders: senders,
		Replay:  envelope.NewMemoryReplayCache(g.now),
		Now:     g.now,
	}

	// Policy: compiled once, refused if broken; later reloads swap
	// atomically and a broken new bundle leaves the running one in place.
	popts := policy.Options{Now: g.now, OnReloadError: func(err error) {
		g.metrics.policyReloadFailures.Inc()
		g.log.Error("policy reload refused; the running bundle stays", "err", err)
	}}
	if cfg.Policy.BundleKey != "" {
		pem, err := os.ReadFile(cfg.Policy.BundleKey)
		if err != nil {
			return nil, fmt.Errorf("policy.bundle_key: %w", err)
		}
		popts.BundleKeys = []policy.PublicKey{{ID: cfg.Policy.BundleKeyID, Algorithm: cfg.Policy.BundleKeyAlgorithm, PEM: string(pem)}}
	}
	bundle := opts.Policy
	if bundle == nil && cfg.Policy.Bundle != "" {
		if bundle, err = policy.OpenBundle(cfg.Policy.Bundle, popts.BundleKeys...); err != nil {
			return nil, fmt.Errorf("policy.bundle: %w", err)
		}
	}
	if bundle == nil {
		bundle = policy.BundleFS()
	}
	popts.Data = opts.PolicyData
	if popts.Data == nil && cfg.Policy.DataFile != "" {
		b, err := os.ReadFile(cfg.Policy.DataFile)
		if err != nil {
			return nil, fmt.Errorf("policy.data_file: %w", err)
		}
		if err := json.Unmarshal(b, &popts.Data); err != nil {
			return nil, fmt.Errorf("policy.data_file: %w", err)
		}
	}
	ev, err := policy.New(ctx, bundle, popts)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	g.log.Info("policy loaded", "revision", ev.Revision())
	g.evaluator = ev
	g.policy = ev

	// Vault.
	v, err := OpenVault(ctx, cfg, g.log)
	if err != nil {
		return nil, err
	}
	g.closers = append(g.closers, v.Close)
	g.store, g.shredder = v.Store, v.shredder
	if v.Transit != nil {
		g.vaultHealth = v.Transit.Health
		// Here, not in OpenVault: `keys rotate token` opens the vault to
		// create the very version this would refuse.
		if err := checkTokenVersions(ctx, v.Transit, cfg, g.log); err != nil {
			return nil, err
		}
	}
	if v.pending != nil {
		g.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "blindpost_gateway_vault_erasures_pending",
			Help: "Erasures whose dead rows the next shred will remove from the database files.",
		}, v.pending))
	}

	// Queue, and with it the state nodes share.
	if err := g.openQueue(ctx, cfg); err != nil {
		return nil, err
	}

	// Audit log: every envelope, decision, delivery and erasure.
	origin := auditOrigin(cfg, g.signing)
	signer, err := audit.NewSigner(origin, g.signing.Private)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	g.audit, err = audit.Open(filepath.Join(cfg.DataDir, "audit"), signer, audit.Options{
		Origin: origin, Now: g.now, Logger: g.log, CheckpointEvery: time.Duration(cfg.Audit.CheckpointEvery),
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	g.closers = append(g.closers, g.audit.Close)

	g.email = opts.Email
	if g.email == nil {
		s, err := smtpSender(cfg.SMTP)
		if err != nil {
			return nil, fmt.Errorf("smtp: %w", err)
		}
		g.email = s
		g.closers = append(g.closers, s.Close) // QUIT the pooled connections
	}
	if err := g.openChannels(cfg, opts); err != nil {
		return nil, err
	}
	if err := g.openCompat(); err != nil {
		return nil, err
	}
	if cfg.Public.Listen != "" {
		// A node of a cluster never makes its own key: links sealed by
		// the others would not open here, and opt-outs would be lost.
		path, create := cfg.Public.KeyFile, !cfg.Clustered()
		if path == "" {
			path = filepath.Join(cfg.DataDir, "unsubscribe.key")
		}
		key, err := loadUnsubscribeKey(path, create)
		if err != nil {
			return nil, fmt.Errorf("public: %w", err)
		}
		g.unsub = &unsubscriber{key: key, baseURL: cfg.Public.BaseURL, ttl: time.Duration(cfg.Public.UnsubscribeTTL)}
	}
	g.calls = callback.NewClient(g.signing.Private, callback.ClientOptions{
		AllowPrivate: cfg.Callbacks.AllowPrivate,
		Timeout:      10 * time.Second,
		Now:          g.now,
	})
	return g, nil
}

// Vault is the record store and key provider a gateway config names.
type Vault struct {
	Store vault.Store
	Keys  vault.KeyProvider
	// Transit is the Vault/OpenBao key provider, nil on embedded keys.
	Transit *hashivault.Provider

	shredder shredder       // the store's deferred erasure, if it has one
	pending  func() float64 // erasures waiting for the shred, for a gauge
	closers  []func() error
}

// Close closes the store and the key provider.
func (v *Vault) Close() error {
	var errs []error
	for i := len(v.closers) - 1; i >= 0; i-- {
		errs = append(errs, v.closers[i]())
	}
	v.closers = nil
	return errors.Join(errs...)
}

// OpenVault opens the key provider and the record store that cfg.Vault
// names: the gateway's own, and the one `blindpost keys rotate` re-wraps.
func OpenVault(ctx context.Context, cfg *Config, log *slog.Logger) (_ *Vault, err error) {
	v := &Vault{}
	defer func() {
		if err != nil {
			v.Close()
		}
	}()
	if cfg.Vault.Hashicorp.Address != "" {
		hv, err := hashivault.New(ctx, cfg.Vault.Hashicorp, hashivault.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("vault.hashicorp: %w", err)
		}
		v.closers = append(v.closers, hv.Close)
		v.Transit, v.Keys = hv, hv
	} else {
		lp, err := keyProvider(cfg.Vault.Embedded)
		if err != nil {
			return nil, fmt.Errorf("vault.embedded: %w", err)
		}
		v.closers = append(v.closers, lp.Close) // clears the derived keys
		v.Keys = lp
	}
	// Every store mints tokens under the pinned version and, during a
	// re-tokenisation, indexes them under the also_index versions too.
	pin, also := cfg.Vault.PinnedTokenVersion(), cfg.Vault.TokenVersions.AlsoIndex

	switch pc := cfg.Vault.Postgres; {
	case cfg.Vault.KV.Enabled:
		st, err := kv.New(v.Transit.Client(), v.Keys, kv.Options{Mount: cfg.Vault.KV.Mount, Prefix: cfg.Vault.KV.Prefix,
			TokenVersion: pin, ExtraTokenVersions: also})
		if err != nil {
			return nil, fmt.Errorf("vault.kv: %w", err)
		}
		v.closers = append(v.closers, st.Close)
		if err := st.Check(ctx); err != nil {
			return nil, fmt.Errorf("vault.kv: %w", err)
		}
		v.Store = st
	case pc.DSNEnv != "":
		dsn, err := env("vault.postgres.dsn_env", pc.DSNEnv)
		if err != nil {
			return nil, err
		}
		st, err := postgres.Open(ctx, dsn, v.Keys, postgres.Options{Schema: pc.Schema, ShredOnErase: pc.ShredOnErase, Logger: log,
			TokenVersion: pin, ExtraTokenVersions: also})
		if err != nil {
			return nil, fmt.Errorf("vault.postgres: %w", err)
		}
		v.closers = append(v.closers, st.Close)
		v.Store, v.shredder = st, st
		v.pending = func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			n, _, err := st.Pending(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}
	default:
		st, err := embedded.Open(cfg.Vault.Embedded.Path, v.Keys, embedded.Options{TokenVersion: pin, ExtraTokenVersions: also})
		if err != nil {
			return nil, fmt.Errorf("vault.embedded: %w", err)
		}
		v.closers = append(v.closers, st.Close)
		v.Store = st
	}
	return v, nil
}

// openQueue opens the queue: the embedded file that this node alone owns,
// or, for a cluster, the PostgreSQL schema every node shares, which then
// also keeps the envelope nonces and the volume guard's counters.
func (g *Gateway) openQueue(ctx context.Context, cfg *Config) error {
	opts := queue.Options{Now: g.now, Logger: g.log, Node: cfg.Cluster.Node, Schema: cfg.Cluster.Postgres.Schema}
	if !cfg.Clustered() {
		q, err := queue.Open(filepath.Join(cfg.DataDir, "queue.db"), opts)
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		g.queue = q
		g.closers = append(g.closers, q.Close)
		g.volume = &rateWindow{}
		// One node owns the embedded queue: leases held by a process that
		// died are over the moment this one starts.
		if err := q.ReleaseLeases(ctx); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		return nil
	}
	dsn, err := env("cluster.postgres.dsn_env", cfg.Cluster.Postgres.DSNEnv)
	if err != nil {
		return err
	}
	q, err := queue.OpenPostgres(ctx, dsn, opts)
	if err != nil {
		return fmt.Errorf("cluster.postgres: %w", err)
	}
	g.queue = q
	g.closers = append(g.closers, q.Close)
	g.volume = q
	g.opener.Replay = q // a nonce seen by any node is a replay on every node
	// Only this node's own leases: the other nodes are alive, and a dead
	// one's leases run out by themselves.
	if err := q.ReleaseLeases(ctx); err != nil {
		return fmt.Errorf("cluster.postgres: %w", err)
	}
	return nil
}

// checkTokenVersions makes sure Transit holds every token key version the
// config indexes under, for every tenant: a version configured before
// `blindpost keys rotate token` created it would fail every Put. It asks
// for a MAC under each version, which the gateway's own policy allows
// (reading the key's status needs the admin's). A Vault that cannot answer
// now is no reason to refuse to start: messages wait for it as always.
func checkTokenVersions(ctx context.Context, p *hashivault.Provider, cfg *Config, log *slog.Logger) error {
	versions := append([]int{cfg.Vault.PinnedTokenVersion()}, cfg.Vault.TokenVersions.AlsoIndex...)
	for _, t := range cfg.Tenants {
		for _, ver := range versions {
			_, err := p.TokenMAC(ctx, t.ID, ver, []byte("blindpost-token-version-probe"))
			// Vault answering 4xx has decided (no such version, or the
			// policy does not allow it); anything else is Vault not able
			// to answer now.
			var he *hashivault.Error
			switch {
			case err == nil:
			case !errors.As(err, &he) || he.Status < 400 || he.Status >= 500:
				log.Warn("token key versions not checked: Vault unavailable", "tenant", t.ID, "err", err)
				return nil
			default:
				return fmt.Errorf("vault.token_versions: tenant %s has no usable token key version %d in Transit (create it with `blindpost keys rotate token --to %d` first): %w",
					t.ID, ver, ver, err)
			}
		}
	}
	return nil
}

func keyProvider(c EmbeddedVaultConfig) (*embedded.LocalKeyProvider, error) {
	if c.PassphraseEnv != "" {
		pass := os.Getenv(c.PassphraseEnv)
		if pass == "" {
			return nil, fmt.Errorf("passphrase_env: $%s is empty", c.PassphraseEnv)
		}
		return embedded.NewPassphraseProvider([]byte(pass), c.Path+".salt")
	}
	return embedded.NewKeyFileProvider(c.KeyFile)
}

func smtpSender(c SMTPConfig) (*smtp.Sender, error) {
	sc := smtp.Config{
		Addr:     c.Addr,
		HeloName: c.Helo,
		TLS:      smtp.TLSMode(c.TLS),
		Username: c.Username,
		Timeout:  time.Duration(c.Timeout),
		Pool: smtp.PoolConfig{MaxConns: c.Pool.MaxConns, MaxIdle: c.Pool.MaxIdle,
			IdleTimeout: time.Duration(c.Pool.IdleTimeout), MaxMessagesPerConn: c.Pool.MaxMessagesPerConn,
			HealthCheckAfter: time.Duration(c.Pool.HealthCheckAfter)},
	}
	if c.PasswordEnv != "" {
		sc.Password = os.Getenv(c.PasswordEnv)
	}
	if c.CAFile != "" {
		pool, err := loadCertPool(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		host, _, _ := net.SplitHostPort(c.Addr)
		sc.TLSConfig = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return smtp.NewSender(sc), nil
}

func loadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificates found")
	}
	return pool, nil
}

// adminTokens reads the tenant's admin tokens: from an environment variable
// (comma-separated) or a file (one per line). Several may be valid at once
// so they can be rotated.
func (t *Tenant) adminTokens() ([]string, error) {
	var raw string
	if t.AdminTokensEnv != "" {
		raw = os.Getenv(t.AdminTokensEnv)
	}
	if t.AdminTokensFile != "" {
		b, err := os.ReadFile(t.AdminTokensFile)
		if err != nil {
			return nil, fmt.Errorf("admin_tokens_file: %w", err)
		}
		raw += "\n" + string(b)
	}
	var out []string
	for _, f := range strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if f = strings.TrimSpace(f); f != "" {
			if len(f) < 32 {
				return nil, errors.New("admin token shorter than 32 characters")
			}
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no admin token configured")
	}
	return out, nil
}

// Store returns the gateway's vault (for in-process tools such as `dev`).
func (g *Gateway) Store() vault.Store { return g.store }

// AuditOrigin is the origin of the gateway's audit log.
func (g *Gateway) AuditOrigin() string { return auditOrigin(g.cfg, g.signing) }

// Listen binds the message and admin listeners. It is separate from Serve so
// callers learn the addresses (port 0 in tests) before traffic flows.
func (g *Gateway) Listen() error {
	msgHandler := g.messageHandler()
	adminMux := http.NewServeMux()
	adminMux.Handle("/v1/", admin.NewHandler(auditedStore{g.store, g}, g.admin, g.onErase, g.log))
	adminMux.Handle("GET /metrics", g.metricsHandler())
	adminMux.HandleFunc("GET /healthz", g.healthz)
	adminMux.HandleFunc("GET /readyz", g.readyz)

	ml, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	msrv := &http.Server{Handler: msgHandler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)}
	if g.cfg.TLS.CertFile != "" {
		tc, err := g.serverTLS()
		if err != nil {
			ml.Close()
			return fmt.Errorf("tls: %w", err)
		}
		msrv.TLSConfig = tc
		ml = tls.NewListener(ml, tc)
	}
	al, err := net.Listen("tcp", g.cfg.AdminListen)
	if err != nil {
		ml.Close()
		return fmt.Errorf("admin_listen: %w", err)
	}
	asrv := &http.Server{Handler: adminMux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)}
	g.mu.Lock()
	g.listeners = append(g.listeners, ml, al)
	g.servers = append(g.servers, msrv, asrv)
	g.msgAddr, g.adminAddr = ml.Addr().String(), al.Addr().String()
	g.mu.Unlock()
	if g.cfg.Public.Listen != "" {
		mux := http.NewServeMux()
		mux.Handle("/u/", g.unsubscribeHandler())
		for path, h := range g.channels.receipts {
			mux.Handle("POST "+path, h)
		}
		l, err := net.Listen("tcp", g.cfg.Public.Listen)
		if err != nil {
			return fmt.Errorf("public.listen: %w", err)
		}
		if g.cfg.Public.TLS {
			cert, err := tls.LoadX509KeyPair(g.cfg.TLS.CertFile, g.cfg.TLS.KeyFile)
			if err != nil {
				l.Close()
				return fmt.Errorf("public.tls: %w", err)
			}
			l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		}
		g.mu.Lock()
		g.listeners = append(g.listeners, l)
		g.servers = append(g.servers, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)})
		g.publicAddr = l.Addr().String()
		if g.unsub.baseURL == "" {
			// A loopback TLS listener without a base URL: links point at
			// it directly (development only; Validate insists otherwise).
			g.unsub.baseURL = "https://" + g.publicAddr
		}
		g.mu.Unlock()
	}
	if g.cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", g.metricsHandler())
		l, err := net.Listen("tcp", g.cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics_listen: %w", err)
		}
		g.mu.Lock()
		g.listeners = append(g.listeners, l)
		g.servers = append(g.servers, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})
		g.mu.Unlock()
	}
	return nil
}

func (g *Gateway) serverTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(g.cfg.TLS.CertFile, g.cfg.TLS.KeyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if g.cfg.TLS.ClientCAFile != "" {
		pool, err := loadCertPool(g.cfg.TLS.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_ca_file: %w", err)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// MessageAddr and AdminAddr are the bound addresses after Listen.
func (g *Gateway) MessageAddr() string { g.mu.Lock(); defer g.mu.Unlock(); return g.msgAddr }
func (g *Gateway) AdminAddr() string   { g.mu.Lock(); defer g.mu.Unlock(); return g.adminAddr }

// PublicAddr is the bound address of the public listener ("" without one).
func (g *Gateway) PublicAddr() string { g.mu.Lock(); defer g.mu.Unlock(); return g.publicAddr }

// Serve runs the listeners and the workers until ctx ends, then shuts the
// servers down gracefully. Listen must have been called.
func (g *Gateway) Serve(ctx context.Context) error { return g.serve(ctx, true) }

// ServeListeners runs only the listeners, without the send and callback workers;
// the caller drives SendDue and PostCallbacks (tests and tools).
func (g *Gateway) ServeListeners(ctx context.Context) error { return g.serve(ctx, false) }

func (g *Gateway) serve(ctx context.Context, workers bool) error {
	g.mu.Lock()
	ls, ss := g.listeners, g.servers
	g.mu.Unlock()
	if len(ls) == 0 {
		return errors.New("gateway: Serve before Listen")
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(ls))
	for i := range ls {
		wg.Add(1)
		go func(l net.Listener, s *http.Server) {
			defer wg.Done()
			if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}(ls[i], ss[i])
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if p := g.cfg.Policy; p.Bundle != "" && p.ReloadInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); g.evaluator.Watch(wctx, p.Bundle, time.Duration(p.ReloadInterval)) }()
	}
	if workers && g.shredder != nil && !g.cfg.Vault.Postgres.ShredOnErase {
		wg.Add(1)
		go func() { defer wg.Done(); g.shredLoop(wctx) }()
	}
	if workers {
		for i := 0; i < g.cfg.Send.Workers; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); g.sendLoop(wctx) }()
		}
		wg.Add(1)
		go func() { defer wg.Done(); g.callbackLoop(wctx) }()
	}
	g.log.Info("gateway serving", "listen", g.MessageAddr(), "admin", g.AdminAddr(), "tenants", len(g.tenants))

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	for _, s := range ss {
		s.Shutdown(sctx)
	}
	wg.Wait()
	return err
}

// Close releases the vault and the queue.
func (g *Gateway) Close() error {
	var errs []error
	for i := len(g.closers) - 1; i >= 0; i-- {
		errs = append(errs, g.closers[i]())
	}
	g.closers = nil
	return errors.Join(errs...)
}

func (g *Gateway) kick() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *Gateway) healthz(w http.ResponseWriter, r *http.Request) {
	w.Write([]byte("ok\n"))
}

func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	if _, err := g.queue.Len(r.Context()); err != nil {
		http.Error(w, "queue unavailable", http.StatusServiceUnavailable)
		return
	}
	// A sealed or unreachable Vault resolves nothing: messages wait.
	if g.vaultHealth != nil {
		if err := g.vaultHealth(r.Context()); err != nil {
			http.Error(w, "vault unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	// A log that failed a write refuses every append until restarted, and
	// the gateway then neither accepts nor sends: not ready.
	if _, err := g.audit.Checkpoint(r.Context()); err != nil {
		http.Error(w, "audit log unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}
