// Package push delivers mobile and desktop push notifications through an
// operator's custom push gateway: an HTTP endpoint the operator runs, which
// takes one JSON document per push token and forwards it to FCM, APNs or a
// browser (DESIGN.md §1, "Custom push gateway"):
//
//	POST <URL>
//	Authorization: <configured secret>
//	{"user_ext_id": …, "ext_brand_id": …, "push_token": …, "device_type": …,
//	 "message": {"message_id": …, "title": …, "body": …, "action": …,
//	             "iconUrl": …, "imageUrl": …, <extra fields>}}
//
// It runs inside the operator's gateway, after rendering. The user id, the
// push token and the rendered title and body are personal data, and the
// Authorization value is a secret: none of them appears in an error, and
// neither does the push gateway's response body. Every error returned by
// Send holds an *adapters.Error whose code is "push_<status>" ("push_410"),
// or one of push_network, push_timeout, push_canceled,
// push_invalid_message, push_no_token.
package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/blindpost/blindpost/adapters/internal/httpx"

	"github.com/blindpost/blindpost/adapters"
)

const (
	defaultTimeout = 10 * time.Second
	// maxDrain is how much of a response is read (and thrown away) so the
	// connection can be reused; the body is never interpreted.
	maxDrain = 64 << 10
	// sendAllParallel bounds the requests SendAll has in flight for one
	// player: a player has a handful of devices, and one slow token must
	// not hold up the others.
	sendAllParallel = 4
	// maxSafeInteger is the largest message_id sent as a JSON number:
	// beyond 2^53-1 a JavaScript receiver would round it.
	maxSafeInteger = 1<<53 - 1
)

var (
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("invalid config")
	// ErrInvalidMessage reports a Message that cannot be sent: no push
	// token or user id, invalid UTF-8, an extra field that is empty or
	// shadows a standard one.
	ErrInvalidMessage = errors.New("invalid message")
	// ErrNoTokens reports a SendAll without tokens.
	ErrNoTokens = errors.New("no push tokens")
	// ErrTokenGone: the push gateway answered 404 or 410 for the token,
	// which FCM and APNs use for an uninstalled app or an expired token.
	// The gateway should drop the token from the player's record.
	ErrTokenGone = errors.New("push token is no longer valid")
	// ErrUnauthorized: the push gateway refused the Authorization value
	// (401, 403); the operator's configuration, not the player's.
	ErrUnauthorized = errors.New("push gateway refused the authorization")
)

// Config says where the operator's push gateway is.
type Config struct {
	// URL is the push gateway's endpoint. It must be https, unless the
	// host is loopback or AllowInsecureHTTP is set.
	URL string
	// Authorization is sent verbatim as the Authorization header (e.g. a
	// shared key, or "Bearer …"). It is a secret.
	Authorization string
	// Timeout bounds each request; default 10s.
	Timeout time.Duration
	// AllowInsecureHTTP permits a plain http URL to a host that is not
	// loopback, for a push gateway inside the operator's own network. The
	// Authorization value and the player's data then cross it unencrypted.
	AllowInsecureHTTP bool
	// Now reads the clock for Retry-After dates; default time.Now.
	Now func() time.Time
}

// String leaves the Authorization value out, so a logged Config does not
// leak it.
func (c Config) String() string {
	return fmt.Sprintf("push.Config{URL:%q Authorization:<redacted> Timeout:%s AllowInsecureHTTP:%t}",
		origin(c.URL), c.Timeout, c.AllowInsecureHTTP)
}

// origin is the scheme and host of a URL, without a path or query that
// might hold a key.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid>"
	}
	return u.Scheme + "://" + u.Host
}

// Validate reports a configuration that could never deliver. Its errors
// name the field, never the Authorization value.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	if c.URL == "" {
		return fmt.Errorf("push: config: url is required: %w", ErrConfig)
	}
	if err != nil || u.Host == "" {
		return fmt.Errorf("push: config: url is not an absolute URL: %w", ErrConfig)
	}
	if u.User != nil {
		return fmt.Errorf("push: config: url must not hold user info; use authorization: %w", ErrConfig)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !httpx.IsLoopback(u.Hostname()) && !c.AllowInsecureHTTP {
			return fmt.Errorf("push: config: url must be https unless the host is loopback or allow_insecure_http is set: %w", ErrConfig)
		}
	default:
		return fmt.Errorf("push: config: url scheme must be https: %w", ErrConfig)
	}
	if strings.TrimSpace(c.Authorization) == "" {
		return fmt.Errorf("push: config: authorization is required: %w", ErrConfig)
	}
	if strings.ContainsFunc(c.Authorization, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("push: config: authorization holds a control character: %w", ErrConfig)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("push: config: negative timeout: %w", ErrConfig)
	}
	return nil
}

