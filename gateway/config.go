package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/blindpost/blindpost/vault/embedded"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// Config is the gateway's configuration file. Decoding is strict: an unknown
// key is an error, because a misspelt security setting silently ignored is
// worse than a gateway that refuses to start.
type Config struct {
	Listen        string         `yaml:"listen"`
	TLS           TLSConfig      `yaml:"tls"`
	AdminListen   string         `yaml:"admin_listen"`
	MetricsListen string         `yaml:"metrics_listen"`
	DataDir       string         `yaml:"data_dir"`
	Keys          KeysConfig     `yaml:"keys"`
	Vault         VaultConfig    `yaml:"vault"`
	Policy        PolicyConfig   `yaml:"policy"`
	SMTP          SMTPConfig     `yaml:"smtp"`
	SMS           SMSConfig      `yaml:"sms"`
	Telegram      TelegramConfig `yaml:"telegram"`
	Push          PushConfig     `yaml:"push"`
	Public        PublicConfig   `yaml:"public"`
	Compat        CompatConfig   `yaml:"compat"`
	Send          SendConfig     `yaml:"send"`
	Callbacks     CallbackConf   `yaml:"callbacks"`
	Audit         AuditConfig    `yaml:"audit"`
	Cluster       ClusterConfig  `yaml:"cluster"`
	Tenants       []Tenant       `yaml:"tenants"`
}

// ClusterConfig lets several gateway nodes serve one operator. With
// postgres.dsn_env set, everything the nodes must agree on lives in that
// PostgreSQL database: the queue with its leases, the remembered answers,
// the envelope nonces, the frequency caps, the volume guard and the
// status-callback outbox. Each node keeps its own audit log in its data_dir,
// named by Node in its checkpoints, so no node ever waits for another to
// append; see docs/multi-node.md.
type ClusterConfig struct {
	// Node names this node: unique among the nodes and the same across
	// restarts, so a restarted node takes back its own in-flight messages at
	// once (a dead node's leases run out and the others take them then).
	Node     string                `yaml:"node"`
	Postgres ClusterPostgresConfig `yaml:"postgres"`
}

// ClusterPostgresConfig is the shared state's database.
type ClusterPostgresConfig struct {
	// DSNEnv names the environment variable holding the connection string
	// (it carries a password, so it is never in the file).
	DSNEnv string `yaml:"dsn_env"`
	Schema string `yaml:"schema"` // default blindpost_queue
}

// Clustered reports whether the nodes share their state in PostgreSQL.
func (c *Config) Clustered() bool { return c.Cluster.Postgres.DSNEnv != "" }

// TLSConfig configures the message listener. An empty CertFile serves plain
// HTTP, which Validate allows only on a loopback address.
type TLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// KeysConfig names the gateway's private keys. Several HPKE keys may be
// served at once so the core can move to a new one without downtime.
type KeysConfig struct {
	HPKE    []string `yaml:"hpke"`
	Signing string   `yaml:"signing"`
}

type VaultConfig struct {
	// Embedded holds the key-encryption key settings (key_file or
	// passphrase_env), used by every record store, and the embedded
	// store's file, used unless Postgres is configured.
	Embedded EmbeddedVaultConfig `yaml:"embedded"`
	// Postgres, when its dsn_env is set, keeps the records in PostgreSQL
	// instead, where several gateway nodes share them.
	Postgres PostgresVaultConfig `yaml:"postgres"`
	// Hashicorp, when its address is set, keeps the key-encryption and
	// token keys in Vault/OpenBao Transit instead of the local key file
	// (vault/hashivault). `blindpost vault setup` creates the keys.
	Hashicorp hashivault.Config `yaml:"hashicorp"`
	// KV keeps the records in Vault's KV v2 engine (vault/kv), reached
	// with the hashicorp settings: PII nowhere but in Vault.
	KV KVVaultConfig `yaml:"kv"`
	// TokenVersions pins the token key version and names the versions a
	// re-tokenisation indexes as well (docs/key-rotation.md §5).
	TokenVersions TokenVersionsConfig `yaml:"token_versions"`
}

// TokenVersionsConfig is which token key versions the record store mints
// and indexes tokens under. Every node sharing a record store must agree.
type TokenVersionsConfig struct {
	// Pinned is the version new tokens use; 0 means 1. With
	// vault.hashicorp the pin is vault.hashicorp.token_key_version: leave
	// this 0 or set it alike.
	Pinned int `yaml:"pinned"`
	// AlsoIndex are versions every record is indexed under as well, so
	// that tokens of them resolve too: the new version before the
	// switch, the old one after it, none otherwise.
	AlsoIndex []int `yaml:"also_index"`
}

