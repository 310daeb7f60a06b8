package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

const defaultTimeout = 30 * time.Second

// Result describes an accepted message.
type Result struct {
	MessageID string
	// Reply is the relay's final reply text, usually holding its queue id,
	// with the recipient's address removed.
	Reply string
	TLS   bool // the message went over TLS
}

// Sender sends messages through one relay.
//
// Each Send opens its own connection, so a Sender is safe for concurrent use
// and a broken connection never affects another message. Connection reuse
// (RSET between messages, a bounded pool per relay) comes in a later change;
// it belongs here, behind Send, so callers will not change.
type Sender struct {
	cfg Config
}

// NewSender returns a Sender for cfg. Call cfg.Validate at start-up to catch
// mistakes early; Send reports them too.
func NewSender(cfg Config) *Sender {
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.HeloName == "" {
		cfg.HeloName = "localhost"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSOpportunistic
	}
	return &Sender{cfg: cfg}
}

// Send delivers m to its one recipient. A nil error means the relay accepted
// the message. Otherwise the error wraps ErrTemporary (worth a retry: 4xx,
// network, TLS, time-out, cancelled ctx) or ErrPermanent (5xx, a message
// that cannot be built); a reply from the server is a *ReplyError.
// Nothing is sent unless the whole message builds.
func (s *Sender) Send(ctx context.Context, m Message) (Result, error) {
	if err := s.cfg.Validate(); err != nil {
		return Result{}, fmt.Errorf("%w (%w)", err, ErrTemporary)
	}
	if m.Date.IsZero() {
		m.Date = s.cfg.Now()
	}
	data, env, err := build(m)
	if err != nil {
		return Result{}, fmt.Errorf("%w (%w)", err, ErrPermanent)
	}

	d := net.Dialer{Timeout: s.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return Result{}, s.transportError(ctx, "dial", err, env.to)
	}
	defer conn.Close()
	// go-smtp sets its own deadlines per command; cancelling ctx closes the
	// connection, which ends whatever command is in flight.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	sc := net.Conn(conn)
	tlsOn := false
	if s.cfg.TLS != TLSNone {
		if sc, tlsOn, err = s.startTLS(ctx, conn); err != nil {
			return Result{}, s.classify(ctx, err, env.to)
		}
	}
	c := gosmtp.NewClient(sc)
	c.CommandTimeout = s.cfg.Timeout
	c.SubmissionTimeout = s.cfg.Timeout
	defer c.Close()

	if err := c.Hello(s.cfg.HeloName); err != nil {
		return Result{}, s.classify(ctx, withCommand("EHLO", err), env.to)
	}
	if s.cfg.Username != "" {
		if err := s.auth(c, tlsOn, conn.RemoteAddr()); err != nil {
			return Result{}, s.classify(ctx, err, env.to)
		}
	}
	if err := c.Mail(env.from, nil); err != nil {
		return Result{}, s.classify(ctx, withCommand("MAIL", err), env.to)
	}
	if err := c.Rcpt(env.to, nil); err != nil {
		return Result{}, s.classify(ctx, withCommand("RCPT", err), env.to)
	}
	w, err := c.Data()
	if err != nil {
		return Result{}, s.classify(ctx, withCommand("DATA", err), env.to)
	}
	// go-smtp bounds waiting for replies, not writing the body.
	sc.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
	if _, err := w.Write(data); err != nil {
		return Result{}, s.classify(ctx, withCommand("DATA", err), env.to)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return Result{}, s.classify(ctx, withCommand("DATA", err), env.to)
	}
	_ = c.Quit() // the message is accepted; a failed QUIT changes nothing
	return Result{MessageID: m.MessageID, Reply: redact(resp.StatusText, env.to), TLS: tlsOn}, nil
}

// auth runs AUTH PLAIN, refusing to send the password in plain text to a
// host that is not loopback.
func (s *Sender) auth(c *gosmtp.Client, tlsOn bool, remote net.Addr) error {
	if !tlsOn && !isLoopback(remote) {
		return fmt.Errorf("smtp: AUTH: %w (%w)", ErrInsecureAuth, ErrTemporary)
	}
	if !c.SupportsAuth(sasl.Plain) {
		return fmt.Errorf("smtp: AUTH: server does not offer PLAIN (%w)", ErrTemporary)
	}
	return withCommand("AUTH", c.Auth(sasl.NewPlainClient("", s.cfg.Username, s.cfg.Password)))
}

