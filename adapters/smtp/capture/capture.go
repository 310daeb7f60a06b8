// Package capture is a small SMTP server that writes every message it accepts
// to a directory, one .eml file per message. It is the receiving MTA of
// `blindpost dev` and of the tests.
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
	// any other error replies 550 5.1.1. Tests use it to make the server
	// fail temporarily or permanently.
	CheckRecipient func(addr string) error
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// MaxMessageBytes is the largest message a Server accepts.
const MaxMessageBytes = 32 << 20

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
	s := &Server{dir: dir, opts: opts, log: opts.Logger, ln: ln, done: make(chan struct{}), next: make(map[string]int)}
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
		if err := srv.Serve(ln); err != nil && !errors.Is(err, gosmtp.ErrServerClosed) {
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
	return &session{srv: s}, nil
}

// session is one SMTP session.
type session struct {
	srv    *Server
	authed bool
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
	return nil
}

func (s *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	if s.srv.opts.CheckRecipient == nil {
		return nil
	}
	err := s.srv.opts.CheckRecipient(to)
	var se *gosmtp.SMTPError
	if err == nil || errors.As(err, &se) {
		return err
	}
	return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "Recipient refused"}
}

func (s *session) Data(r io.Reader) error {
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

func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }

// errorLog adapts slog to go-smtp's logger. go-smtp logs only internal
// errors (accept failures, panics), never message content.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l errorLog) Println(v ...any)               { l.log.Error(fmt.Sprint(v...)) }