// PinnedTokenVersion is the token key version new tokens use.
func (c VaultConfig) PinnedTokenVersion() int {
	switch {
	case c.Hashicorp.Address != "" && c.Hashicorp.TokenKeyVersion > 0:
		return c.Hashicorp.TokenKeyVersion
	case c.Hashicorp.Address != "":
		return hashivault.DefaultTokenKeyVersion
	case c.TokenVersions.Pinned > 0:
		return c.TokenVersions.Pinned
	}
	return embedded.DefaultTokenVersion
}

// KVVaultConfig selects the Vault KV v2 record store.
type KVVaultConfig struct {
	Enabled bool   `yaml:"enabled"`
	Mount   string `yaml:"mount"`  // default "secret"
	Prefix  string `yaml:"prefix"` // default "blindpost"
}

// PostgresVaultConfig configures the PostgreSQL record store (vault/postgres).
type PostgresVaultConfig struct {
	// DSNEnv names the environment variable holding the connection string
	// (it carries a password, so it is never in the file).
	DSNEnv string `yaml:"dsn_env"`
	Schema string `yaml:"schema"` // default blindpost_vault
	// ShredInterval is how often erased subjects' dead rows are rewritten
	// out of the tables (crypto-shredding completes then); default 1h.
	// ShredOnErase does it within every erasure instead (small stores).
	ShredInterval Duration `yaml:"shred_interval"`
	ShredOnErase  bool     `yaml:"shred_on_erase"`
}

type EmbeddedVaultConfig struct {
	Path          string `yaml:"path"`
	KeyFile       string `yaml:"key_file"`
	PassphraseEnv string `yaml:"passphrase_env"`
}

type PolicyConfig struct {
	// Bundle is a directory of .rego files and a data.json, or a signed OPA
	// bundle tarball (.tar.gz) verified with BundleKey; empty means the
	// bundle compiled into the binary.
	Bundle string `yaml:"bundle"`
	// BundleKey verifies a bundle tarball's signature: a PEM public key
	// file; BundleKeyAlgorithm is its JWS algorithm (default RS256, as
	// `opa build --signing-key`; e.g. ES256, EdDSA); BundleKeyID the key id
	// the signature names (default "default").
	BundleKey          string `yaml:"bundle_key"`
	BundleKeyAlgorithm string `yaml:"bundle_key_algorithm"`
	BundleKeyID        string `yaml:"bundle_key_id"`
	// ReloadInterval, if set, polls Bundle and swaps in a changed bundle
	// atomically; a broken one is refused, the running one stays, and the
	// failure is logged and counted.
	ReloadInterval Duration `yaml:"reload_interval"`
	// DataFile holds the operator's settings (JSON, the shape of the
	// bundle's data.json), merged over the bundle's defaults: sender
	// domains, purposes, caps, quiet hours, per tenant and brand. Rules and
	// settings stay apart, so auditors review one and operators edit the
	// other.
	DataFile string `yaml:"data_file"`
}

type SMTPConfig struct {
	Addr        string         `yaml:"addr"`
	Helo        string         `yaml:"helo"`
	TLS         string         `yaml:"tls"`
	CAFile      string         `yaml:"ca_file"`
	Username    string         `yaml:"username"`
	PasswordEnv string         `yaml:"password_env"`
	Timeout     Duration       `yaml:"timeout"`
	Pool        SMTPPoolConfig `yaml:"pool"`
	DKIM        []DKIMKey      `yaml:"dkim"`
	Throttle    ThrottleConfig `yaml:"throttle"`
}

type SendConfig struct {
	Workers     int      `yaml:"workers"`
	MaxAttempts int      `yaml:"max_attempts"`
	MaxAge      Duration `yaml:"max_age"`
	Lease       Duration `yaml:"lease"`
}

type CallbackConf struct {
	// AllowPrivate lets callbacks reach loopback and private addresses. Only
	// `blindpost dev` sets it: a production gateway sits inside the
	// operator's network and must not be steered into it.
	AllowPrivate bool `yaml:"allow_private"`
}

// AuditConfig configures the tamper-evident log in data_dir/audit.
type AuditConfig struct {
	// Origin names the log in its signed checkpoints; empty means
	// "blindpost.gateway/<signing key id>".
	Origin string `yaml:"origin"`
	// CheckpointEvery is how often a new checkpoint is signed while the
	// log grows.
	CheckpointEvery Duration `yaml:"checkpoint_every"`
}

// Tenant is one operator label served by this gateway.
type Tenant struct {
	ID              string   `yaml:"id"`
	CoreKeys        []string `yaml:"core_keys"`
	AdminTokensEnv  string   `yaml:"admin_tokens_env"`
	AdminTokensFile string   `yaml:"admin_tokens_file"`
	CallbackURL     string   `yaml:"callback_url"`
	// Compat enables the reference vendor's API for this tenant.
	Compat TenantCompat `yaml:"compat"`
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 30s, 2m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// validNodeName keeps node names to what reads well in a log origin.
func validNodeName(s string) error {
	if len(s) > 64 {
		return errors.New("at most 64 characters")
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q: only letters, digits, '-', '_' and '.'", s)
		}
	}
	return nil
}

