// Package twilio sends SMS through Twilio's Programmable Messaging API
// (POST /2010-04-01/Accounts/{AccountSid}/Messages.json) and takes Twilio's
// signed status callbacks back as sms.Receipts.
//
// It runs on the operator's side of the trust boundary, inside the gateway:
// it handles the recipient's number and the rendered text. Neither ever
// reaches an error, and neither does Twilio's answer, whose error messages
// echo the number. Errors carry Twilio's numeric code instead
// ("twilio_21211"), or the HTTP status when Twilio gave none ("http_503").
//
// Status callbacks are authenticated by X-Twilio-Signature, an HMAC-SHA1
// keyed with the account's AuthToken over the public URL Twilio called
// followed by the POST parameters. The handler builds that URL from
// Config.StatusCallbackURL, never from the request's Host header, which a
// proxy may rewrite and a caller may forge.
package twilio

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultBaseURL is Twilio's REST API.
const DefaultBaseURL = "https://api.twilio.com"

const (
	defaultTimeout = 30 * time.Second
	// maxResponseBytes bounds what Send reads from Twilio. A Message
	// resource is about 1 KB; anything past this is not worth reading.
	maxResponseBytes = 64 << 10
	// maxCallbackBytes bounds a status callback body: about 20 short form
	// fields.
	maxCallbackBytes = 32 << 10
)

var (
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("invalid config")
	// ErrInvalidMessage reports a Message that cannot be sent: no
	// recipient or no text. Nothing was sent.
	ErrInvalidMessage = errors.New("invalid message")
	// ErrRejected is the cause of a failure Twilio reported; the code is
	// in the adapters.Error around it.
	ErrRejected = errors.New("twilio rejected the message")
)

// Config says which account sends, from where, and where receipts go.
type Config struct {
	// BaseURL is Twilio's API root; default DefaultBaseURL. Tests point it
	// at a loopback server.
	BaseURL string
	// AccountSID and AuthToken authenticate Send (HTTP basic auth) and key
	// the status callbacks' signature.
	AccountSID string
	AuthToken  string
	// From is the default sender (a Twilio number or alphanumeric sender
	// id) for messages without their own. MessagingServiceSID sends
	// through a Messaging Service instead, which picks the sender. At
	// least one is required; with both, From picks the service's sender.
	From                string
	MessagingServiceSID string
	// StatusCallbackURL is the public URL at which Twilio reaches
	// ReceiptHandler, exactly as Twilio will call it (scheme, host, port,
	// path). Send adds the message's Ref to it as the query parameter
	// "ref". Empty means no receipts.
	StatusCallbackURL string
	// Timeout bounds one Send; default 30s.
	Timeout time.Duration
	// Now stamps receipts; default time.Now.
	Now func() time.Time
}

// Client sends messages through one Twilio account. It is safe for
// concurrent use.
type Client struct {
	cfg      Config
	http     *http.Client
	endpoint string // the Messages.json URL
	// callback is StatusCallbackURL, and callbackBase the same without its
	// query: the handler appends the query the request arrived with.
	callback, callbackBase string
}

// New checks cfg and returns a Client that sends with client (nil means a
// new http.Client with the default transport). The Client never follows
// redirects, so the credentials and the message go to BaseURL only.
func New(cfg Config, client *http.Client) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := validate(cfg); err != nil {
		return nil, err
	}
	var hc http.Client
	if client != nil {
		hc = *client
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	c := &Client{
		cfg:      cfg,
		http:     &hc,
		endpoint: strings.TrimSuffix(cfg.BaseURL, "/") + "/2010-04-01/Accounts/" + url.PathEscape(cfg.AccountSID) + "/Messages.json",
		callback: cfg.StatusCallbackURL,
	}
	// Cut, not url.URL.String: the handler must rebuild the URL byte for
	// byte as Twilio signs it, whatever escaping the operator wrote.
	c.callbackBase, _, _ = strings.Cut(cfg.StatusCallbackURL, "?")
	return c, nil
}

func validate(cfg Config) error {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("twilio: config: base_url must be an http(s) URL without credentials, query or fragment: %w", ErrConfig)
	}
	if cfg.AccountSID == "" || cfg.AuthToken == "" {
		return fmt.Errorf("twilio: config: account_sid and auth_token are required: %w", ErrConfig)
	}
	if strings.ContainsAny(cfg.AccountSID, "/?#%") {
		return fmt.Errorf("twilio: config: account_sid holds a URL delimiter: %w", ErrConfig)
	}
	if cfg.From == "" && cfg.MessagingServiceSID == "" {
		return fmt.Errorf("twilio: config: from or messaging_service_sid is required: %w", ErrConfig)
	}
	if cfg.StatusCallbackURL != "" {
		u, err := url.Parse(cfg.StatusCallbackURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("twilio: config: status_callback_url must be an absolute http(s) URL: %w", ErrConfig)
		}
		// Twilio signs the URL it calls; credentials and fragments make
		// what it signs differ from what the handler can rebuild.
		if u.User != nil || u.Fragment != "" || strings.Contains(cfg.StatusCallbackURL, "#") || u.ForceQuery {
			return fmt.Errorf("twilio: config: status_callback_url must not hold credentials, a fragment or an empty query: %w", ErrConfig)
		}
		if u.Query().Has("ref") {
			return fmt.Errorf("twilio: config: status_callback_url must not hold a ref parameter, Send adds it: %w", ErrConfig)
		}
	}
	if cfg.Timeout < 0 {
		return fmt.Errorf("twilio: config: negative timeout: %w", ErrConfig)
	}
	return nil
}

// callbackFor returns the StatusCallback for a message with the given ref.
func (c *Client) callbackFor(ref string) string {
	if c.callback == "" || ref == "" {
		return c.callback
	}
	sep := "?"
	if strings.Contains(c.callback, "?") {
		sep = "&"
	}
	return c.callback + sep + "ref=" + url.QueryEscape(ref)
}
