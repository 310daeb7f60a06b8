// Package core is the vendor-side service of blindpost: it ingests the
// operators' player events (the events API, Kafka, RabbitMQ, SQL views),
// passes them through the PII firewall, and keeps the players' state from
// which automation acts. It knows players only by the operator's
// pseudonymous ids and by opaque tokens: nothing it stores, logs, counts or
// returns holds PII (DESIGN.md §2, §8).
//
// This file wires one core node from its Config: Open builds the store, the
// pipeline and the connectors, Listen binds the listeners, Serve runs them.
package core

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/blindpost/blindpost/adapters/dbviews"
	"github.com/blindpost/blindpost/adapters/kafka"
	"github.com/blindpost/blindpost/adapters/rabbitmq"
	"github.com/blindpost/blindpost/core/admin"
	"github.com/blindpost/blindpost/core/eventsapi"
	"github.com/blindpost/blindpost/core/firewall"
	"github.com/blindpost/blindpost/core/ingest"
	"github.com/blindpost/blindpost/core/store"
)

// Options carries what a caller may inject instead of what Open reads from
// the config and the environment: tests and `blindpost core init` use them.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	// AdminTokens, if set, replaces the tokens read from admin_token_env.
	AdminTokens []string
	// Getenv reads the environment variables the config names (default
	// os.Getenv).
	Getenv func(string) string
}

// Core is one running core node.
type Core struct {
	cfg        *Config
	log        *slog.Logger
	store      *store.Store
	pipeline   *ingest.Pipeline
	admin      *admin.Admin
	tokens     *admin.Tokens
	reg        *prometheus.Registry
	connectors []connector

	mu          sync.Mutex
	listeners   []net.Listener
	servers     []*http.Server
	eventsAddr  string
	adminAddr   string
	metricsAddr string
	closers     []func() error
}

// connector is one configured ingestion connector, ready to Run.
type connector struct {
	name string // kind and index, for logs: "kafka[0]"
	run  func(ctx context.Context) error
}

