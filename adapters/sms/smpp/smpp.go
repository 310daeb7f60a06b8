// Package smpp delivers SMS to an SMSC over SMPP 3.4, bound as a
// transceiver: it submits messages (submit_sm) and takes their delivery
// receipts (deliver_sm) on the same session.
//
// It runs inside the operator's gateway, after rendering, so the messages
// it handles hold personal data: the recipient's number and the text. Its
// errors carry SMPP command_status values and reason codes
// ("smpp_0x00000058"), never a number, a body, or text the SMSC sent.
//
// # Encoding
//
// A body whose every character is in the GSM 03.38 default alphabet or its
// extension table goes out with data_coding 0, one septet per octet
// (unpacked, as SMSCs expect from an ESME; they pack for the air). Any
// other body goes out as UCS-2 (data_coding 8), written as UTF-16BE so
// that emoji survive as surrogate pairs. A body longer than one SMS (160
// septets, 70 UTF-16 units) is split into parts of 153 septets or 67 units
// with a concatenation header (IE 0x00, 8-bit reference; esm_class 0x40).
// No part ends between an escape and its septet or inside a surrogate pair.
//
// # Receipts
//
// Every submit_sm asks for a delivery receipt. A deliver_sm with the
// receipt bit goes to the ReceiptSink, and is acknowledged only once the
// sink returned nil; when it fails, the client answers ESME_RX_T_APPN so
// the SMSC delivers the receipt again. Mobile-originated messages (a
// deliver_sm without the receipt bit) are acknowledged and dropped: the
// gateway has no inbound SMS path, and a refusal would only make the SMSC
// retry. The gateway's Message.Ref cannot travel: SMPP 3.4 has no field
// that echoes an opaque string into receipts, so receipts are matched by
// the SMSC's message_id alone.
//
// # Why its own PDU codec
//
// github.com/linxGnu/gosmpp (v0.3.0) was evaluated and not used. Its
// default handler acknowledges deliver_sm before the application sees it,
// so a crash loses the receipt; the alternative handler runs on the read
// loop, so a slow sink stalls every submit_sm_resp behind it. Responses
// reach the caller through callbacks, not by sequence number, so waiting for
// one submit_sm_resp means building the correlation anyway. Sequence
// numbers come from a package-level counter, the bind has no time-out, a
// lost connection is retried at a fixed interval rather than with back-off,
// and Close sends unbind without waiting for unbind_resp. The subset of
// SMPP a transceiver needs (six operations and their responses) is small,
// so the client speaks it directly, with a fuzzed decoder.
//
// # Sessions
//
// New returns at once; a goroutine binds in the background and binds again,
// with exponential back-off and jitter, whenever the connection drops. A
// Send made while no session is bound waits for one, up to Config.Timeout.
// The session is kept alive with enquire_link every Config.EnquireLink, and
// the SMSC's own enquire_link is answered. Close waits for Sends in flight,
// then unbinds and waits for unbind_resp.
package smpp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// Config says how to reach and bind to the SMSC.
type Config struct {
	// Addr is the SMSC's host:port.
	Addr string
	// TLS, if set, wraps the connection in TLS (SMPP over TLS). Its
	// ServerName defaults to Addr's host.
	TLS *tls.Config
	// SystemID, Password and SystemType are sent with bind_transceiver; at
	// most 15, 8 and 12 characters. SystemType is often empty.
	SystemID, Password, SystemType string
	// Source is the sender for a Message whose From is empty: an E.164
	// number, a short code or an alphanumeric sender id (at most 11
	// characters). Empty leaves the choice to the SMSC.
	Source string
	// EnquireLink is the interval of the keep-alive; default 30s.
	EnquireLink time.Duration
	// Timeout bounds the dial and bind, each wait for a response
	// (submit_sm_resp, enquire_link_resp, unbind_resp), each wait of a
	// Send for a bound session or a free window slot, and each call of the
	// ReceiptSink; default 10s.
	Timeout time.Duration
	// Window is how many submit_sm may await their response at once;
	// default 10. SMSCs set their own limit and throttle above it.
	Window int
	// ReconnectMin and ReconnectMax bound the back-off between attempts to
	// connect and bind; defaults 1s and 1m.
	ReconnectMin, ReconnectMax time.Duration
	// MaxParts caps the parts of one message (1 to 255); default 10. A
	// longer body fails permanently with code "smpp_too_long".
	MaxParts int
	// TemporaryStatuses adds submit_sm_resp command_status values, such as
	// an SMSC's vendor-specific ones (0x400-0x4FF), to those a retry may
	// cure.
	TemporaryStatuses []uint32
	// ReceiptLocation is the time zone of the dates in receipt texts,
	// which SMPP leaves to the SMSC; default UTC.
	ReceiptLocation *time.Location
	// Now stamps receipts without a readable done date; default time.Now.
	Now func() time.Time
	// Dial opens the connection; default a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

var (
	// ErrConfig marks a Config that could never bind.
	ErrConfig = errors.New("smpp: invalid config")
	// ErrClosed is the cause of a Send after Close.
	ErrClosed = errors.New("smpp: client closed")
	// ErrNotBound is the cause of a Send that found no bound session in
	// time; the error wraps the reason of the last failed attempt.
	ErrNotBound = errors.New("smpp: no bound session")
	// ErrTimeout is the cause of a Send whose submit_sm_resp did not come
	// in time. The SMSC may still have taken the message.
	ErrTimeout = errors.New("smpp: no response in time")
	// ErrConnectionLost is the cause of a Send whose session ended before
	// the response came. The SMSC may still have taken the message.
	ErrConnectionLost = errors.New("smpp: connection lost")
	// ErrMessage marks a Message the client cannot submit: a malformed
	// number or sender, an empty or overlong body.
	ErrMessage = errors.New("smpp: message not submittable")
)

// Validate reports a configuration that could never bind.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("smpp: config: "+format+": %w", append(args, ErrConfig)...)
	}
	if c.Addr == "" {
		return bad("addr is required")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return bad("addr must be host:port")
	}
	if c.SystemID == "" {
		return bad("system_id is required")
	}
	if len(c.SystemID) >= maxSystemID || hasNUL(c.SystemID) {
		return bad("system_id longer than %d characters or holds NUL", maxSystemID-1)
	}
	if len(c.Password) >= maxPassword || hasNUL(c.Password) {
		return bad("password longer than %d characters or holds NUL", maxPassword-1)
	}
	if len(c.SystemType) >= maxSystemType || hasNUL(c.SystemType) {
		return bad("system_type longer than %d characters or holds NUL", maxSystemType-1)
	}
	if c.Source != "" {
		if _, err := parseSource(c.Source); err != nil {
			return bad("source is not an E.164 number, a short code or an alphanumeric sender id")
		}
	}
	if c.EnquireLink < 0 || c.Timeout < 0 || c.ReconnectMin < 0 || c.ReconnectMax < 0 {
		return bad("negative duration")
	}
	if c.ReconnectMin > 0 && c.ReconnectMax > 0 && c.ReconnectMin > c.ReconnectMax {
		return bad("reconnect_min exceeds reconnect_max")
	}
	if c.Window < 0 {
		return bad("negative window")
	}
	if c.MaxParts < 0 || c.MaxParts > maxParts {
		return bad("max_parts must be between 1 and %d", maxParts)
	}
	return nil
}

func hasNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.EnquireLink == 0 {
		c.EnquireLink = 30 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Window == 0 {
		c.Window = 10
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = time.Second
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = time.Minute
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = c.ReconnectMin
	}
	if c.MaxParts == 0 {
		c.MaxParts = 10
	}
	if c.ReceiptLocation == nil {
		c.ReceiptLocation = time.UTC
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.TLS != nil && c.TLS.ServerName == "" {
		c.TLS = c.TLS.Clone()
		c.TLS.ServerName, _, _ = net.SplitHostPort(c.Addr)
	}
	return c
}

// address is a source or destination address with its type of number and
// numbering plan (SMPP 3.4 §5.2.5, §5.2.6).
type address struct {
	ton, npi byte
	addr     string
}

// parseDestination accepts an E.164 number, "+" and up to 15 digits.
func parseDestination(s string) (address, error) {
	if len(s) < 2 || len(s) > 16 || s[0] != '+' || !allDigits(s[1:]) {
		return address{}, fmt.Errorf("%w: destination is not an E.164 number", ErrMessage)
	}
	return address{ton: 1, npi: 1, addr: s[1:]}, nil
}

// parseSource accepts an E.164 number (international, ISDN), a short code
// of digits (unknown type, ISDN) or an alphanumeric sender id of up to 11
// printable ASCII characters (alphanumeric, unknown plan).
func parseSource(s string) (address, error) {
	switch {
	case len(s) >= 2 && len(s) <= 16 && s[0] == '+' && allDigits(s[1:]):
		return address{ton: 1, npi: 1, addr: s[1:]}, nil
	case len(s) >= 1 && len(s) <= maxAddr-1 && allDigits(s):
		return address{ton: 0, npi: 1, addr: s}, nil
	case len(s) >= 1 && len(s) <= 11 && printableASCII(s):
		return address{ton: 5, npi: 0, addr: s}, nil
	}
	return address{}, fmt.Errorf("%w: source is not an E.164 number, short code or sender id", ErrMessage)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}
