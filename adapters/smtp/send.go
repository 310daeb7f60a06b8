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

	"github.com/blindpost/blindpost/adapters"
)

const (
	defaultTimeout = 30 * time.Second
	// quitTimeout bounds the wait for QUIT's reply: the message is
	// already accepted, and a relay slow to say goodbye is not worth it.
	quitTimeout = 5 * time.Second
)

// Result describes an accepted message.
type Result struct {
	MessageID string
	// Reply is the relay's final reply text, usually holding its queue id,
	// with the recipient's address removed.
	Reply string
	TLS   bool // the message went over TLS
}

// Sender sends messages through one relay. It is safe for concurrent use.
//
// It keeps up to Config.Pool.MaxIdle connections open between messages and
// never has more than Config.Pool.MaxConns open at once. A connection that
// saw a transport error, a 421 or a cancelled context is closed, never
// reused; one whose transaction failed with another reply gets RSET before
// its next message. A completed transaction needs no RSET (RFC 5321
// §4.1.1.4 clears the state), so healthy connections carry messages back to
// back. Call Close when done.
type Sender struct {
	cfg  Config
	pool *pool
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
	s := &Sender{cfg: cfg}
	s.pool = &pool{cfg: cfg.Pool.withDefaults(), dial: s.dial, noop: s.noop, quit: s.quit}
	return s
}

// Close QUITs the idle connections and stops keeping any. Sends running
// meanwhile or afterwards still work, each on a connection of its own.
func (s *Sender) Close() error {
	s.pool.close()
	return nil
}

// Stats reports the Sender's connections.
func (s *Sender) Stats() PoolStats { return s.pool.snapshot() }

// Send delivers m to its one recipient. A nil error means the relay accepted
// the message. Otherwise the error wraps ErrTemporary (worth a retry: 4xx,
// network, TLS, time-out, cancelled ctx, a DKIM signer that failed, a
// Config or DKIM setting the operator must fix) or ErrPermanent (5xx, a
// message that cannot be built); a reply from the server is a *ReplyError.
// The chain also holds an *adapters.Error whose Code is "smtp_<reply code>"
// or a word such as "smtp_network", "smtp_tls", "smtp_invalid_message".
// Nothing is sent unless the whole message builds and signs.
//
// A connection found dead at its first command after idling in the pool is
// replaced and the message sent over another: the relay cannot have
// received any of it.
func (s *Sender) Send(ctx context.Context, m Message) (Result, error) {
	res, err := s.send(ctx, m)
	if err != nil {
		return Result{}, adapterError(err)
	}
	return res, nil
}

func (s *Sender) send(ctx context.Context, m Message) (Result, error) {
	if err := s.cfg.Validate(); err != nil {
		return Result{}, fmt.Errorf("%w (%w)", err, ErrTemporary)
	}
	if m.Date.IsZero() {
		m.Date = s.cfg.Now()
	}
	data, env, err := build(m)
	switch {
	case err == nil:
	case errors.Is(err, ErrTemporary):
		return Result{}, err
	case errors.Is(err, ErrConfig):
		return Result{}, fmt.Errorf("%w (%w)", err, ErrTemporary)
	default:
		return Result{}, fmt.Errorf("%w (%w)", err, ErrPermanent)
	}
	// Stale connections are retried, as many as could be idle and then a
	// new one; a relay that closes every connection after each message
	// cannot keep a Send going round.
	for attempt := 0; ; attempt++ {
		c, err := s.pool.get(ctx)
		if err != nil {
			return Result{}, s.classify(ctx, err, env.to)
		}
		res, stale, err := s.deliver(ctx, c, env, data)
		s.pool.put(c)
		if err == nil {
			res.MessageID = m.MessageID
			return res, nil
		}
		if !stale || ctx.Err() != nil || attempt > s.pool.cfg.MaxIdle {
			return Result{}, s.classify(ctx, err, env.to)
		}
	}
}