// Open builds a core node from its config: it opens the store, the
// pipeline and the connectors. It refuses to start with a connector whose
// label does not exist: its events would be refused one by one.
func Open(ctx context.Context, cfg *Config, opts Options) (_ *Core, err error) {
	c := &Core{cfg: cfg, log: opts.Logger, reg: prometheus.NewRegistry()}
	if c.log == nil {
		c.log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	c.store, err = OpenStore(ctx, cfg, StoreOptions{Logger: c.log, Now: opts.Now, Getenv: getenv})
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, c.store.Close)

	c.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fw := firewall.New(firewall.Options{PIIProperties: cfg.Firewall.PIIProperties, AllowProperties: cfg.Firewall.AllowProperties})
	c.pipeline = ingest.New(c.store, fw, ingest.Options{Logger: c.log, Registerer: c.reg, Now: opts.Now})
	c.admin = admin.New(c.store, c.pipeline.Invalidate)
	gatewayKeys, err := cfg.LoadGatewayKeys()
	if err != nil {
		return nil, err
	}
	c.admin.SetGatewayKeys(gatewayKeys)

	if opts.AdminTokens != nil {
		c.tokens, err = admin.NewTokens(opts.AdminTokens)
	} else {
		c.tokens, err = admin.ParseTokens(getenv(cfg.AdminTokenEnv))
	}
	if err != nil {
		return nil, fmt.Errorf("admin_token_env: $%s: %w", cfg.AdminTokenEnv, err)
	}
	if c.tokens.Len() == 0 {
		c.log.Warn("no admin token: the admin API refuses every request; set the variable admin_token_env names", "admin_token_env", cfg.AdminTokenEnv)
	}

	for i := range cfg.Connectors {
		if err := c.openConnector(ctx, i, getenv); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// StoreOptions are OpenStore's dependencies.
type StoreOptions struct {
	Logger *slog.Logger
	Now    func() time.Time
	Getenv func(string) string // default os.Getenv
}

// OpenStore opens the store the config names: the SQLite file in data_dir,
// or the PostgreSQL schema whose DSN is in store.dsn_env. The CLI's label
// and key commands use it directly.
func OpenStore(ctx context.Context, cfg *Config, opts StoreOptions) (*store.Store, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	sc := store.Config{Driver: cfg.Store.Driver, Schema: cfg.Store.Schema, Logger: opts.Logger, Now: opts.Now}
	switch cfg.Store.Driver {
	case store.DriverPostgres:
		sc.DSN = getenv(cfg.Store.DSNEnv)
		if sc.DSN == "" {
			return nil, fmt.Errorf("store.dsn_env: $%s is empty", cfg.Store.DSNEnv)
		}
	default:
		sc.Path = cfg.Store.Path
		if sc.Path == "" {
			sc.Path = "core.db"
		}
		if !filepath.IsAbs(sc.Path) {
			sc.Path = filepath.Join(cfg.DataDir, sc.Path)
		}
		if err := os.MkdirAll(filepath.Dir(sc.Path), 0o700); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	st, err := store.Open(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return st, nil
}

// connectorTLS builds a connector's TLS client config; nil without one.
func connectorTLS(t *ConnectorTLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return nil, errors.New("ca_file: no PEM certificate")
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (c *Core) openConnector(ctx context.Context, i int, getenv func(string) string) error {
	cc := c.cfg.Connectors[i]
	name := fmt.Sprintf("%s[%d]", cc.Kind, i)
	field := fmt.Sprintf("connectors[%d]", i)
	if _, err := c.store.Label(ctx, cc.Label); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s.label: no label %q; create it first (blindpost core labels create)", field, cc.Label)
		}
		return fmt.Errorf("%s.label: %w", field, err)
	}
	log := c.log.With("connector", name, "label", cc.Label)
	sink := c.pipeline.SinkFor(cc.Label)
	tc, err := connectorTLS(cc.TLS)
	if err != nil {
		return fmt.Errorf("%s.tls: %w", field, err)
	}
	switch cc.Kind {
	case KindKafka:
		var opts []kgo.Opt
		if cc.InstanceID != "" {
			opts = append(opts, kgo.InstanceID(cc.InstanceID))
		}
		if cc.SessionTimeout != 0 {
			opts = append(opts, kgo.SessionTimeout(time.Duration(cc.SessionTimeout)))
		}
		if tc != nil {
			opts = append(opts, kgo.DialTLSConfig(tc))
		}
		if a := cc.SASL; a != nil {
			pass := getenv(a.PasswordEnv)
			if pass == "" {
				return fmt.Errorf("%s.sasl.password_env: $%s is empty", field, a.PasswordEnv)
			}
			switch a.Mechanism {
			case "PLAIN":
				opts = append(opts, kgo.SASL(plain.Auth{User: a.Username, Pass: pass}.AsMechanism()))
			case "SCRAM-SHA-256":
				opts = append(opts, kgo.SASL(scram.Auth{User: a.Username, Pass: pass}.AsSha256Mechanism()))
			case "SCRAM-SHA-512":
				opts = append(opts, kgo.SASL(scram.Auth{User: a.Username, Pass: pass}.AsSha512Mechanism()))
			}
		}
		k, err := kafka.New(kafka.Config{Brokers: cc.Brokers, Topic: cc.Topic, Group: cc.Group, BatchSize: cc.BatchSize}, sink,
			kafka.Options{Logger: log, ClientOpts: opts})
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		c.connectors = append(c.connectors, connector{name, k.Run})
	case KindRabbitMQ:
		url := getenv(cc.URLEnv)
		if url == "" {
			return fmt.Errorf("%s.url_env: $%s is empty", field, cc.URLEnv)
		}
		r, err := rabbitmq.New(rabbitmq.Config{URL: url, Queue: cc.Queue, BatchSize: cc.BatchSize, Linger: time.Duration(cc.Linger)}, sink,
			rabbitmq.Options{Logger: log, TLS: tc})
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		c.connectors = append(c.connectors, connector{name, r.Run})
	case KindDBViews:
		dsn := getenv(cc.DSNEnv)
		if dsn == "" {
			return fmt.Errorf("%s.dsn_env: $%s is empty", field, cc.DSNEnv)
		}
		dc := dbviews.Config{Source: cc.Source, Driver: cc.Driver, DSN: dsn, View: cc.View, Watermark: cc.Watermark,
			WatermarkType: cc.WatermarkType, OverlapCount: cc.OverlapCount, BatchSize: cc.BatchSize, Poll: time.Duration(cc.Poll)}
		if cc.Overlap != nil {
			dc.Overlap = time.Duration(*cc.Overlap)
		}
		if dc.Source == "" {
			// Two labels may read views of one name in different
			// databases: the label keeps their checkpoints apart.
			dc.Source = fmt.Sprintf("dbviews/%s/%s/%s", cc.Label, cc.Driver, cc.View)
		}
		p, err := dbviews.New(dc, sink, c.store, dbviews.Options{Logger: log})
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		c.closers = append(c.closers, p.Close)
		c.connectors = append(c.connectors, connector{name, p.Run})
	default:
		return fmt.Errorf("%s.kind: %q", field, cc.Kind)
	}
	return nil
}

// Store is the core's store (for in-process tools and tests).
func (c *Core) Store() *store.Store { return c.store }

// Pipeline is the core's ingestion pipeline.
func (c *Core) Pipeline() *ingest.Pipeline { return c.pipeline }

// Admin manages the core's labels and keys.
func (c *Core) Admin() *admin.Admin { return c.admin }

// Listen binds the events, admin and metrics listeners. It is separate from
// Serve so callers learn the addresses (port 0 in tests) before traffic
// flows.
func (c *Core) Listen() (err error) {
	defer func() {
		if err != nil {
			c.closeListeners()
		}
	}()
	errLog := slog.NewLogLogger(c.log.Handler(), slog.LevelWarn)

	events := http.NewServeMux()
	events.Handle(eventsapi.Path, eventsapi.NewHandler(c.pipeline, eventsapi.Options{Logger: c.log, Registerer: c.reg}))
	events.HandleFunc("GET /healthz", c.healthz)
	events.HandleFunc("GET /readyz", c.readyz)
	el, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if c.cfg.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.cfg.TLS.CertFile, c.cfg.TLS.KeyFile)
		if err != nil {
			el.Close()
			return fmt.Errorf("tls: %w", err)
		}
		el = tls.NewListener(el, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	// A 10 MB batch over a slow link takes a while; the limits bound a
	// client that trickles.
	c.add(el, &http.Server{Handler: events, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		WriteTimeout: 3 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: errLog})

	adm := http.NewServeMux()
	ah := admin.NewHandler(c.admin, c.tokens, c.log)
	adm.Handle("/v1/", ah)
	adm.Handle("/api/players/", ah)
	adm.Handle("GET /metrics", c.metricsHandler())
	adm.HandleFunc("GET /healthz", c.healthz)
	adm.HandleFunc("GET /readyz", c.readyz)
	al, err := net.Listen("tcp", c.cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("admin_listen: %w", err)
	}
	c.add(al, &http.Server{Handler: adm, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: errLog})

	c.mu.Lock()
	c.eventsAddr, c.adminAddr = el.Addr().String(), al.Addr().String()
	c.mu.Unlock()

	if c.cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", c.metricsHandler())
		ml, err := net.Listen("tcp", c.cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics_listen: %w", err)
		}
		c.add(ml, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog})
		c.mu.Lock()
		c.metricsAddr = ml.Addr().String()
		c.mu.Unlock()
	}
	return nil
}

func (c *Core) add(l net.Listener, s *http.Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listeners = append(c.listeners, l)
	c.servers = append(c.servers, s)
}

func (c *Core) closeListeners() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.listeners {
		l.Close()
	}
	c.listeners, c.servers = nil, nil
}

