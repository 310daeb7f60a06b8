// Package compat serves the reference vendor's secured-gateway API:
// POST /compat/email and POST /compat/sms, with the vendor's JSON bodies,
// its Authorization secret and IP allow-list, and its "always HTTP 200"
// answers {"error_code":0,"ext_message_id":…} or {"error_code":N,
// "error_message":…}. It also builds the status callbacks that API posts to
// a request's callback_url, and checks those URLs against the tenant's
// allow-list.
//
// It sits on the operator side of the trust boundary, at its edge: requests
// carry rendered content and the PAM's pseudonymous user id, and answers go
// back to the PAM. This package is only the HTTP contract. The gateway
// implements Acceptor and runs each accepted request through the same
// pipeline as the native API (policy as api "compat", vault, audit, queue).
//
// The reference API has no signature, freshness or replay protection, so it
// is off unless a tenant enables it, and de-duplication rests on the
// caller's email_uid / im_uid. Nothing a request carries — addresses, user
// ids, bodies — ever appears in an answer or a log line; see docs/compat.md.
package compat

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Channels of a Request.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
)

// Activity types that send an email to Request.ToEmailAddress instead of
// the profile's address.
const (
	ActivityPreview              = "preview"
	ActivityEmailCustomerSupport = "EmailCustomerSupport"
)

// Tenant is one operator label that may use the compatibility API.
type Tenant struct {
	ID    string
	Brand string
	// Secrets are the values the Authorization header may carry; several
	// let the operator rotate without downtime. Each is at least
	// MinSecretBytes long and unique across tenants.
	Secrets [][]byte
	// AllowIPs are the client addresses allowed; there is no default, so
	// "allow all" must be written as 0.0.0.0/0 and ::/0.
	AllowIPs []netip.Prefix
	// CallbackAllow are the allowed callback URL prefixes, each
	// "https://host[:port]/path-prefix" (http only for a loopback host).
	CallbackAllow []string
	EmailEnabled  bool
	SMSEnabled    bool
}

// Request is one accepted API call, validated and mapped to the gateway's
// names. For SMS/IM the body is in Text and from_number in From.
type Request struct {
	Channel        string // ChannelEmail or ChannelSMS
	UID            string // email_uid or im_uid
	ExtUserID      string
	From           string
	ReplyTo        string
	Subject        string
	HTML           string
	Text           string
	ActivityType   string
	ToEmailAddress string
	CallbackURL    string
}

// Acceptor runs a request through the gateway's pipeline. It returns the
// gateway's ext_message_id once the message is durably queued, or an error
// wrapping ErrDenied, ErrUnavailable, ErrInvalid or ErrDuplicateConflict.
// A repeated UID with the same content returns the first ext_message_id and
// a nil error. The Tenant is the handler's own copy, shared by all requests
// and without Secrets: identify it by ID, and do not modify it.
type Acceptor interface {
	AcceptCompat(ctx context.Context, t *Tenant, r Request) (extMessageID string, err error)
}

// Sentinels an Acceptor's errors wrap. Their text never reaches a client:
// answers use fixed messages (see Denied and FieldError for the two ways an
// Acceptor can add PII-free detail).
var (
	ErrDenied            = errors.New("compat: denied by policy")
	ErrUnavailable       = errors.New("compat: temporarily unavailable")
	ErrInvalid           = errors.New("compat: invalid request")
	ErrDuplicateConflict = errors.New("compat: uid used before with different content")
)

// Options configure a Handler.
type Options struct {
	Log *slog.Logger // default: discard
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed. When the peer is one of them, the client is the right-most
	// X-Forwarded-For entry that is not; otherwise the peer itself.
	TrustedProxies []netip.Prefix
	MaxBodyBytes   int64            // default DefaultMaxBodyBytes
	Now            func() time.Time // default time.Now; times requests
	// Observe, if set, is called once per request with the authenticated
	// tenant's ID ("" if none), the channel ("" for an unknown path), the
	// answer's error code and the time taken: the hook for the gateway's
	// metrics.
	Observe func(tenant, channel string, code int, d time.Duration)
}

// Limits.
const (
	DefaultMaxBodyBytes = 1 << 20
	MinSecretBytes      = 16
	MaxUIDBytes         = 128
	MaxExtUserIDBytes   = 128
	MaxSubjectBytes     = 998
	MaxBodyFieldBytes   = 256 << 10 // body, text_body
	MaxAddressBytes     = 512
	MaxFromNumberBytes  = 32
	MaxActivityBytes    = 64
	MaxCallbackURLBytes = 2048
)

