// Package httpsms sends SMS through any HTTP provider that takes one
// request per message, described by configuration instead of code: a URL,
// headers, and a body template with {{to}}, {{from}}, {{body}} and {{ref}}.
// It also takes the provider's JSON delivery receipts, authenticated by a
// shared secret header or an HMAC-SHA256 signature of the body.
//
// It runs on the operator's side of the trust boundary, inside the gateway,
// and handles the recipient's number and the rendered text. Values go into
// the body escaped for its content type, so no value can change the
// request's shape. Secrets stay out of configuration files: header values,
// the URL and the receipt secrets may name environment variables
// ("Bearer ${SMS_API_KEY}"), resolved once by New. Errors carry the HTTP
// status ("http_503"), never the number, the text or the provider's answer.
package httpsms

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/blindpost/blindpost/adapters/internal/httpx"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/sms"
)

const (
	defaultTimeout   = 30 * time.Second
	maxResponseBytes = 64 << 10
	maxReceiptBytes  = 64 << 10
)

var (
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("invalid config")
	// ErrInvalidMessage reports a Message that cannot be sent: no
	// recipient or no text. Nothing was sent.
	ErrInvalidMessage = errors.New("invalid message")
	// ErrRejected is the cause of a failure the provider reported; the
	// HTTP status is in the adapters.Error around it.
	ErrRejected = errors.New("provider rejected the message")
)

// Config describes the provider's send API and, optionally, its receipts.
type Config struct {
	// URL receives the message; it may hold ${VAR} references (for a key in
	// the query string), resolved by New.
	URL string
	// Method is POST (the default), PUT or PATCH.
	Method string
	// Headers are sent with every request. Values may hold ${VAR}
	// references, resolved by New. Host, Content-Type, Content-Length,
	// Transfer-Encoding and Connection are not allowed here.
	Headers map[string]string
	// ContentType is "application/json" (the default, also any
	// "application/*+json") or "application/x-www-form-urlencoded",
	// parameters such as charset allowed.
	ContentType string
	// BodyTemplate is the request body with {{to}}, {{from}}, {{body}} and
	// {{ref}} placeholders. For JSON every placeholder must sit inside a
	// string literal ("text": "{{body}}"); its value is inserted
	// JSON-escaped. For forms, values are inserted query-escaped
	// (to={{to}}&text={{body}}). ${VAR} references are resolved by New
	// and escaped the same way, for providers that want a key in the body.
	BodyTemplate string
	// From fills {{from}} for messages without their own sender.
	From string
	// SuccessStatuses are the statuses that mean the provider took the
	// message; each must be 2xx. Empty means any 2xx.
	SuccessStatuses []int
	// IDPointer is a JSON Pointer (RFC 6901) to the provider's message id
	// in a successful answer, e.g. "/messages/0/id". Empty means the
	// answer is not read.
	IDPointer string
	// Timeout bounds one Send; default 30s.
	Timeout time.Duration
	// Receipts describes delivery receipts; zero means the provider sends
	// none.
	Receipts ReceiptConfig
	// Now stamps receipts and reads Retry-After dates; default time.Now.
	Now func() time.Time
}