// Message is one push notification for one push token.
type Message struct {
	UserExtID  string // the player's id on the operator's side
	ExtBrandID string // the brand, for multi-brand operators; may be empty
	PushToken  string // the device's token, as the push gateway issued it
	DeviceType string // e.g. "ANDROID", "IOS", "DESKTOP", "MOBILE"

	// MessageID is the gateway's id for the notification, for the push
	// gateway's impression and click reports. A decimal integer up to
	// 2^53-1 is sent as a JSON number, as the reference vendor sends its
	// ids (receivers written for it parse a number); anything else as a
	// string.
	MessageID string
	Title     string
	Body      string
	Action    string // URL or deep link opened on click; optional
	IconURL   string // optional
	ImageURL  string // optional

	// Extra holds further string fields of "message" (button1, action2,
	// badgeUrl, engagement_uid, …). A key must not repeat a field above.
	Extra map[string]string
}

// Result is the push gateway's acceptance of a Message.
type Result struct {
	// StatusCode is the push gateway's 2xx status.
	StatusCode int
}

// Token is one of a player's devices.
type Token struct {
	PushToken  string
	DeviceType string
}

// TokenResult is what happened to one Token in SendAll.
type TokenResult struct {
	Result Result
	// Err is nil if the push gateway accepted the token's message;
	// errors.Is(Err, ErrTokenGone) says the token should be dropped.
	Err error
}

// Client posts to one push gateway. It is safe for concurrent use.
type Client struct {
	cfg Config
	hc  *http.Client
}

// New returns a Client for cfg. client supplies the transport; nil means a
// client with http.DefaultTransport. The Client uses its own copy of client
// that does not follow redirects, so the Authorization value and the
// player's data go only to the configured URL.
func New(cfg Config, client *http.Client) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	hc := &http.Client{}
	if client != nil {
		*hc = *client
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{cfg: cfg, hc: hc}, nil
}

// String leaves the Authorization value out, so a logged Client does not
// leak it.
func (c *Client) String() string { return "push.Client(" + origin(c.cfg.URL) + ")" }

// Send posts m for its one push token. A nil error means the push gateway
// answered 2xx. Otherwise the error holds an *adapters.Error:
//
//   - 404, 410: permanent, "push_404"/"push_410", wrapping ErrTokenGone.
//   - 408, 429, 5xx: temporary, with RetryAfter from a Retry-After header.
//   - network errors, time-outs: temporary, "push_network", "push_timeout".
//   - 401, 403: permanent, wrapping ErrUnauthorized.
//   - any other status (other 4xx, 1xx, 3xx, which are not followed):
//     permanent, "push_<status>".
//
// A push gateway that answers 404 for its own URL (a typo in Config.URL)
// looks like every token being gone; the gateway should alert on a run of
// ErrTokenGone rather than drop tokens wholesale.
func (c *Client) Send(ctx context.Context, m Message) (Result, error) {
	body, err := encode(m)
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		// NewRequest's errors quote the URL; it was validated, so this
		// is a bug, reported without the cause.
		return Result{}, adapters.Permanent("push_request", errors.New("push: cannot build request"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", c.cfg.Authorization)
	resp, err := c.hc.Do(req)
	if err != nil {
		return Result{}, httpx.TransportError(ctx, "push", err)
	}
	defer resp.Body.Close()
	// Drained for connection reuse, never read: a push gateway may echo
	// the token or the text.
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))

	status := resp.StatusCode
	code := "push_" + strconv.Itoa(status)
	refused := fmt.Errorf("push: gateway answered %d", status)
	switch {
	case status >= 200 && status < 300:
		return Result{StatusCode: status}, nil
	case status == http.StatusNotFound || status == http.StatusGone:
		return Result{}, adapters.Permanent(code, fmt.Errorf("push: gateway answered %d: %w", status, ErrTokenGone))
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return Result{}, adapters.Permanent(code, fmt.Errorf("push: gateway answered %d: %w", status, ErrUnauthorized))
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		e := adapters.Temporary(code, refused)
		e.RetryAfter = httpx.RetryAfter(resp.Header.Get("Retry-After"), c.cfg.Now())
		return Result{}, e
	default:
		return Result{}, adapters.Permanent(code, refused)
	}
}

