package callback

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// TypeMessageStatus is the Payload type of a message status change.
const TypeMessageStatus = "message.status"

// Payload is the JSON body of a status callback. It names messages by the
// core's id and the gateway's ext_message_id, never by recipient.
type Payload struct {
	Type         string    `json:"type"` // TypeMessageStatus when empty
	Tenant       string    `json:"tenant"`
	ID           string    `json:"id"` // the core's message id
	ExtMessageID string    `json:"ext_message_id,omitempty"`
	Status       string    `json:"status"`
	Reason       string    `json:"reason,omitempty"`
	DecisionID   string    `json:"decision_id,omitempty"`
	Seq          int64     `json:"seq"` // per tenant, increasing
	Time         time.Time `json:"time"`
	Checkpoint   string    `json:"checkpoint,omitempty"` // latest signed audit checkpoint
}

var (
	// ErrRetryable: try again later (network failure, time-out, 408, 429, 5xx).
	ErrRetryable = errors.New("callback: retryable")
	// ErrPermanent: retrying will not help (other 4xx, a redirect, a refused
	// target, a bad URL or payload).
	ErrPermanent = errors.New("callback: permanent")
	// ErrForbiddenAddress: the target resolved to an address the gateway
	// must not call. Errors wrapping it also match ErrPermanent.
	ErrForbiddenAddress = errors.New("callback: target address not allowed")
)

// StatusError is the error for a response that is not 2xx. It matches
// ErrRetryable or ErrPermanent with errors.Is.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return "callback: HTTP status " + strconv.Itoa(e.Code) }

func (e *StatusError) Is(target error) bool {
	retry := e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests || e.Code >= 500
	return target == ErrRetryable && retry || target == ErrPermanent && !retry
}

// ClientOptions configure a Client.
type ClientOptions struct {
	// AllowPrivate lets the client connect to loopback, private and
	// link-local addresses. For development and tests only.
	AllowPrivate bool
	Timeout      time.Duration    // per request, default 10s
	Now          func() time.Time // default time.Now
}

// Client posts signed status callbacks. It is safe for concurrent use.
type Client struct {
	key  ed25519.PrivateKey
	now  func() time.Time
	http *http.Client
}

// NewClient returns a Client that signs with key.
func NewClient(key ed25519.PrivateKey, opts ClientOptions) *Client {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}
	if !opts.AllowPrivate {
		// The check runs on the address actually dialled, after DNS, so a
		// name that resolves (or re-resolves) to an internal address is
		// refused too.
		d.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
			}
			if !publicAddr(ap.Addr()) {
				return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
			}
			return nil
		}
	}
	return &Client{
		key: key,
		now: opts.Now,
		http: &http.Client{
			Transport: &http.Transport{
				Proxy:                 nil, // a proxy would dial for us, past the address check
				DialContext:           d.DialContext,
				ForceAttemptHTTP2:     true,
				MaxIdleConns:          100,
				MaxIdleConnsPerHost:   8,
				IdleConnTimeout:       90 * time.Second,
				TLSHandshakeTimeout:   opts.Timeout,
				ExpectContinueTimeout: time.Second,
			},
			Timeout: opts.Timeout,
			// A redirect could point anywhere; the core must configure the final URL.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Post signs p and posts it to rawURL. A nil error means a 2xx answer.
// Otherwise the error matches ErrRetryable or ErrPermanent. Errors never
// contain the URL, which may carry a credential.
func (c *Client) Post(ctx context.Context, rawURL string, p Payload) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%w: callback URL must be absolute http(s)", ErrPermanent)
	}
	if p.Tenant == "" || p.Seq <= 0 {
		return fmt.Errorf("%w: payload needs a tenant and a sequence number", ErrPermanent)
	}
	if p.Type == "" {
		p.Type = TypeMessageStatus
	}
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("%w: encode payload: %w", ErrPermanent, err)
	}
	return c.post(ctx, u, eventID(p.Tenant, p.Seq), body)
}

// PostRaw signs body (another receiver's JSON shape, such as the compat
// API's callbacks) with the webhook id of the tenant's event seq, and posts
// it to rawURL, with the same address checks, signature headers and error
// classes as Post.
func (c *Client) PostRaw(ctx context.Context, rawURL, tenant string, seq int64, body []byte) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%w: callback URL must be absolute http(s)", ErrPermanent)
	}
	if tenant == "" || seq <= 0 {
		return fmt.Errorf("%w: a tenant and a sequence number are required", ErrPermanent)
	}
	return c.post(ctx, u, eventID(tenant, seq), body)
}

func (c *Client) post(ctx context.Context, u *url.URL, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: build request", ErrPermanent)
	}
	ts := c.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "blindpost-gateway")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(c.key, id, ts, body))

	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL
		}
		if errors.Is(err, ErrForbiddenAddress) {
			return fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		return fmt.Errorf("%w: %w", ErrRetryable, err)
	}
	// Drain a little so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return &StatusError{Code: resp.StatusCode}
}

// Address ranges that publicAddr refuses beyond those netip classifies.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64 (RFC 8215)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/32"),       // Teredo: tunnels to any IPv4 address
	netip.MustParsePrefix("2002::/16"),       // 6to4: likewise
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
}

// nat64 is the well-known NAT64 prefix (RFC 6052): its addresses stand for
// the IPv4 address in their last four bytes, which is what gets checked.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// publicAddr reports whether ip is a globally routable unicast address the
// gateway may call: not loopback, private (RFC 1918, ULA), link-local,
// unspecified, multicast, CGNAT or otherwise reserved.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte(b[12:]))
	}
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}
