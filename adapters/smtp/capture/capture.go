// Package capture is a small SMTP server that writes every message it accepts
// to a directory, one .eml file per message. It is the receiving MTA of
// `blindpost dev` and of the tests. For tests of a client's connection reuse
// it counts connections, commands and concurrent transactions, and it can
// misbehave on request (ErrDrop, DropConnections).
//
// It stands where the operator's real mail relay would, on the operator's
// side of the trust boundary, and what it stores is what that relay would
// receive: rendered messages holding personal data. It is for development and
// tests only. Files are 0600 in a 0700 directory, and its logs name files and
// sizes, never an address.
package capture

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// Options configure a Server. The zero value accepts any message from
// anyone, in plain text.
type Options struct {
	// TLSConfig enables STARTTLS.
	TLSConfig *tls.Config
	// Username and Password, when set, make AUTH PLAIN required before
	// MAIL. AUTH is offered only after STARTTLS when TLSConfig is set.
	Username, Password string
	// OnMessage is called with the path of each stored message, before the
	// client is told the message was accepted.
	OnMessage func(path string)
	// CheckRecipient, when set, may refuse a recipient: a returned
	// *smtp.SMTPError (github.com/emersion/go-smtp) is the reply as is,
	// ErrDrop closes the connection without a reply, any other error
	// replies 550 5.1.1. Tests use it to make the server fail temporarily
	// or permanently, or vanish mid-session. It may block, to hold a
	// connection busy.
	CheckRecipient func(addr string) error
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// MaxMessageBytes is the largest message a Server accepts.
const MaxMessageBytes = 32 << 20

// ErrDrop, returned by Options.CheckRecipient, makes the server close the
// connection at once, as a relay that crashes or loses its network would.
var ErrDrop = errors.New("capture: drop the connection")

// Server is a running capture server.
type Server struct {
	dir   string
	opts  Options
	log   *slog.Logger
	ln    net.Listener
	srv   *gosmtp.Server
	count atomic.Int64
	done  chan struct{}

	mu   sync.Mutex     // serialises choosing a file name and renaming into it
	next map[string]int // id -> the copy number to try next, under mu

	// What clients did, for tests of connection reuse; under statsMu.
	statsMu  sync.Mutex
	conns    map[*trackedConn]struct{} // open connections
	accepted int                       // connections accepted, ever
	commands map[string]int            // plain-text command verb -> count
	txns     int                       // mail transactions open now
	peakTxns int                       // the most open at once
}

// Listen starts a server on addr ("127.0.0.1:0" picks a free port) that
// stores messages in dir, creating it if needed.
func Listen(addr, dir string, opts Options) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	s := &Server{dir: dir, opts: opts, log: opts.Logger, done: make(chan struct{}), next: make(map[string]int),
		conns: make(map[*trackedConn]struct{}), commands: make(map[string]int)}
	s.ln = &trackingListener{Listener: ln, srv: s}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(s.newSession))
	srv.Domain = "capture.localhost"
	srv.TLSConfig = opts.TLSConfig
	// Without TLS there is no other way to test AUTH; with TLS, AUTH waits
	// for STARTTLS as a real relay's would.
	srv.AllowInsecureAuth = opts.TLSConfig == nil
	srv.MaxMessageBytes = MaxMessageBytes
	srv.MaxRecipients = 100
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = errorLog{s.log}
	s.srv = srv
	go func() {
		defer close(s.done)
		if err := srv.Serve(s.ln); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) {
			s.log.Error("capture: serve", "err", err)
		}
	}()
	return s, nil
}

// Addr returns the address the server listens on, as host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Count returns how many messages the server has stored.
func (s *Server) Count() int { return int(s.count.Load()) }

// Dir returns the directory messages are stored in.
func (s *Server) Dir() string { return s.dir }

// Connections returns how many connections the server has accepted.
func (s *Server) Connections() int {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.accepted
}