// SendAll sends base to each of a player's tokens (base.PushToken and
// base.DeviceType are replaced by each Token's), at most 4 at a time. The
// results are in the order of tokens; a token listed twice is sent once.
//
// The error is nil if at least one token was accepted: the player got the
// notification, and retrying the whole call would duplicate it on those
// devices. The TokenResults then say which tokens to drop (ErrTokenGone) and
// which failed temporarily; resending to those alone is the caller's call.
// If no token was accepted, the error is the first temporary failure if
// there is one (a retry may succeed), else the first permanent one.
//
// The adapter loops, rather than the gateway, so that the fan-out, its
// bound and the "delivered if any device took it" rule live in one place.
func (c *Client) SendAll(ctx context.Context, base Message, tokens []Token) ([]TokenResult, error) {
	if len(tokens) == 0 {
		return nil, adapters.Permanent("push_no_token", fmt.Errorf("push: %w", ErrNoTokens))
	}
	results := make([]TokenResult, len(tokens))
	first := make(map[string]int, len(tokens)) // token -> index that sends it
	sem := make(chan struct{}, sendAllParallel)
	var wg sync.WaitGroup
	for i, t := range tokens {
		if _, dup := first[t.PushToken]; dup {
			continue
		}
		first[t.PushToken] = i
		m := base
		m.PushToken, m.DeviceType = t.PushToken, t.DeviceType
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := c.Send(ctx, m)
			results[i] = TokenResult{Result: res, Err: err}
		})
	}
	wg.Wait()
	for i, t := range tokens {
		results[i] = results[first[t.PushToken]]
	}

	var firstTemp, firstPerm error
	for _, r := range results {
		switch {
		case r.Err == nil:
			return results, nil
		case errors.Is(r.Err, adapters.ErrTemporary):
			if firstTemp == nil {
				firstTemp = r.Err
			}
		case firstPerm == nil:
			firstPerm = r.Err
		}
	}
	err := firstTemp
	if err == nil {
		err = firstPerm
	}
	return results, fmt.Errorf("push: none of %d tokens accepted: %w", len(tokens), err)
}

// standardFields are the keys of "message" that Message sets itself.
var standardFields = []string{"message_id", "title", "body", "action", "iconUrl", "imageUrl"}

// encode builds the request body, checking m first. The field order is
// fixed (standard fields, then Extra by key), so the body is deterministic.
func encode(m Message) ([]byte, error) {
	invalid := func(what string) error {
		return adapters.Permanent("push_invalid_message", fmt.Errorf("push: %s: %w", what, ErrInvalidMessage))
	}
	if strings.TrimSpace(m.PushToken) == "" {
		return nil, invalid("no push token")
	}
	if strings.TrimSpace(m.UserExtID) == "" {
		return nil, invalid("no user id")
	}
	for _, s := range []string{m.UserExtID, m.ExtBrandID, m.PushToken, m.DeviceType, m.MessageID, m.Title, m.Body, m.Action, m.IconURL, m.ImageURL} {
		if !utf8.ValidString(s) {
			return nil, invalid("field is not valid UTF-8")
		}
	}
	keys := make([]string, 0, len(m.Extra))
	for k, v := range m.Extra {
		switch {
		case k == "":
			return nil, invalid("extra field with an empty name")
		case slices.Contains(standardFields, k):
			// Named, not quoted: the standard names are the package's.
			return nil, invalid("extra field " + k + " repeats a standard field")
		case !utf8.ValidString(k) || !utf8.ValidString(v):
			return nil, invalid("extra field is not valid UTF-8")
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)

	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// The push gateway reads JSON, not HTML: <, > and & stay as they are,
	// which keeps URLs with & readable.
	enc.SetEscapeHTML(false)
	writeString := func(s string) {
		enc.Encode(s) // a string always encodes
		b.Truncate(b.Len() - 1)
	}
	b.WriteString(`{"user_ext_id":`)
	writeString(m.UserExtID)
	b.WriteString(`,"ext_brand_id":`)
	writeString(m.ExtBrandID)
	b.WriteString(`,"push_token":`)
	writeString(m.PushToken)
	b.WriteString(`,"device_type":`)
	writeString(m.DeviceType)
	b.WriteString(`,"message":{"message_id":`)
	if n, err := strconv.ParseUint(m.MessageID, 10, 64); err == nil && n <= maxSafeInteger && strconv.FormatUint(n, 10) == m.MessageID {
		b.WriteString(m.MessageID)
	} else {
		writeString(m.MessageID)
	}
	b.WriteString(`,"title":`)
	writeString(m.Title)
	b.WriteString(`,"body":`)
	writeString(m.Body)
	for _, f := range []struct{ key, value string }{{"action", m.Action}, {"iconUrl", m.IconURL}, {"imageUrl", m.ImageURL}} {
		if f.value != "" {
			b.WriteString(`,"` + f.key + `":`)
			writeString(f.value)
		}
	}
	for _, k := range keys {
		b.WriteByte(',')
		writeString(k)
		b.WriteByte(':')
		writeString(m.Extra[k])
	}
	b.WriteString("}}")
	return b.Bytes(), nil
}