// ReceiptConfig describes the JSON receipts a provider POSTs, one per
// request, and how they are authenticated.
type ReceiptConfig struct {
	// JSON Pointers (RFC 6901) into the receipt. StatusPointer is
	// required, and at least one of IDPointer (the provider's message id,
	// as Send returned it) and RefPointer (the message's Ref, where the
	// provider echoes a field from the send request). CodePointer is
	// optional.
	IDPointer, RefPointer, StatusPointer, CodePointer string
	// Statuses maps the provider's status words (matched without regard to
	// case; numbers as their decimal text) to sms.StatusDelivered,
	// sms.StatusUndelivered or sms.StatusAccepted. A receipt with an
	// unmapped status is acknowledged and dropped.
	Statuses map[string]string
	// CodePrefix is put before the provider's code in Receipt.Code;
	// default "provider_". A code that is not a short token of letters,
	// digits, '.', '_' or '-' is dropped, as it may be free text.
	CodePrefix string

	// Authentication: exactly one of a shared secret header and an
	// HMAC-SHA256 signature header.
	//
	// SecretHeader names a header whose whole value must equal Secret.
	SecretHeader, Secret string
	// SignatureHeader names a header holding HMAC-SHA256 of the raw body
	// keyed with SignatureSecret, hex (the default) or base64 as
	// SignatureEncoding says, after SignaturePrefix (e.g. "sha256=").
	SignatureHeader, SignatureSecret   string
	SignatureEncoding, SignaturePrefix string
	// Secret and SignatureSecret may hold ${VAR} references, resolved by
	// New.
}

func (r ReceiptConfig) enabled() bool {
	return r.IDPointer != "" || r.RefPointer != "" || r.StatusPointer != "" || r.CodePointer != "" ||
		len(r.Statuses) > 0 || r.CodePrefix != "" || r.SecretHeader != "" || r.Secret != "" ||
		r.SignatureHeader != "" || r.SignatureSecret != "" || r.SignatureEncoding != "" || r.SignaturePrefix != ""
}

// Client sends messages to one provider. It is safe for concurrent use.
type Client struct {
	http      *http.Client
	url       string
	method    string
	header    http.Header
	tmpl      *bodyTemplate
	from      string
	success   []int
	idPointer pointer // nil: do not read the answer
	timeout   time.Duration
	now       func() time.Time
	receipts  *receiptAuth // nil: receipts not configured
}

// New checks cfg, resolves its ${VAR} references with lookup (typically
// os.LookupEnv; nil when cfg has none), and returns a Client that sends
// with client (nil means a new http.Client with the default transport).
// The Client never follows redirects. Errors name the field and the
// variable, never a resolved value.
func New(cfg Config, client *http.Client, lookup func(string) (string, bool)) (*Client, error) {
	c := &Client{
		method:  cmp.Or(strings.ToUpper(cfg.Method), http.MethodPost),
		from:    cfg.From,
		timeout: cmp.Or(cfg.Timeout, defaultTimeout),
		now:     cfg.Now,
		header:  http.Header{},
	}
	if c.now == nil {
		c.now = time.Now
	}
	if cfg.Timeout < 0 {
		return nil, configErr("timeout is negative")
	}
	switch c.method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return nil, configErr("method must be POST, PUT or PATCH")
	}

	raw, err := expand(cfg.URL, lookup)
	if err != nil {
		return nil, configErr("url: %v", err)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		return nil, configErr("url must be an absolute http(s) URL without a fragment")
	}
	if u.User != nil {
		return nil, configErr("url must not hold credentials; send them in headers")
	}
	c.url = raw

	ct := cmp.Or(cfg.ContentType, "application/json")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, configErr("content_type is malformed")
	}
	var mode bodyMode
	switch {
	case mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")):
		mode = modeJSON
	case mt == "application/x-www-form-urlencoded":
		mode = modeForm
	default:
		return nil, configErr("content_type must be JSON or application/x-www-form-urlencoded, not %q", mt)
	}
	if c.tmpl, err = parseTemplate(cfg.BodyTemplate, mode, lookup); err != nil {
		return nil, configErr("%v", err)
	}

	for name, value := range cfg.Headers {
		if !validHeaderName(name) {
			return nil, configErr("headers: %q is not a valid header name", name)
		}
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Content-Type", "Content-Length", "Transfer-Encoding", "Connection":
			return nil, configErr("headers: %s is set by the adapter", http.CanonicalHeaderKey(name))
		}
		v, err := expand(value, lookup)
		if err != nil {
			return nil, configErr("headers: %s: %v", name, err)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, configErr("headers: %s: value holds a line break or NUL", name)
		}
		c.header.Set(name, v)
	}
	c.header.Set("Content-Type", ct)
	if c.header.Get("Accept") == "" {
		c.header.Set("Accept", "application/json")
	}

	for _, s := range cfg.SuccessStatuses {
		if s < 200 || s > 299 {
			return nil, configErr("success_statuses: %d is not a 2xx status", s)
		}
	}
	c.success = slices.Clone(cfg.SuccessStatuses)
	if cfg.IDPointer != "" {
		if c.idPointer, err = parsePointer(cfg.IDPointer); err != nil {
			return nil, configErr("id_pointer: %v", err)
		}
	}

	if cfg.Receipts.enabled() {
		if c.receipts, err = newReceiptAuth(cfg.Receipts, lookup); err != nil {
			return nil, err
		}
	}

	var hc http.Client
	if client != nil {
		hc = *client
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.http = &hc
	return c, nil
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("httpsms: config: %s: %w", fmt.Sprintf(format, args...), ErrConfig)
}

