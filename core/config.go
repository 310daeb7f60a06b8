package core

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/blindpost/blindpost/core/admin"
)

// Config is the core's configuration file. Decoding is strict: an unknown
// key is an error, because a misspelt setting silently ignored is worse
// than a core that refuses to start.
type Config struct {
	DataDir string `yaml:"data_dir"`
	// Listen serves the events API, /healthz and /readyz.
	Listen string    `yaml:"listen"`
	TLS    TLSConfig `yaml:"tls,omitempty"`
	// AdminListen serves the admin API (labels, brands, keys), the player
	// read API, /metrics, /healthz and /readyz. Keep it on loopback or a
	// management network.
	AdminListen string `yaml:"admin_listen"`
	// AdminTokenEnv names the environment variable holding the admin
	// bearer tokens (comma-separated, so one can be rotated; each at least
	// 32 characters). Default BLINDPOST_CORE_ADMIN_TOKEN. Without one the
	// admin API refuses every request; the CLI still works.
	AdminTokenEnv string `yaml:"admin_token_env"`
	// MetricsListen, if set, serves /metrics on its own as well.
	MetricsListen string            `yaml:"metrics_listen,omitempty"`
	Store         StoreConfig       `yaml:"store"`
	Firewall      FirewallConfig    `yaml:"firewall,omitempty"`
	Connectors    []ConnectorConfig `yaml:"connectors,omitempty"`
	// GatewayKeys are the gateways' signing.pub files the core trusts to
	// sign token pairs files (`blindpost core tokens apply`, the admin
	// API's token-pairs route; docs/key-rotation.md §5). Without one, the
	// core refuses every pairs file.
	GatewayKeys []string `yaml:"gateway_keys,omitempty"`
}

// FirewallConfig adjusts the PII firewall's property-name rule for this
// deployment; each label's mode (reject or strip) is set with the admin
// API or `blindpost core labels firewall`.
type FirewallConfig struct {
	// PIIProperties are more property names that mean PII, such as names
	// in an operator's language ("telefono", "nachname").
	PIIProperties []string `yaml:"pii_properties,omitempty"`
	// AllowProperties are property names exempt from the name rule; their
	// values are still checked for emails, phones, cards and IBANs.
	AllowProperties []string `yaml:"allow_properties,omitempty"`
}

// TLSConfig configures the events listener. An empty CertFile serves plain
// HTTP, which Validate allows only on a loopback address (behind a proxy
// on the same host that terminates TLS).
type TLSConfig struct {
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
}

// StoreConfig selects the core's store: a SQLite file (the default) or
// PostgreSQL, which several core nodes can share.
type StoreConfig struct {
	Driver string `yaml:"driver"` // sqlite (default) or postgres
	// Path is the SQLite file; default core.db in data_dir.
	Path string `yaml:"path,omitempty"`
	// DSNEnv names the environment variable holding the PostgreSQL
	// connection string (it carries a password, so it is never in the file).
	DSNEnv string `yaml:"dsn_env,omitempty"`
	Schema string `yaml:"schema,omitempty"` // default blindpost_core
}

// Connector kinds.
const (
	KindKafka    = "kafka"
	KindRabbitMQ = "rabbitmq"
	KindDBViews  = "dbviews"
)