// ErrConfig marks every configuration error.
var ErrConfig = errors.New("config")

// LoadConfig reads, strictly decodes, defaults and validates a config file.
// Relative paths in it are taken relative to the file's directory.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	cfg, err := ParseConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	cfg.resolvePaths(base)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes a config strictly and fills in defaults, without
// validating it.
func ParseConfig(r io.Reader) (*Config, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	cfg.SetDefaults()
	return &cfg, nil
}

// SetDefaults fills in every setting left empty.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8443"
	}
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:8444"
	}
	if c.Vault.Embedded.Path == "" {
		c.Vault.Embedded.Path = "vault.db"
	}
	if c.SMTP.TLS == "" {
		c.SMTP.TLS = "require"
	}
	if c.SMTP.Timeout == 0 {
		c.SMTP.Timeout = Duration(30 * time.Second)
	}
	if c.Send.Workers == 0 {
		c.Send.Workers = 4
	}
	if c.Send.MaxAttempts == 0 {
		c.Send.MaxAttempts = 8
	}
	if c.Send.MaxAge == 0 {
		c.Send.MaxAge = Duration(72 * time.Hour)
	}
	if c.Send.Lease == 0 {
		c.Send.Lease = Duration(2 * time.Minute)
	}
	c.setChannelDefaults()
}

func (c *Config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	abs(&c.TLS.ClientCAFile)
	for i := range c.Keys.HPKE {
		abs(&c.Keys.HPKE[i])
	}
	abs(&c.Keys.Signing)
	abs(&c.Vault.Embedded.KeyFile)
	for _, p := range []*string{&c.Vault.Hashicorp.CAFile, &c.Vault.Hashicorp.ClientCert, &c.Vault.Hashicorp.ClientKey,
		&c.Vault.Hashicorp.Auth.TokenFile, &c.Vault.Hashicorp.Auth.RoleIDFile, &c.Vault.Hashicorp.Auth.SecretIDFile,
		&c.Vault.Hashicorp.Auth.ServiceAccountTokenFile} {
		abs(p)
	}
	if c.DataDir != "" && !filepath.IsAbs(c.Vault.Embedded.Path) {
		c.Vault.Embedded.Path = filepath.Join(c.DataDir, c.Vault.Embedded.Path)
	}
	abs(&c.Vault.Embedded.Path)
	abs(&c.Policy.Bundle)
	abs(&c.Policy.BundleKey)
	abs(&c.Policy.DataFile)
	abs(&c.SMTP.CAFile)
	c.resolveChannelPaths(abs)
	for i := range c.Tenants {
		for j := range c.Tenants[i].CoreKeys {
			abs(&c.Tenants[i].CoreKeys[j])
		}
		abs(&c.Tenants[i].AdminTokensFile)
		abs(&c.Tenants[i].Compat.SecretsFile)
	}
}

