package hashivault

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"
)

// Auth methods.
const (
	AuthToken      = "token"
	AuthAppRole    = "approle"
	AuthKubernetes = "kubernetes"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMount           = "transit"
	DefaultKeyPrefix       = "blindpost-"
	DefaultKeyType         = "aes256-gcm96"
	DefaultTokenKeyVersion = 1
	DefaultTimeout         = 15 * time.Second
	DefaultMaxRetries      = 2
	DefaultBatchSize       = 256
	DefaultMaxInFlight     = 4
	DefaultTokenEnv        = "VAULT_TOKEN"
	DefaultServiceAccount  = "/var/run/secrets/kubernetes.io/serviceaccount/token"

	maxNameLen = 64 // of a tenant id, and of the key prefix
)

// Config is the gateway's `vault.hashicorp` YAML section. Secrets (tokens,
// secret ids, service-account JWTs) are never in it: it names the file or
// environment variable that holds them.
type Config struct {
	// Address is Vault's or OpenBao's URL, e.g. https://vault.internal:8200.
	Address string `yaml:"address"`
	// CAFile verifies Vault's TLS certificate (PEM); empty means the
	// system roots. TLSServerName overrides the name checked in it.
	CAFile        string `yaml:"ca_file"`
	TLSServerName string `yaml:"tls_server_name"`
	// ClientCert and ClientKey are a PEM pair for mutual TLS, if Vault's
	// listener requires one. Both or neither.
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
	// Namespace is the Vault Enterprise or OpenBao namespace of the Transit
	// mount, e.g. "ops/blindpost". Untested: a dev server has none.
	Namespace string `yaml:"namespace"`

	// Mount is the Transit engine's mount path (default "transit").
	Mount string `yaml:"mount"`
	// KeyPrefix starts every key name (default "blindpost-"): tenant t has
	// the key-encryption key <prefix><t>-kek and the token key
	// <prefix><t>-token.
	KeyPrefix string `yaml:"key_prefix"`
	// KeyType of key-encryption keys that Setup creates: aes256-gcm96
	// (default), aes128-gcm96 or chacha20-poly1305, the Transit types that
	// take associated_data.
	KeyType string `yaml:"key_type"`
	// TokenKeyVersion pins the token key version new tokens use (default
	// 1). Tokens never follow the key's latest version: moving them to a
	// new one is a planned re-tokenisation.
	TokenKeyVersion int `yaml:"token_key_version"`

	// Timeout bounds one call to Vault, retries included (default 15s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxRetries is how often the client retries a request that failed
	// with a connection error or a 5xx (default 2; negative disables).
	// Beyond them the caller gets vault.ErrUnavailable and retries later.
	MaxRetries int `yaml:"max_retries"`
	// BatchSize caps the items of one batch_input request (default 256).
	BatchSize int `yaml:"batch_size"`
	// MaxInFlight caps the Wrap, Unwrap and TokenMAC requests in flight per
	// tenant and operation (default 4). Calls arriving while all are busy
	// wait and go out together in the next batch_input request; an idle
	// gateway sends each call at once. Negative sends every call alone.
	MaxInFlight int `yaml:"max_in_flight"`

	Auth AuthConfig `yaml:"auth"`
}

// AuthConfig says how the gateway logs in to Vault.
type AuthConfig struct {
	// Method is token (default), approle or kubernetes.
	Method string `yaml:"method"`
	// Namespace to log in to, if the auth method is mounted in another
	// namespace than Config.Namespace (untested).
	Namespace string `yaml:"namespace"`
	// Mount is the auth method's mount path (default: the method's name).
	Mount string `yaml:"mount"`

	// token: the token is read from TokenFile (re-read whenever it nears
	// expiry, so a Vault Agent sink works) or from the environment
	// variable TokenEnv (default VAULT_TOKEN).
	TokenFile string `yaml:"token_file"`
	TokenEnv  string `yaml:"token_env"`

	// approle: RoleID (not secret) inline or from RoleIDFile; the secret
	// id from SecretIDFile or the environment variable SecretIDEnv.
	RoleID       string `yaml:"role_id"`
	RoleIDFile   string `yaml:"role_id_file"`
	SecretIDFile string `yaml:"secret_id_file"`
	SecretIDEnv  string `yaml:"secret_id_env"`

	// kubernetes (untested): Role, and the service account JWT read from
	// ServiceAccountTokenFile at every login (default
	// /var/run/secrets/kubernetes.io/serviceaccount/token).
	Role                    string `yaml:"role"`
	ServiceAccountTokenFile string `yaml:"service_account_token_file"`
}