// ConnectorConfig is one ingestion connector, feeding its label's pipeline.
// Which fields apply depends on Kind; Validate names any that do not.
type ConnectorConfig struct {
	Kind  string `yaml:"kind"`  // kafka, rabbitmq or dbviews
	Label string `yaml:"label"` // the label whose events it carries

	// kafka: a consumer group that commits offsets once the core holds the
	// events.
	Brokers []string `yaml:"brokers,omitempty"`
	Topic   string   `yaml:"topic,omitempty"`
	Group   string   `yaml:"group,omitempty"`
	// InstanceID makes this core a static member of the group (KIP-345):
	// restarted, even after a crash, it takes its partitions back at once,
	// where a dynamic member's partitions wait out the session timeout.
	// Unique per core node and stable across its restarts.
	InstanceID string `yaml:"instance_id,omitempty"`
	// SessionTimeout is how long the group waits for a silent member
	// before giving its partitions to the others (default 45s).
	SessionTimeout Duration `yaml:"session_timeout,omitempty"`

	// rabbitmq: URLEnv names the environment variable holding the AMQP URL
	// (it carries a password, so it is never in the file). The queue must
	// exist. Linger is how long a batch waits to fill.
	URLEnv string   `yaml:"url_env,omitempty"`
	Queue  string   `yaml:"queue,omitempty"`
	Linger Duration `yaml:"linger,omitempty"`

	// dbviews: a view on the PAM's read replica, read in watermark order.
	// Source names its checkpoint in the store (default
	// "dbviews/<driver>/<view>"); Overlap (timestamp watermark, default 5m)
	// or OverlapCount (integer watermark) is re-read behind it every poll,
	// for transactions that commit out of order.
	Source        string    `yaml:"source,omitempty"`
	Driver        string    `yaml:"driver,omitempty"`  // postgres or mysql
	DSNEnv        string    `yaml:"dsn_env,omitempty"` // environment variable holding the DSN
	View          string    `yaml:"view,omitempty"`
	Watermark     string    `yaml:"watermark,omitempty"`
	WatermarkType string    `yaml:"watermark_type,omitempty"` // timestamp (default) or integer
	Overlap       *Duration `yaml:"overlap,omitempty"`
	OverlapCount  int64     `yaml:"overlap_count,omitempty"`
	Poll          Duration  `yaml:"poll,omitempty"`

	// TLS, for kafka and rabbitmq (which also needs an amqps:// URL):
	// the brokers' CA instead of the system's, and a client certificate
	// for mutual TLS. dbviews set TLS in their DSN.
	TLS *ConnectorTLS `yaml:"tls,omitempty"`
	// SASL authenticates a kafka connector.
	SASL *KafkaSASL `yaml:"sasl,omitempty"`

	// BatchSize bounds the events handed to the pipeline at once (for
	// rabbitmq also the prefetch); 0 means the connector's default.
	BatchSize int `yaml:"batch_size,omitempty"`
}

// ConnectorTLS is a connector's TLS client settings.
type ConnectorTLS struct {
	CAFile     string `yaml:"ca_file,omitempty"`     // PEM; empty means the system's roots
	CertFile   string `yaml:"cert_file,omitempty"`   // client certificate (mutual TLS), with key_file
	KeyFile    string `yaml:"key_file,omitempty"`    //
	ServerName string `yaml:"server_name,omitempty"` // if the brokers' certificates name another host
}

// KafkaSASL is a kafka connector's SASL login. PLAIN sends the password
// as it is, so it is accepted only over TLS.
type KafkaSASL struct {
	Mechanism   string `yaml:"mechanism"`    // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Username    string `yaml:"username"`     //
	PasswordEnv string `yaml:"password_env"` // environment variable holding the password
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads "30s", "5m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 30s, 2m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as "30s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ErrConfig marks every configuration error.
var ErrConfig = errors.New("config")

// DefaultAdminTokenEnv is where the admin tokens are unless the config says.
const DefaultAdminTokenEnv = "BLINDPOST_CORE_ADMIN_TOKEN"

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
	cfg.ResolvePaths(base)
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
	if err := dec.Decode(&cfg); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	cfg.SetDefaults()
	return &cfg, nil
}

// SetDefaults fills in every setting left empty.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:8081"
	}
	if c.AdminTokenEnv == "" {
		c.AdminTokenEnv = DefaultAdminTokenEnv
	}
	if c.Store.Driver == "" {
		c.Store.Driver = "sqlite"
	}
	switch c.Store.Driver {
	case "sqlite":
		if c.Store.Path == "" {
			c.Store.Path = "core.db"
		}
	case "postgres":
		if c.Store.Schema == "" {
			c.Store.Schema = "blindpost_core"
		}
	}
	for i := range c.Connectors {
		cc := &c.Connectors[i]
		if cc.Kind == KindDBViews {
			if cc.WatermarkType == "" {
				cc.WatermarkType = "timestamp"
			}
			if cc.Overlap == nil && cc.WatermarkType == "timestamp" {
				d := Duration(5 * time.Minute)
				cc.Overlap = &d
			}
		}
	}
}