// Handler serves POST /compat/email and POST /compat/sms. It matches the
// full request path, so mount it at "/compat/" without stripping the
// prefix. It is safe for concurrent use and holds no state between
// requests.
type Handler struct {
	acc     Acceptor
	log     *slog.Logger
	now     func() time.Time
	observe func(string, string, int, time.Duration)
	maxBody int64
	proxies []netip.Prefix
	tenants []*tenant
	keys    []secretKey // every secret of every tenant, compared in full each request
}

// tenant is the handler's own copy of a Tenant, with its parsed allow-lists.
type tenant struct {
	pub       *Tenant
	allowIPs  []netip.Prefix
	callbacks []cbPrefix
}

type secretKey struct {
	sum   [sha256.Size]byte
	owner int // index into Handler.tenants
}

// New checks the tenants and returns a Handler. It keeps deep copies: later
// changes to tenants do not reach it. Errors name the tenant and the
// setting, never a secret.
func New(tenants []*Tenant, acc Acceptor, opts Options) (*Handler, error) {
	if acc == nil {
		return nil, errors.New("compat: nil Acceptor")
	}
	if opts.MaxBodyBytes < 0 {
		return nil, errors.New("compat: MaxBodyBytes is negative")
	}
	h := &Handler{acc: acc, log: opts.Log, now: opts.Now, observe: opts.Observe, maxBody: opts.MaxBodyBytes}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	for i, p := range opts.TrustedProxies {
		np, err := normPrefix(p)
		if err != nil {
			return nil, fmt.Errorf("compat: trusted proxy %d: %w", i, err)
		}
		h.proxies = append(h.proxies, np)
	}
	ids := make(map[string]bool)
	sums := make(map[[sha256.Size]byte]bool)
	enabled := false
	for i, t := range tenants {
		if t == nil {
			return nil, fmt.Errorf("compat: tenant %d is nil", i)
		}
		if t.ID == "" {
			return nil, fmt.Errorf("compat: tenant %d has no id", i)
		}
		if ids[t.ID] {
			return nil, fmt.Errorf("compat: tenant %q is configured twice", t.ID)
		}
		ids[t.ID] = true
		if !t.EmailEnabled && !t.SMSEnabled {
			continue // its secrets open nothing, so they are not loaded
		}
		enabled = true
		ct, err := copyTenant(t)
		if err != nil {
			return nil, fmt.Errorf("compat: tenant %q: %w", t.ID, err)
		}
		for j, s := range t.Secrets {
			sum := sha256.Sum256(s)
			if sums[sum] {
				return nil, fmt.Errorf("compat: tenant %q: secret %d is also configured elsewhere", t.ID, j)
			}
			sums[sum] = true
			h.keys = append(h.keys, secretKey{sum: sum, owner: len(h.tenants)})
		}
		h.tenants = append(h.tenants, ct)
	}
	if !enabled {
		return nil, errors.New("compat: no tenant enables the API")
	}
	return h, nil
}

func copyTenant(t *Tenant) (*tenant, error) {
	if len(t.Secrets) == 0 {
		return nil, errors.New("no secrets")
	}
	for j, s := range t.Secrets {
		if len(s) < MinSecretBytes {
			return nil, fmt.Errorf("secret %d is shorter than %d bytes", j, MinSecretBytes)
		}
	}
	if len(t.AllowIPs) == 0 {
		return nil, errors.New("allow_ips is empty (write 0.0.0.0/0 and ::/0 to allow every address)")
	}
	if len(t.CallbackAllow) == 0 {
		return nil, errors.New("callback_allow is empty, so every request would be refused")
	}
	// The copy handed to the Acceptor has no secrets: the gateway has no
	// use for them, and they stay in one place (the hashes in Handler.keys).
	c := &Tenant{ID: t.ID, Brand: t.Brand, EmailEnabled: t.EmailEnabled, SMSEnabled: t.SMSEnabled}
	ct := &tenant{pub: c}
	for j, p := range t.AllowIPs {
		np, err := normPrefix(p)
		if err != nil {
			return nil, fmt.Errorf("allow_ips %d: %w", j, err)
		}
		ct.allowIPs = append(ct.allowIPs, np)
		c.AllowIPs = append(c.AllowIPs, p)
	}
	for j, s := range t.CallbackAllow {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("callback_allow %d: %w", j, err)
		}
		ct.callbacks = append(ct.callbacks, p)
		c.CallbackAllow = append(c.CallbackAllow, s)
	}
	return ct, nil
}

// normPrefix validates p and writes an IPv4-mapped IPv6 prefix as the IPv4
// prefix it means, since client addresses are compared unmapped.
func normPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, errors.New("invalid prefix")
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, errors.New("prefix has a zone")
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, errors.New("IPv4-mapped prefix shorter than /96")
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
