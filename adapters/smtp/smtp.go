// Package smtp delivers rendered email over SMTP: it builds the MIME message
// (BuildMIME), signs it with the brand's DKIM key if it has one, and hands it
// to a relay (Sender) over a small pool of reused connections.
//
// It runs inside the operator's gateway, after rendering, so the messages it
// handles hold personal data: the recipient's address, and whatever the
// template filled in. Its errors name fields and SMTP reply codes, never a
// header value, the recipient's address or the server's reply text (which
// servers often fill with the address); the reply text, with the address
// removed, is kept in ReplyError.Message and Result.Reply for operators who
// want it.
//
// Every header value is checked for CR, LF and other control characters
// before anything is sent (ErrHeaderInjection), so a value cannot add a
// header or a recipient.
package smtp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// TLSMode says whether the Sender upgrades the connection with STARTTLS.
type TLSMode string

const (
	// TLSRequire fails, as a temporary error, if the server does not offer
	// STARTTLS or the handshake fails.
	TLSRequire TLSMode = "require"
	// TLSOpportunistic uses STARTTLS when the server offers it. A refused
	// STARTTLS or a failed handshake is still an error: once offered, TLS
	// never falls back to plain text.
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSNone never starts TLS.
	TLSNone TLSMode = "none"
)

// Config says how to reach the relay.
type Config struct {
	Addr     string  // host:port
	HeloName string  // name sent with EHLO; default "localhost"
	TLS      TLSMode // default TLSOpportunistic
	// TLSConfig for STARTTLS; its ServerName defaults to Addr's host.
	TLSConfig *tls.Config
	// RootCAs, if set, are the only authorities trusted to sign the
	// relay's certificate (a private relay's CA; see LoadCAFile), instead
	// of the system's. Set it here or in TLSConfig, not in both.
	RootCAs *x509.CertPool
	// Username and Password enable AUTH PLAIN, which the Sender only uses
	// over TLS or to a loopback address.
	Username, Password string
	// Timeout bounds the dial and each SMTP command; default 30s.
	Timeout time.Duration
	// Now stamps messages without a Date; default time.Now.
	Now func() time.Time
	// Pool says how connections are reused; the zero value opens one per
	// message, as a Sender always did.
	Pool PoolConfig
}

// PoolConfig bounds and tunes the Sender's connections to the relay.
//
// go-smtp's client sends one command at a time (no PIPELINING), so the
// round trips that matter are the connection's own: TCP, greeting, EHLO,
// STARTTLS and its handshake, EHLO again, AUTH. A reused connection pays
// for none of them.
type PoolConfig struct {
	// MaxConns caps the connections open at once, in use or idle;
	// Sends beyond it wait for one (or for their context). 0: no cap.
	MaxConns int
	// MaxIdle is how many connections are kept open between messages.
	// 0 turns reuse off: every message gets its own connection. It is
	// lowered to MaxConns when that is smaller.
	MaxIdle int
	// IdleTimeout closes (QUIT) a connection idle this long, well before
	// a relay would time it out (RFC 5321 §4.5.3.2.7 suggests 5 minutes
	// for the server). Default 30s.
	IdleTimeout time.Duration
	// MaxMessagesPerConn is how many messages one connection carries
	// before it is closed with QUIT and a new one dialled; relays limit
	// this, and a long-lived connection pins one relay node. Default 100.
	MaxMessagesPerConn int
	// HealthCheckAfter: a connection idle longer than this gets a NOOP
	// before its next message, and is replaced if that fails. Default 5s.
	HealthCheckAfter time.Duration
}

const (
	defaultIdleTimeout        = 30 * time.Second
	defaultMaxMessagesPerConn = 100
	defaultHealthCheckAfter   = 5 * time.Second
)

func (p PoolConfig) validate() error {
	switch {
	case p.MaxConns < 0, p.MaxIdle < 0, p.MaxMessagesPerConn < 0:
		return fmt.Errorf("smtp: config: pool sizes must not be negative: %w", ErrConfig)
	case p.IdleTimeout < 0, p.HealthCheckAfter < 0:
		return fmt.Errorf("smtp: config: pool durations must not be negative: %w", ErrConfig)
	}
	return nil
}

func (p PoolConfig) withDefaults() PoolConfig {
	if p.MaxConns > 0 && p.MaxIdle > p.MaxConns {
		p.MaxIdle = p.MaxConns
	}
	if p.IdleTimeout == 0 {
		p.IdleTimeout = defaultIdleTimeout
	}
	if p.MaxMessagesPerConn == 0 {
		p.MaxMessagesPerConn = defaultMaxMessagesPerConn
	}
	if p.HealthCheckAfter == 0 {
		p.HealthCheckAfter = defaultHealthCheckAfter
	}
	return p
}

// Validate reports a configuration that could never deliver.
func (c Config) Validate() error {
	if c.Addr == "" {
		return fmt.Errorf("smtp: config: addr is required: %w", ErrConfig)
	}
	switch c.TLS {
	case "", TLSRequire, TLSOpportunistic, TLSNone:
	default:
		return fmt.Errorf("smtp: config: tls must be require, opportunistic or none, not %q: %w", c.TLS, ErrConfig)
	}
	if strings.ContainsAny(c.HeloName, " \t") || hasControl(c.HeloName) {
		return fmt.Errorf("smtp: config: helo name holds white space or a control character: %w", ErrConfig)
	}
	if (c.Username == "") != (c.Password == "") {
		return fmt.Errorf("smtp: config: username and password go together: %w", ErrConfig)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("smtp: config: negative timeout: %w", ErrConfig)
	}
	if c.RootCAs != nil && c.TLSConfig != nil && c.TLSConfig.RootCAs != nil {
		return fmt.Errorf("smtp: config: root CAs set both in RootCAs and in TLSConfig: %w", ErrConfig)
	}
	return c.Pool.validate()
}

// LoadCAFile reads PEM certificates from path into a pool for
// Config.RootCAs.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("smtp: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("smtp: CA file %s holds no PEM certificate: %w", path, ErrConfig)
	}
	return pool, nil
}

var (
	// ErrTemporary marks a failure worth retrying: a 4xx reply, a network
	// error, a time-out, a TLS failure.
	ErrTemporary = errors.New("temporary failure")
	// ErrPermanent marks a failure that a retry would repeat: a 5xx reply,
	// or a message that cannot be built.
	ErrPermanent = errors.New("permanent failure")

	// ErrHeaderInjection reports a control character in a header value.
	ErrHeaderInjection = errors.New("control character in header")
	// ErrInvalidMessage reports a message that cannot be built: a malformed
	// address or Message-ID, a missing Date, no body.
	ErrInvalidMessage = errors.New("invalid message")
	// ErrTLSUnavailable reports that TLS was required but not offered.
	ErrTLSUnavailable = errors.New("server does not offer STARTTLS")
	// ErrInsecureAuth reports that credentials would have gone out in
	// plain text to a host that is not loopback; nothing was sent.
	ErrInsecureAuth = errors.New("refusing AUTH without TLS")
	// ErrConfig reports an invalid Config or DKIM setting.
	ErrConfig = errors.New("invalid config")
	// ErrDKIMAlignment reports a message whose From domain is neither the
	// DKIM domain nor under it, so that its signature could not pass DMARC;
	// nothing was sent. It wraps ErrInvalidMessage.
	ErrDKIMAlignment = fmt.Errorf("DKIM domain does not align with From: %w", ErrInvalidMessage)
)

// ReplyError is an SMTP error reply. It unwraps to ErrTemporary (4xx) or
// ErrPermanent (5xx), so callers need not read the code to decide on a retry.
type ReplyError struct {
	Command  string // what got the reply: greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA
	Code     int    // basic reply code, e.g. 550
	Enhanced [3]int // enhanced status code (RFC 3463), e.g. {5, 1, 1}; zero if none
	// Message is the server's text with the recipient's address replaced
	// by "<recipient>". It is not part of Error(), which may be logged.
	Message string
}

func (e *ReplyError) Error() string {
	if e.Enhanced != [3]int{} {
		return fmt.Sprintf("smtp: %s: server replied %d %d.%d.%d", e.Command, e.Code, e.Enhanced[0], e.Enhanced[1], e.Enhanced[2])
	}
	return fmt.Sprintf("smtp: %s: server replied %d", e.Command, e.Code)
}

// Unwrap returns ErrPermanent for a 5xx reply and ErrTemporary otherwise.
func (e *ReplyError) Unwrap() error {
	if e.Code >= 500 && e.Code < 600 {
		return ErrPermanent
	}
	return ErrTemporary
}

// Temporary reports whether a retry may succeed.
func (e *ReplyError) Temporary() bool { return e.Unwrap() == ErrTemporary }