// Commands returns how many times clients have sent the command verb
// ("NOOP", "RSET", "QUIT", …), counted as the server reads it, so before
// the client sees the reply. Only plain text can be read: a session's
// commands after STARTTLS are not counted.
func (s *Server) Commands(verb string) int {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.commands[strings.ToUpper(verb)]
}

// PeakTransactions returns the largest number of mail transactions (MAIL
// to the end of DATA, or to RSET) that were open at the same time. A
// client cannot have more open than it has connections in use, and unlike
// a count of open connections this does not lag behind a client that has
// just closed one.
func (s *Server) PeakTransactions() int {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.peakTxns
}

// DropConnections closes every open connection without a word, as a relay
// that restarts or times out idle sessions would.
func (s *Server) DropConnections() {
	s.statsMu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.statsMu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (s *Server) transaction(open bool) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if open {
		s.txns++
		s.peakTxns = max(s.peakTxns, s.txns)
	} else {
		s.txns--
	}
}

// Close stops the server and closes open sessions.
func (s *Server) Close() error {
	err := s.srv.Close()
	// go-smtp closes only the listeners Serve has registered; Close may
	// come before the Serve goroutine has run.
	s.ln.Close()
	<-s.done
	if errors.Is(err, gosmtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// store writes msg to DIR/<id>.eml, <id> being the first 16 hex digits of
// SHA-256 of the Message-ID (of the content if there is none). A second
// message with the same Message-ID — a duplicate delivery — goes to
// <id>.2.eml, and so on, so duplicates are counted, not overwritten. The file
// is written under a temporary name and renamed, so a reader never sees half
// a message. It is not fsynced: this is a test MTA, and the page cache
// survives the crash of a process.
func (s *Server) store(msg []byte) (string, error) {
	key := msg
	if m, err := mail.ReadMessage(bytes.NewReader(msg)); err == nil {
		if id := m.Header.Get("Message-Id"); id != "" {
			key = []byte(id)
		}
	}
	sum := sha256.Sum256(key)
	id := hex.EncodeToString(sum[:8])

	tmp, err := os.CreateTemp(s.dir, ".incoming-*")
	if err != nil {
		return "", err
	}
	renamed := false
	defer func() {
		if !renamed {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(msg); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for n := max(1, s.next[id]); ; n++ {
		name := id + ".eml"
		if n > 1 {
			name = fmt.Sprintf("%s.%d.eml", id, n)
		}
		path := filepath.Join(s.dir, name)
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			if err != nil {
				return "", err
			}
			continue
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return "", err
		}
		renamed = true
		s.next[id] = n + 1
		return path, nil
	}
}

func (s *Server) newSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	return &session{srv: s, conn: c}, nil
}

// session is one SMTP session.
type session struct {
	srv    *Server
	conn   *gosmtp.Conn
	authed bool
	// inTxn is set between MAIL and the end of DATA or RSET. It is atomic
	// because go-smtp may call Logout from Server.Close's goroutine.
	inTxn atomic.Bool
}

func (s *session) endTransaction() {
	if s.inTxn.CompareAndSwap(true, false) {
		s.srv.transaction(false)
	}
}

var errAuthRequired = &gosmtp.SMTPError{Code: 530, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}

func (s *session) AuthMechanisms() []string {
	if s.srv.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.srv.opts.Username == "" || mech != sasl.Plain {
		return nil, gosmtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return gosmtp.ErrAuthFailed
		}
		// Compare digests so the time taken says nothing about either secret.
		u, p := sha256.Sum256([]byte(username)), sha256.Sum256([]byte(password))
		wu, wp := sha256.Sum256([]byte(s.srv.opts.Username)), sha256.Sum256([]byte(s.srv.opts.Password))
		if subtle.ConstantTimeCompare(u[:], wu[:])&subtle.ConstantTimeCompare(p[:], wp[:]) != 1 {
			return gosmtp.ErrAuthFailed
		}
		s.authed = true
		return nil
	}), nil
}

