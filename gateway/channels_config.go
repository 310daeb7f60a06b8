package gateway

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/blindpost/blindpost/gateway/throttle"
)

// SMTPPoolConfig reuses connections to the relay.
type SMTPPoolConfig struct {
	MaxConns           int      `yaml:"max_conns"`
	MaxIdle            int      `yaml:"max_idle"`
	IdleTimeout        Duration `yaml:"idle_timeout"`
	MaxMessagesPerConn int      `yaml:"max_messages_per_conn"`
	HealthCheckAfter   Duration `yaml:"health_check_after"`
}

// DKIMKey signs one brand's mail (tenant and brand empty: every brand
// without a key of its own).
type DKIMKey struct {
	Tenant   string `yaml:"tenant"`
	Brand    string `yaml:"brand"`
	Domain   string `yaml:"domain"`
	Selector string `yaml:"selector"`
	KeyFile  string `yaml:"key_file"`
}

// ThrottleConfig paces one adapter (package throttle).
type ThrottleConfig struct {
	Concurrency     int      `yaml:"concurrency"`
	Rate            float64  `yaml:"rate_per_second"`
	Burst           int      `yaml:"burst"`
	BreakerFailures int      `yaml:"breaker_failures"`
	BreakerCooldown Duration `yaml:"breaker_cooldown"`
	MaxWait         Duration `yaml:"max_wait"`
}

func (t ThrottleConfig) config() throttle.Config {
	return throttle.Config{Concurrency: t.Concurrency, Rate: t.Rate, Burst: t.Burst,
		BreakerFailures: t.BreakerFailures, BreakerCooldown: time.Duration(t.BreakerCooldown), MaxWait: time.Duration(t.MaxWait)}
}

// SMSConfig picks and configures the SMS adapter; Adapter empty means the
// gateway sends no SMS and refuses sms messages at acceptance.
type SMSConfig struct {
	Adapter  string         `yaml:"adapter"` // twilio | http | smpp
	Twilio   TwilioConfig   `yaml:"twilio"`
	HTTP     HTTPSMSConfig  `yaml:"http"`
	SMPP     SMPPConfig     `yaml:"smpp"`
	Throttle ThrottleConfig `yaml:"throttle"`
}

type TwilioConfig struct {
	BaseURL             string   `yaml:"base_url"`
	AccountSID          string   `yaml:"account_sid"`
	AuthTokenEnv        string   `yaml:"auth_token_env"`
	From                string   `yaml:"from"`
	MessagingServiceSID string   `yaml:"messaging_service_sid"`
	Timeout             Duration `yaml:"timeout"`
}

type HTTPSMSConfig struct {
	URL             string            `yaml:"url"`
	Method          string            `yaml:"method"`
	Headers         map[string]string `yaml:"headers"` // values may hold ${VAR}
	ContentType     string            `yaml:"content_type"`
	BodyTemplate    string            `yaml:"body_template"`
	From            string            `yaml:"from"`
	SuccessStatuses []int             `yaml:"success_statuses"`
	IDPointer       string            `yaml:"id_pointer"`
	Timeout         Duration          `yaml:"timeout"`
	Receipts        struct {
		IDPointer         string            `yaml:"id_pointer"`
		RefPointer        string            `yaml:"ref_pointer"`
		StatusPointer     string            `yaml:"status_pointer"`
		CodePointer       string            `yaml:"code_pointer"`
		Statuses          map[string]string `yaml:"statuses"`
		CodePrefix        string            `yaml:"code_prefix"`
		SecretHeader      string            `yaml:"secret_header"`
		Secret            string            `yaml:"secret"` // ${VAR}
		SignatureHeader   string            `yaml:"signature_header"`
		SignatureSecret   string            `yaml:"signature_secret"` // ${VAR}
		SignatureEncoding string            `yaml:"signature_encoding"`
		SignaturePrefix   string            `yaml:"signature_prefix"`
	} `yaml:"receipts"`
}

type SMPPConfig struct {
	Addr        string   `yaml:"addr"`
	TLS         bool     `yaml:"tls"`
	CAFile      string   `yaml:"ca_file"`
	SystemID    string   `yaml:"system_id"`
	PasswordEnv string   `yaml:"password_env"`
	SystemType  string   `yaml:"system_type"`
	Source      string   `yaml:"source"`
	Window      int      `yaml:"window"`
	EnquireLink Duration `yaml:"enquire_link"`
	Timeout     Duration `yaml:"timeout"`
	MaxParts    int      `yaml:"max_parts"`
}

// TelegramConfig enables the im channel through a Telegram bot.
type TelegramConfig struct {
	TokenEnv              string         `yaml:"token_env"`
	BaseURL               string         `yaml:"base_url"`
	ParseMode             string         `yaml:"parse_mode"`
	DisableWebPagePreview bool           `yaml:"disable_web_page_preview"`
	Timeout               Duration       `yaml:"timeout"`
	Throttle              ThrottleConfig `yaml:"throttle"`
}

// PushConfig enables the push channel through the operator's push gateway.
type PushConfig struct {
	URL               string         `yaml:"url"`
	AuthorizationEnv  string         `yaml:"authorization_env"`
	AllowInsecureHTTP bool           `yaml:"allow_insecure_http"`
	Timeout           Duration       `yaml:"timeout"`
	Throttle          ThrottleConfig `yaml:"throttle"`
}