// Validate checks the whole config and reports every problem, each naming
// its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...)))
	}
	checkAddr := func(field, addr string, required bool) {
		if addr == "" {
			if required {
				bad(field, "required")
			}
			return
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(field, "want host:port, got %q", addr)
		}
	}
	checkAddr("listen", c.Listen, true)
	checkAddr("admin_listen", c.AdminListen, true)
	checkAddr("metrics_listen", c.MetricsListen, false)
	if c.TLS.CertFile == "" {
		if !isLoopback(c.Listen) {
			bad("tls.cert_file", "required when listen is not a loopback address")
		}
		if c.TLS.ClientCAFile != "" {
			bad("tls.client_ca_file", "needs tls.cert_file")
		}
	} else if c.TLS.KeyFile == "" {
		bad("tls.key_file", "required with tls.cert_file")
	}
	if c.DataDir == "" {
		bad("data_dir", "required")
	}
	if c.Clustered() {
		if c.Cluster.Node == "" {
			bad("cluster.node", "required with cluster.postgres: each node needs its own stable name")
		} else if err := validNodeName(c.Cluster.Node); err != nil {
			bad("cluster.node", "%v", err)
		}
		if c.Vault.Postgres.DSNEnv == "" && !c.Vault.KV.Enabled {
			bad("vault", "a cluster needs a shared record store (vault.postgres or vault.kv): the embedded vault.db is one node's file")
		}
		if c.Public.Listen != "" && c.Public.KeyFile == "" {
			bad("public.key_file", "required with cluster.postgres: every node must open the unsubscribe links the others sealed")
		}
	} else if c.Cluster.Node != "" {
		bad("cluster.node", "needs cluster.postgres.dsn_env")
	}
	if len(c.Keys.HPKE) == 0 {
		bad("keys.hpke", "at least one HPKE private key file is required")
	}
	if c.Keys.Signing == "" {
		bad("keys.signing", "required")
	}
	ev := c.Vault.Embedded
	hv := c.Vault.Hashicorp
	switch {
	case hv.Address != "":
		if ev.KeyFile != "" || ev.PassphraseEnv != "" {
			bad("vault.hashicorp", "the keys live in Transit: leave vault.embedded.key_file and passphrase_env empty")
		}
		if err := hv.Validate(); err != nil {
			bad("vault.hashicorp", "%v", err)
		}
	case c.Vault.KV.Enabled:
		bad("vault.kv", "needs vault.hashicorp")
	case ev.KeyFile == "" && ev.PassphraseEnv == "":
		bad("vault.embedded", "one of key_file or passphrase_env is required")
	case ev.KeyFile != "" && ev.PassphraseEnv != "":
		bad("vault.embedded", "key_file and passphrase_env are exclusive")
	}
	c.validateTokenVersions(bad)
	checkAddr("smtp.addr", c.SMTP.Addr, true)
	switch c.SMTP.TLS {
	case "require", "opportunistic", "none":
	default:
		bad("smtp.tls", "want require, opportunistic or none, got %q", c.SMTP.TLS)
	}
	if c.SMTP.Username != "" && c.SMTP.PasswordEnv == "" {
		bad("smtp.password_env", "required with smtp.username")
	}
	checkAddr("public.listen", c.Public.Listen, false)
	c.validateChannels(bad)
	c.validateCompat(bad)
	if c.Policy.ReloadInterval != 0 && c.Policy.Bundle == "" {
		bad("policy.reload_interval", "needs policy.bundle")
	}
	if strings.HasSuffix(c.Policy.Bundle, ".tar.gz") && c.Policy.BundleKey == "" {
		bad("policy.bundle_key", "required for a bundle tarball: unsigned bundles are never loaded")
	}
	if c.Send.Workers < 1 || c.Send.Workers > 256 {
		bad("send.workers", "want 1..256, got %d", c.Send.Workers)
	}
	if c.Send.MaxAttempts < 1 {
		bad("send.max_attempts", "want at least 1")
	}
	if len(c.Tenants) == 0 {
		bad("tenants", "at least one tenant is required")
	}
	seen := map[string]bool{}
	for i, t := range c.Tenants {
		f := fmt.Sprintf("tenants[%d]", i)
		if !validTenantID(t.ID) {
			bad(f+".id", "want 1-64 characters of [a-z0-9_-], got %q", t.ID)
		}
		if seen[t.ID] {
			bad(f+".id", "duplicate tenant %q", t.ID)
		}
		seen[t.ID] = true
		if len(t.CoreKeys) == 0 {
			bad(f+".core_keys", "at least one pinned core public key is required")
		}
		if t.AdminTokensEnv == "" && t.AdminTokensFile == "" {
			bad(f+".admin_tokens_env", "one of admin_tokens_env or admin_tokens_file is required")
		}
		if t.CallbackURL != "" {
			u, err := url.Parse(t.CallbackURL)
			switch {
			case err != nil || u.Host == "":
				bad(f+".callback_url", "not an absolute URL")
			case u.Scheme != "https" && !(u.Scheme == "http" && c.Callbacks.AllowPrivate):
				bad(f+".callback_url", "must be https")
			}
		}
	}
	return errors.Join(errs...)
}

func validTenantID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Marshal writes the config as YAML (used by `blindpost dev`).
func (c *Config) Marshal() ([]byte, error) {
	return yaml.Marshal(c)
}

// validateTokenVersions checks vault.token_versions against the pin.
func (c *Config) validateTokenVersions(bad func(field, format string, args ...any)) {
	tv, pin := c.Vault.TokenVersions, c.Vault.PinnedTokenVersion()
	switch {
	case tv.Pinned < 0:
		bad("vault.token_versions.pinned", "want 1 or more (0 means 1)")
	case c.Vault.Hashicorp.Address != "" && tv.Pinned != 0 && tv.Pinned != pin:
		bad("vault.token_versions.pinned", "with vault.hashicorp the pin is vault.hashicorp.token_key_version (%d): leave pinned 0 or set both alike", pin)
	}
	if len(tv.AlsoIndex) > 2 {
		bad("vault.token_versions.also_index", "at most 2 versions (a re-tokenisation needs one)")
	}
	for i, v := range tv.AlsoIndex {
		switch {
		case v < 1 || v > 1<<31-1:
			bad("vault.token_versions.also_index", "version %d: want 1 or more", v)
		case v == pin:
			bad("vault.token_versions.also_index", "version %d is the pinned version", v)
		case slices.Contains(tv.AlsoIndex[:i], v):
			bad("vault.token_versions.also_index", "version %d is listed twice", v)
		}
	}
}