// EventsAddr, AdminAddr and MetricsAddr are the bound addresses after
// Listen ("" for a listener not configured).
func (c *Core) EventsAddr() string  { c.mu.Lock(); defer c.mu.Unlock(); return c.eventsAddr }
func (c *Core) AdminAddr() string   { c.mu.Lock(); defer c.mu.Unlock(); return c.adminAddr }
func (c *Core) MetricsAddr() string { c.mu.Lock(); defer c.mu.Unlock(); return c.metricsAddr }

func (c *Core) metricsHandler() http.Handler {
	return promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelWarn)})
}

// Serve runs the listeners and the connectors until ctx ends, then shuts
// the servers down gracefully and waits for the connectors to stop (each
// acknowledges what the store holds before it returns). Listen must have
// been called.
func (c *Core) Serve(ctx context.Context) error {
	c.mu.Lock()
	ls, ss := c.listeners, c.servers
	c.mu.Unlock()
	if len(ls) == 0 {
		return errors.New("core: Serve before Listen")
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(ls))
	for i := range ls {
		wg.Go(func() {
			if err := ss[i].Serve(ls[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, cn := range c.connectors {
		wg.Go(func() { c.runConnector(cctx, cn) })
	}
	c.log.Info("core serving", "listen", c.EventsAddr(), "admin", c.AdminAddr(), "connectors", len(c.connectors))

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

// runConnector runs one connector until ctx ends. The connectors retry
// their own failures; one that returns an error before ctx ends (a client
// it cannot build, an unreadable checkpoint) is logged and started again
// after a pause, so one broken source never stops the others or the API.
func (c *Core) runConnector(ctx context.Context, cn connector) {
	wait := time.Second
	for {
		err := cn.run(ctx)
		if ctx.Err() != nil {
			return
		}
		c.log.Error("connector stopped; restarting", "connector", cn.name, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// Close releases the store and the connectors' database handles. Call it
// after Serve has returned.
func (c *Core) Close() error {
	c.closeListeners()
	var errs []error
	for i := len(c.closers) - 1; i >= 0; i-- {
		errs = append(errs, c.closers[i]())
	}
	c.closers = nil
	return errors.Join(errs...)
}

func (c *Core) healthz(w http.ResponseWriter, r *http.Request) {
	w.Write([]byte("ok\n"))
}

// readyz answers ready when the store answers: without it nothing can be
// acknowledged. Connectors retry on their own and do not affect it.
func (c *Core) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := c.store.Ping(ctx); err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}