// PublicConfig is the listener players and providers reach: the one-click
// unsubscribe pages of marketing email and the SMS providers' delivery
// receipts. It is separate from the message listener, which only the core
// reaches (often with client certificates).
type PublicConfig struct {
	Listen string `yaml:"listen"`
	// BaseURL is how the outside world reaches Listen, e.g.
	// https://mail.operator.example (the operator's reverse proxy).
	BaseURL string `yaml:"base_url"`
	// TLS serves the listener over TLS with tls.cert_file and key_file
	// (never asking for client certificates); otherwise a reverse proxy
	// in front of it terminates TLS. Links are always https: RFC 8058
	// one-click unsubscribe requires it.
	TLS bool `yaml:"tls"`
	// UnsubscribeTTL is how long an unsubscribe link works; default 180 days.
	UnsubscribeTTL Duration `yaml:"unsubscribe_ttl"`
	// KeyFile holds the 32-byte key that seals unsubscribe links; default
	// data_dir/unsubscribe.key, created on first start. Nodes of a cluster
	// must all read the same key, so there it is required and must exist
	// (`blindpost keys generate unsubscribe --out DIR`).
	KeyFile string `yaml:"key_file"`
}

func (c *Config) setChannelDefaults() {
	if c.Public.UnsubscribeTTL == 0 {
		c.Public.UnsubscribeTTL = Duration(180 * 24 * time.Hour)
	}
	if c.SMTP.Pool.MaxIdle == 0 && c.SMTP.Pool.MaxConns == 0 {
		c.SMTP.Pool.MaxConns, c.SMTP.Pool.MaxIdle = c.Send.Workers, c.Send.Workers
	}
}

func (c *Config) resolveChannelPaths(abs func(*string)) {
	for i := range c.SMTP.DKIM {
		abs(&c.SMTP.DKIM[i].KeyFile)
	}
	abs(&c.SMS.SMPP.CAFile)
	abs(&c.Public.KeyFile)
}

func (c *Config) validateChannels(bad func(field, format string, args ...any)) {
	for _, t := range []struct {
		field string
		cfg   ThrottleConfig
	}{{"smtp.throttle", c.SMTP.Throttle}, {"sms.throttle", c.SMS.Throttle}, {"telegram.throttle", c.Telegram.Throttle}, {"push.throttle", c.Push.Throttle}} {
		if err := t.cfg.config().Validate(); err != nil {
			bad(t.field, "%v", err)
		}
	}
	for i, k := range c.SMTP.DKIM {
		f := fmt.Sprintf("smtp.dkim[%d]", i)
		if k.Domain == "" || k.Selector == "" || k.KeyFile == "" {
			bad(f, "domain, selector and key_file are required")
		}
		if (k.Tenant == "") != (k.Brand == "") {
			bad(f, "tenant and brand go together (both empty: the default key)")
		}
	}
	switch c.SMS.Adapter {
	case "":
	case "twilio":
		if c.SMS.Twilio.AccountSID == "" || c.SMS.Twilio.AuthTokenEnv == "" {
			bad("sms.twilio", "account_sid and auth_token_env are required")
		}
		if c.Public.BaseURL == "" {
			bad("sms.twilio", "needs public.base_url for its status callbacks")
		}
	case "http":
		if c.SMS.HTTP.URL == "" || c.SMS.HTTP.BodyTemplate == "" {
			bad("sms.http", "url and body_template are required")
		}
	case "smpp":
		if c.SMS.SMPP.Addr == "" || c.SMS.SMPP.SystemID == "" {
			bad("sms.smpp", "addr and system_id are required")
		}
	default:
		bad("sms.adapter", "want twilio, http or smpp, got %q", c.SMS.Adapter)
	}
	if c.Telegram.BaseURL != "" && c.Telegram.TokenEnv == "" {
		bad("telegram.token_env", "required with telegram.base_url")
	}
	if c.Push.URL != "" && c.Push.AuthorizationEnv == "" {
		bad("push.authorization_env", "required with push.url")
	}
	if c.Public.Listen != "" && c.Public.BaseURL == "" && !(isLoopback(c.Public.Listen) && c.Public.TLS) {
		bad("public.base_url", "required with public.listen, unless it is a loopback address served with tls")
	}
	if c.Public.TLS && c.TLS.CertFile == "" {
		bad("public.tls", "needs tls.cert_file and tls.key_file")
	}
	if c.Public.BaseURL != "" {
		u, err := url.Parse(c.Public.BaseURL)
		if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
			u.Scheme != "https" {
			bad("public.base_url", "want an https URL without credentials, query or fragment")
		}
		if c.Public.Listen == "" {
			bad("public.listen", "required with public.base_url")
		}
	}
}

// env reads a secret named in the config; an empty one is an error, so a
// gateway never starts with a blank credential.
func env(field, name string) (string, error) {
	if name == "" {
		return "", nil
	}
	v := os.Getenv(name)
	if strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("%s: $%s is empty", field, name)
	}
	return v, nil
}