// deliver sends one message over c. stale reports that c died while idle:
// it was reused and its first command found it closed (or got 421), so the
// relay has nothing of this message.
func (s *Sender) deliver(ctx context.Context, c *conn, env envelope, data []byte) (res Result, stale bool, err error) {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	defer func() {
		if !stop() {
			c.broken = true
		}
	}()
	reused := c.used > 0
	first := true
	fail := func(command string, err error) (Result, bool, error) {
		err = withCommand(command, err)
		if code, ok := replyCode(err); !ok || code == 421 {
			c.broken = true
		}
		return Result{}, reused && first && c.broken, err
	}
	if c.dirty {
		if err := c.client.Reset(); err != nil {
			c.broken = true
			return Result{}, reused, withCommand("RSET", err)
		}
		first = false
		c.dirty = false
		// go-smtp forgets the EHLO on RSET and would repeat it with MAIL.
		if err := c.client.Hello(s.cfg.HeloName); err != nil {
			return fail("EHLO", err)
		}
	}
	s.pool.begin(c)
	c.dirty = true
	if err := c.client.Mail(env.from, nil); err != nil {
		return fail("MAIL", err)
	}
	first = false
	if err := c.client.Rcpt(env.to, nil); err != nil {
		return fail("RCPT", err)
	}
	w, err := c.client.Data()
	if err != nil {
		return fail("DATA", err)
	}
	// go-smtp bounds waiting for replies, not writing the body.
	c.wire.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
	if _, err := w.Write(data); err != nil {
		return fail("DATA", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		if _, ok := replyCode(err); ok {
			c.dirty = false // the reply to the final dot ends the transaction
		}
		return fail("DATA", err)
	}
	c.dirty = false
	return Result{Reply: redact(resp.StatusText, env.to), TLS: c.tls}, false, nil
}

// dial opens a session: TCP, STARTTLS as configured, EHLO, AUTH.
func (s *Sender) dial(ctx context.Context) (*conn, error) {
	d := net.Dialer{Timeout: s.cfg.Timeout}
	raw, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return nil, withCommand("dial", err)
	}
	// go-smtp sets its own deadlines per command; cancelling ctx closes the
	// connection, which ends whatever command is in flight.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	c, err := s.open(ctx, raw)
	if !stop() && err == nil {
		err = withCommand("EHLO", ctx.Err())
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

func (s *Sender) open(ctx context.Context, raw net.Conn) (*conn, error) {
	wire, tlsOn := raw, false
	if s.cfg.TLS != TLSNone {
		var err error
		if wire, tlsOn, err = s.startTLS(ctx, raw); err != nil {
			return nil, err
		}
	}
	client := gosmtp.NewClient(wire)
	client.CommandTimeout = s.cfg.Timeout
	client.SubmissionTimeout = s.cfg.Timeout
	if err := client.Hello(s.cfg.HeloName); err != nil {
		return nil, withCommand("EHLO", err)
	}
	if s.cfg.Username != "" {
		if err := s.auth(client, tlsOn, raw.RemoteAddr()); err != nil {
			return nil, err
		}
	}
	return &conn{client: client, raw: raw, wire: wire, tls: tlsOn}, nil
}

// noop checks an idle connection before it carries a message.
func (s *Sender) noop(ctx context.Context, c *conn) error {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	err := c.client.Noop()
	if !stop() && err == nil {
		err = ctx.Err()
	}
	return err
}

// quit ends a healthy session politely; the relay may then free its
// resources at once instead of waiting for a time-out.
func (s *Sender) quit(c *conn) {
	c.client.CommandTimeout = min(s.cfg.Timeout, quitTimeout)
	if err := c.client.Quit(); err != nil {
		c.client.Close()
	}
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
		return nil, false, &handshakeError{err}
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
	if s.cfg.RootCAs != nil {
		cfg.RootCAs = s.cfg.RootCAs
	}
	return cfg
}

// handshakeError is a failed TLS handshake: an untrusted certificate, a
// name mismatch, no common protocol version. It never falls back to plain
// text.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string {
	return "smtp: STARTTLS: handshake: " + e.err.Error() + " (" + ErrTemporary.Error() + ")"
}
func (e *handshakeError) Unwrap() []error { return []error{ErrTemporary, e.err} }

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

// replyCode returns the reply code in err, if err is a reply.
func replyCode(err error) (int, bool) {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		return se.Code, true
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code, true
	}
	return 0, false
}

// adapterError puts err in the *adapters.Error every delivery adapter
// returns, so that the gateway reads any adapter's failures the same way.
func adapterError(err error) error {
	return &adapters.Error{Code: reasonCode(err), Temporary: !errors.Is(err, ErrPermanent), Err: err}
}

// reasonCode is a PII-free, stable reason for the status callback.
func reasonCode(err error) string {
	var (
		re *ReplyError
		he *handshakeError
		ne net.Error
	)
	switch {
	case errors.As(err, &re):
		return fmt.Sprintf("smtp_%d", re.Code)
	case errors.Is(err, ErrHeaderInjection):
		return "smtp_header_injection"
	case errors.Is(err, ErrDKIMAlignment):
		return "smtp_dkim_alignment"
	case errors.Is(err, ErrInvalidMessage):
		return "smtp_invalid_message"
	case errors.Is(err, ErrConfig):
		return "smtp_config"
	case errors.Is(err, errDKIMSign):
		return "smtp_dkim_sign"
	case errors.Is(err, ErrTLSUnavailable):
		return "smtp_starttls_unavailable"
	case errors.As(err, &he):
		return "smtp_tls"
	case errors.Is(err, ErrInsecureAuth):
		return "smtp_insecure_auth"
	case errors.Is(err, context.Canceled):
		return "smtp_cancelled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "smtp_timeout"
	default:
		return "smtp_network"
	}
}

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