func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if s.srv.opts.Username != "" && !s.authed {
		return errAuthRequired
	}
	if s.inTxn.CompareAndSwap(false, true) {
		s.srv.transaction(true)
	}
	return nil
}

func (s *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	if s.srv.opts.CheckRecipient == nil {
		return nil
	}
	err := s.srv.opts.CheckRecipient(to)
	if errors.Is(err, ErrDrop) {
		s.conn.Conn().Close()
		return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 4, 2}, Message: "Connection dropped"}
	}
	var se *gosmtp.SMTPError
	if err == nil || errors.As(err, &se) {
		return err
	}
	return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "Recipient refused"}
}

func (s *session) Data(r io.Reader) error {
	// Ended before the reply goes out, so while the client still waits.
	defer s.endTransaction()
	msg, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	path, err := s.srv.store(msg)
	if err != nil {
		s.srv.log.Error("capture: store message", "err", err)
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Cannot store message"}
	}
	s.srv.count.Add(1)
	s.srv.log.Info("capture: stored message", "file", filepath.Base(path), "bytes", len(msg))
	if s.srv.opts.OnMessage != nil {
		s.srv.opts.OnMessage(path)
	}
	return nil
}

func (s *session) Reset() { s.endTransaction() }

func (s *session) Logout() error {
	s.endTransaction()
	return nil
}

// trackingListener counts and tracks the connections it accepts.
type trackingListener struct {
	net.Listener
	srv *Server
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, srv: l.srv}
	l.srv.statsMu.Lock()
	l.srv.accepted++
	l.srv.conns[tc] = struct{}{}
	l.srv.statsMu.Unlock()
	return tc, nil
}

// maxScanLine bounds what trackedConn keeps of a line; commands are short.
const maxScanLine = 1024

// trackedConn counts the command verbs of a plain-text session. It reads
// the client's lines, skipping a message's content (from the server's 354
// to the lone "."), and stops once STARTTLS has been accepted.
type trackedConn struct {
	net.Conn
	srv       *Server
	closeOnce sync.Once

	mu        sync.Mutex // go-smtp reads and writes from one goroutine; this is cheap insurance
	line      []byte
	inData    bool
	startTLS  bool // STARTTLS sent, reply not yet seen
	encrypted bool
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.scan(p[:n])
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	switch {
	case c.encrypted:
	case c.startTLS:
		c.startTLS = false
		c.encrypted = bytes.HasPrefix(p, []byte("220"))
	case bytes.HasPrefix(p, []byte("354")):
		c.inData = true
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		c.srv.statsMu.Lock()
		delete(c.srv.conns, c)
		c.srv.statsMu.Unlock()
	})
	return c.Conn.Close()
}

func (c *trackedConn) scan(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(p) > 0 && !c.encrypted {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.keep(p)
			return
		}
		c.keep(p[:i])
		p = p[i+1:]
		line := bytes.TrimSuffix(c.line, []byte("\r"))
		c.line = c.line[:0]
		if c.inData {
			c.inData = string(line) != "."
			continue
		}
		verb, _, _ := strings.Cut(string(line), " ")
		if verb = strings.ToUpper(verb); verb == "" {
			continue
		}
		if verb == "STARTTLS" {
			c.startTLS = true
		}
		c.srv.statsMu.Lock()
		c.srv.commands[verb]++
		c.srv.statsMu.Unlock()
	}
}

// keep adds p to the current line, up to maxScanLine bytes.
func (c *trackedConn) keep(p []byte) {
	c.line = append(c.line, p[:min(len(p), maxScanLine-len(c.line))]...)
}

// errorLog adapts slog to go-smtp's logger. go-smtp logs only internal
// errors (accept failures, panics), never message content.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l errorLog) Println(v ...any)               { l.log.Error(fmt.Sprint(v...)) }