// Options are the runtime dependencies of a Provider.
type Options struct {
	// Logger receives token renewal and login events (never a token or
	// secret). Nil discards them.
	Logger *slog.Logger
	// Getenv reads the environment variables the config names; nil means
	// os.Getenv.
	Getenv func(string) string
}

// ErrConfig marks an invalid Config. The message names the field.
var ErrConfig = errors.New("hashivault: config")

func (c *Config) setDefaults() {
	if c.Mount == "" {
		c.Mount = DefaultMount
	}
	c.Mount = strings.Trim(c.Mount, "/")
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.KeyType == "" {
		c.KeyType = DefaultKeyType
	}
	if c.TokenKeyVersion == 0 {
		c.TokenKeyVersion = DefaultTokenKeyVersion
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	a := &c.Auth
	if a.Method == "" {
		a.Method = AuthToken
	}
	if a.Mount == "" {
		a.Mount = a.Method
	}
	a.Mount = strings.Trim(a.Mount, "/")
	if a.Method == AuthToken && a.TokenFile == "" && a.TokenEnv == "" {
		a.TokenEnv = DefaultTokenEnv
	}
	if a.Method == AuthKubernetes && a.ServiceAccountTokenFile == "" {
		a.ServiceAccountTokenFile = DefaultServiceAccount
	}
}

// Validate reports the first invalid field of c, after defaults.
func (c Config) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) validate() error {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s: %s", ErrConfig, field, why) }
	u, err := url.Parse(c.Address)
	switch {
	case c.Address == "":
		return bad("address", "required")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return bad("address", "want an http:// or https:// URL")
	case u.Scheme == "http" && (c.CAFile != "" || c.ClientCert != ""):
		return bad("address", "ca_file or client_cert given for an http:// address")
	case (c.ClientCert == "") != (c.ClientKey == ""):
		return bad("client_cert", "client_cert and client_key go together")
	case !validPath(c.Mount):
		return bad("mount", "want a mount path like transit or kms/transit")
	case !validName(c.KeyPrefix, true):
		return bad("key_prefix", "want up to 64 of A-Z a-z 0-9 _ - . starting with a letter, digit or _")
	case c.KeyType != "aes256-gcm96" && c.KeyType != "aes128-gcm96" && c.KeyType != "chacha20-poly1305":
		return bad("key_type", "want aes256-gcm96, aes128-gcm96 or chacha20-poly1305 (Transit types with associated_data)")
	case c.TokenKeyVersion < 1:
		return bad("token_key_version", "want 1 or more")
	case c.Timeout < 0:
		return bad("timeout", "negative")
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return bad("batch_size", "want 1 to 10000")
	case c.MaxInFlight > 1024:
		return bad("max_in_flight", "want at most 1024")
	case c.Namespace != "" && !validPath(c.Namespace):
		return bad("namespace", "want a namespace path like ops/blindpost")
	case c.Auth.Namespace != "" && !validPath(c.Auth.Namespace):
		return bad("auth.namespace", "want a namespace path")
	case !validPath(c.Auth.Mount):
		return bad("auth.mount", "want a mount path")
	}
	a := c.Auth
	switch a.Method {
	case AuthToken:
		if a.TokenFile != "" && a.TokenEnv != "" {
			return bad("auth.token_file", "token_file and token_env are exclusive")
		}
	case AuthAppRole:
		switch {
		case (a.RoleID == "") == (a.RoleIDFile == ""):
			return bad("auth.role_id", "one of role_id or role_id_file is required")
		case (a.SecretIDFile == "") == (a.SecretIDEnv == ""):
			return bad("auth.secret_id_file", "one of secret_id_file or secret_id_env is required")
		}
	case AuthKubernetes:
		if a.Role == "" {
			return bad("auth.role", "required for kubernetes")
		}
	default:
		return bad("auth.method", "want token, approle or kubernetes")
	}
	return nil
}

// validName reports whether s can stand in a Transit key name and in a
// policy path without escaping: ASCII letters, digits, '_' and '-' (and
// '.' inside a prefix), at most 64 bytes, never a path separator or glob.
func validName(s string, prefix bool) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case c == '-' || (prefix && c == '.'):
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// validPath reports whether s is a mount or namespace path: names
// separated by single slashes.
func validPath(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for seg := range strings.SplitSeq(s, "/") {
		if !validName(seg, true) {
			return false
		}
	}
	return true
}

// readSecretFile reads a one-line secret (a token, a secret id, a JWT).
// Its error names the file, never the content.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}