// ResolvePaths makes relative paths absolute against base (the config
// file's directory); the SQLite file is taken relative to data_dir.
func (c *Config) ResolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	if c.Store.Driver == "sqlite" && c.DataDir != "" && c.Store.Path != "" && !filepath.IsAbs(c.Store.Path) {
		c.Store.Path = filepath.Join(c.DataDir, c.Store.Path)
	}
	abs(&c.Store.Path)
	for i := range c.GatewayKeys {
		abs(&c.GatewayKeys[i])
	}
	for i := range c.Connectors {
		if t := c.Connectors[i].TLS; t != nil {
			abs(&t.CAFile)
			abs(&t.CertFile)
			abs(&t.KeyFile)
		}
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
	if c.DataDir == "" {
		bad("data_dir", "required")
	}
	checkAddr("listen", c.Listen, true)
	checkAddr("admin_listen", c.AdminListen, true)
	checkAddr("metrics_listen", c.MetricsListen, false)
	if c.TLS.CertFile == "" {
		if c.TLS.KeyFile != "" {
			bad("tls.cert_file", "required with tls.key_file")
		}
		if c.Listen != "" && !isLoopback(c.Listen) {
			bad("tls.cert_file", "required when listen is not a loopback address: API keys must not cross a network in clear")
		}
	} else if c.TLS.KeyFile == "" {
		bad("tls.key_file", "required with tls.cert_file")
	}
	if !validEnvName(c.AdminTokenEnv) {
		bad("admin_token_env", "want an environment variable name, got %q", c.AdminTokenEnv)
	}
	switch s := c.Store; s.Driver {
	case "sqlite":
		if s.DSNEnv != "" || s.Schema != "" {
			bad("store", "dsn_env and schema are for driver postgres")
		}
	case "postgres":
		if s.DSNEnv == "" {
			bad("store.dsn_env", "required with driver postgres")
		} else if !validEnvName(s.DSNEnv) {
			bad("store.dsn_env", "want an environment variable name, got %q", s.DSNEnv)
		}
		if s.Path != "" {
			bad("store.path", "is for driver sqlite")
		}
		if !validIdent(s.Schema) {
			bad("store.schema", "want a lower-case SQL identifier, got %q", s.Schema)
		}
	default:
		bad("store.driver", "want sqlite or postgres, got %q", s.Driver)
	}
	for i, cc := range c.Connectors {
		cc.validate(fmt.Sprintf("connectors[%d]", i), bad)
	}
	for i, p := range c.GatewayKeys {
		if strings.TrimSpace(p) == "" {
			bad(fmt.Sprintf("gateway_keys[%d]", i), "want the path of a gateway's signing.pub")
		} else if slices.Contains(c.GatewayKeys[:i], p) {
			bad(fmt.Sprintf("gateway_keys[%d]", i), "listed twice")
		}
	}
	return errors.Join(errs...)
}