// startTLS runs the plain-text start of the session — greeting, EHLO,
// STARTTLS — itself, because go-smtp v0.25's Client cannot upgrade a
// session it has begun: its STARTTLS is only reachable through
// NewClientStartTLS, which fails without telling "not offered" apart and
// leaves no session to go on with in plain text. The returned connection
// replays a greeting so that go-smtp's Client can take over.
func (s *Sender) startTLS(ctx context.Context, conn net.Conn) (net.Conn, bool, error) {
	conn.SetDeadline(time.Now().Add(s.cfg.Timeout))
	defer conn.SetDeadline(time.Time{})
	tp := textproto.NewConn(conn)

	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, withCommand("greeting", err)
	}
	offered := false
	_, msg, err := cmd(tp, 250, "EHLO %s", s.cfg.HeloName)
	switch {
	case err == nil:
		for _, line := range strings.Split(msg, "\n")[1:] {
			if f := strings.Fields(line); len(f) > 0 && strings.EqualFold(f[0], "STARTTLS") {
				offered = true
			}
		}
	case s.cfg.TLS == TLSRequire:
		return nil, false, withCommand("EHLO", err)
	default:
		// A server without EHLO has no STARTTLS; go-smtp falls back to HELO.
		var perr *textproto.Error
		if !errors.As(err, &perr) {
			return nil, false, withCommand("EHLO", err)
		}
	}
	if !offered {
		if s.cfg.TLS == TLSRequire {
			return nil, false, fmt.Errorf("smtp: STARTTLS: %w (%w)", ErrTLSUnavailable, ErrTemporary)
		}
		if tp.R.Buffered() > 0 {
			return nil, false, fmt.Errorf("smtp: EHLO: server sent data out of turn (%w)", ErrTemporary)
		}
		return &greetedConn{Conn: conn, greeting: greeting}, false, nil
	}
	if _, _, err := cmd(tp, 220, "STARTTLS"); err != nil {
		return nil, false, withCommand("STARTTLS", err)
	}
	// Anything the server sent after its 220 was sent before TLS and must
	// not be read as if it came over TLS (the STARTTLS injection attack).
	if tp.R.Buffered() > 0 {
		return nil, false, fmt.Errorf("smtp: STARTTLS: server sent data before the handshake (%w)", ErrTemporary)
	}
	tc := tls.Client(conn, s.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, false, fmt.Errorf("smtp: STARTTLS: handshake: %w (%w)", err, ErrTemporary)
	}
	return &greetedConn{Conn: tc, greeting: greeting}, true, nil
}

func (s *Sender) tlsConfig() *tls.Config {
	var cfg *tls.Config
	if s.cfg.TLSConfig != nil {
		cfg = s.cfg.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(s.cfg.Addr)
	}
	return cfg
}

func cmd(tp *textproto.Conn, expect int, format string, args ...any) (int, string, error) {
	id, err := tp.Cmd(format, args...)
	if err != nil {
		return 0, "", err
	}
	tp.StartResponse(id)
	defer tp.EndResponse(id)
	return tp.ReadResponse(expect)
}

// greeting is what greetedConn replays to go-smtp's Client.
var greeting = []byte("220 blindpost session already greeted\r\n")

// greetedConn replays a 220 greeting before the connection's own data.
type greetedConn struct {
	net.Conn
	greeting []byte
}

func (c *greetedConn) Read(p []byte) (int, error) {
	if len(c.greeting) > 0 {
		n := copy(p, c.greeting)
		c.greeting = c.greeting[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// commandError ties an error to the SMTP command that got it.
type commandError struct {
	command string
	err     error
}

func (e *commandError) Error() string { return e.command + ": " + e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

func withCommand(command string, err error) error {
	if err == nil {
		return nil
	}
	return &commandError{command, err}
}

// classify turns an error from the session into a *ReplyError or a
// transport error, with the recipient's address removed.
func (s *Sender) classify(ctx context.Context, err error, rcpt string) error {
	command := "session"
	var ce *commandError
	if errors.As(err, &ce) {
		command = ce.command
	} else {
		return err // already ours
	}
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		re := &ReplyError{Command: command, Code: se.Code, Message: redact(se.Message, rcpt)}
		if se.EnhancedCode != gosmtp.NoEnhancedCode {
			re.Enhanced = [3]int(se.EnhancedCode)
		}
		return re
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return &ReplyError{Command: command, Code: te.Code, Message: redact(te.Msg, rcpt)}
	}
	return s.transportError(ctx, command, ce.err, rcpt)
}

// transportError reports a network failure. Its text is cleaned of the
// recipient's address, in case a malformed reply quoted in it held one.
func (s *Sender) transportError(ctx context.Context, command string, err error, rcpt string) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = ctxErr
	}
	return &transportError{command: command, msg: redact(err.Error(), rcpt), err: err}
}

type transportError struct {
	command, msg string
	err          error
}

func (e *transportError) Error() string {
	return "smtp: " + e.command + ": " + e.msg + " (" + ErrTemporary.Error() + ")"
}
func (e *transportError) Unwrap() []error { return []error{ErrTemporary, e.err} }

// redact replaces every occurrence of addr in s, ignoring ASCII case (addr
// is an ASCII mailbox; see isMailbox).
func redact(s, addr string) string {
	if addr == "" {
		return s
	}
	ls, la := asciiLower(s), asciiLower(addr)
	var b strings.Builder
	for {
		i := strings.Index(ls, la)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString("<recipient>")
		s, ls = s[i+len(la):], ls[i+len(la):]
	}
}

// asciiLower lower-cases ASCII letters only, so byte offsets do not move.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