// expand replaces each ${NAME} in s by lookup(NAME). A "$" not followed by
// "{" is literal. The error names the variable, never a value.
func expand(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", errors.New("unterminated ${")
		}
		name := s[i+2 : i+2+end]
		if !validEnvName(name) {
			return "", fmt.Errorf("%q is not a variable name", name)
		}
		if lookup == nil {
			return "", fmt.Errorf("references ${%s} but no lookup was given", name)
		}
		v, ok := lookup(name)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(v)
		s = s[i+2+end+1:]
	}
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// Send renders m into the body template and posts it. With IDPointer set,
// the provider's id is read from a successful JSON answer; an answer that
// cannot be read still counts as success, since the provider has the
// message and a retry would send it twice.
//
// Failures are *adapters.Error with code "http_<status>": 429, 5xx, network
// errors and time-outs are temporary (with the provider's Retry-After);
// every other answer, including a 2xx outside SuccessStatuses, is
// permanent.
func (c *Client) Send(ctx context.Context, m sms.Message) (sms.Result, error) {
	if m.To == "" || m.Body == "" {
		return sms.Result{}, adapters.Permanent("invalid_message", fmt.Errorf("httpsms: send: no recipient or no text: %w", ErrInvalidMessage))
	}
	vals := [numFields]string{fieldTo: m.To, fieldFrom: cmp.Or(m.From, c.from), fieldBody: m.Body, fieldRef: m.Ref}
	body := c.tmpl.render(make([]byte, 0, c.tmpl.size(vals)), vals)

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, bytes.NewReader(body))
	if err != nil {
		return sms.Result{}, adapters.Permanent("invalid_request", errors.New("httpsms: send: cannot build request"))
	}
	req.Header = c.header.Clone()

	resp, err := c.http.Do(req)
	if err != nil {
		return sms.Result{}, httpx.TransportError(ctx, "http", err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
		resp.Body.Close()
	}()

	if !c.succeeded(resp.StatusCode) {
		e := &adapters.Error{
			Code:      "http_" + strconv.Itoa(resp.StatusCode),
			Temporary: resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500,
			Err:       fmt.Errorf("httpsms: send: HTTP %d: %w", resp.StatusCode, ErrRejected),
		}
		if e.Temporary {
			e.RetryAfter = httpx.RetryAfter(resp.Header.Get("Retry-After"), c.now())
		}
		return sms.Result{}, e
	}
	if c.idPointer == nil {
		return sms.Result{}, nil
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes))
	dec.UseNumber()
	var doc any
	if dec.Decode(&doc) != nil {
		return sms.Result{}, nil
	}
	id, _ := c.idPointer.scalar(doc)
	return sms.Result{ProviderID: id}, nil
}

func (c *Client) succeeded(status int) bool {
	if len(c.success) == 0 {
		return status >= 200 && status < 300
	}
	return slices.Contains(c.success, status)
}