func (cc *ConnectorConfig) validate(f string, bad func(field, format string, args ...any)) {
	if !admin.ValidLabelID(cc.Label) {
		bad(f+".label", "want 1-64 characters of [a-z0-9_-], got %q", cc.Label)
	}
	required := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			bad(f+"."+name, "required for kind %s", cc.Kind)
		}
	}
	// unused names the fields set that the kind does not read.
	unused := func(fields map[string]bool) {
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			if fields[name] {
				bad(f+"."+name, "not a setting of kind %s", cc.Kind)
			}
		}
	}
	if t := cc.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		bad(f+".tls", "cert_file and key_file go together")
	}
	if a := cc.SASL; a != nil {
		switch a.Mechanism {
		case "PLAIN":
			if cc.TLS == nil {
				bad(f+".sasl.mechanism", "PLAIN sends the password in clear: needs tls")
			}
		case "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			bad(f+".sasl.mechanism", "want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", a.Mechanism)
		}
		if a.Username == "" {
			bad(f+".sasl.username", "required")
		}
		if !validEnvName(a.PasswordEnv) {
			bad(f+".sasl.password_env", "want an environment variable name, got %q", a.PasswordEnv)
		}
	}
	kafkaSet := map[string]bool{"brokers": len(cc.Brokers) > 0, "topic": cc.Topic != "", "group": cc.Group != "", "sasl": cc.SASL != nil,
		"instance_id": cc.InstanceID != "", "session_timeout": cc.SessionTimeout != 0}
	if cc.SessionTimeout != 0 && (cc.SessionTimeout < Duration(time.Second) || cc.SessionTimeout > Duration(30*time.Minute)) {
		bad(f+".session_timeout", "want 1s to 30m")
	}
	rabbitSet := map[string]bool{"url_env": cc.URLEnv != "", "queue": cc.Queue != "", "linger": cc.Linger != 0}
	dbSet := map[string]bool{"source": cc.Source != "", "driver": cc.Driver != "", "dsn_env": cc.DSNEnv != "", "view": cc.View != "",
		"watermark": cc.Watermark != "", "watermark_type": cc.WatermarkType != "", "overlap": cc.Overlap != nil,
		"overlap_count": cc.OverlapCount != 0, "poll": cc.Poll != 0}
	if cc.BatchSize < 0 || cc.BatchSize > 10000 {
		bad(f+".batch_size", "want 0..10000, got %d", cc.BatchSize)
	}
	switch cc.Kind {
	case KindKafka:
		if len(cc.Brokers) == 0 {
			bad(f+".brokers", "at least one host:port is required")
		}
		for j, b := range cc.Brokers {
			if _, _, err := net.SplitHostPort(b); err != nil {
				bad(fmt.Sprintf("%s.brokers[%d]", f, j), "want host:port, got %q", b)
			}
		}
		required("topic", cc.Topic)
		required("group", cc.Group)
		unused(rabbitSet)
		unused(dbSet)
	case KindRabbitMQ:
		required("url_env", cc.URLEnv)
		if cc.URLEnv != "" && !validEnvName(cc.URLEnv) {
			bad(f+".url_env", "want an environment variable name, got %q", cc.URLEnv)
		}
		required("queue", cc.Queue)
		if cc.Linger < 0 {
			bad(f+".linger", "must not be negative")
		}
		unused(kafkaSet)
		unused(dbSet)
	case KindDBViews:
		switch cc.Driver {
		case "postgres", "mysql":
		default:
			bad(f+".driver", "want postgres or mysql, got %q", cc.Driver)
		}
		required("dsn_env", cc.DSNEnv)
		if cc.DSNEnv != "" && !validEnvName(cc.DSNEnv) {
			bad(f+".dsn_env", "want an environment variable name, got %q", cc.DSNEnv)
		}
		required("view", cc.View)
		required("watermark", cc.Watermark)
		switch cc.WatermarkType {
		case "timestamp":
			if cc.OverlapCount != 0 {
				bad(f+".overlap_count", "is for watermark_type integer; use overlap")
			}
		case "integer":
			if cc.Overlap != nil {
				bad(f+".overlap", "is for watermark_type timestamp; use overlap_count")
			}
		default:
			bad(f+".watermark_type", "want timestamp or integer, got %q", cc.WatermarkType)
		}
		if cc.Overlap != nil && *cc.Overlap < 0 {
			bad(f+".overlap", "must not be negative")
		}
		if cc.OverlapCount < 0 {
			bad(f+".overlap_count", "must not be negative")
		}
		if cc.Poll < 0 {
			bad(f+".poll", "must not be negative")
		}
		if cc.TLS != nil {
			bad(f+".tls", "not a setting of kind dbviews: set TLS in the DSN")
		}
		unused(kafkaSet)
		unused(rabbitSet)
	default:
		bad(f+".kind", "want kafka, rabbitmq or dbviews, got %q", cc.Kind)
	}
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func validIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
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

// Marshal writes the config as YAML (used by `blindpost core init`).
func (c *Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }
