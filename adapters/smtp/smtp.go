// Package smtp delivers rendered email over SMTP: it builds the MIME message
// (BuildMIME) and hands it to a relay (Sender).
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
	"errors"
	"fmt"
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
	// Username and Password enable AUTH PLAIN, which the Sender only uses
	// over TLS or to a loopback address.
	Username, Password string
	// Timeout bounds the dial and each SMTP command; default 30s.
	Timeout time.Duration
	// Now stamps messages without a Date; default time.Now.
	Now func() time.Time
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
	return nil
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
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("invalid config")
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
