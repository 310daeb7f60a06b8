package smtp_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/adapters/smtp/capture"
)

// newSender returns a Sender in plain text with short time-outs, closed
// when the test ends.
func newSender(t testing.TB, cfg smtp.Config) *smtp.Sender {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.TLS == "" {
		cfg.TLS = smtp.TLSNone
	}
	s := smtp.NewSender(cfg)
	t.Cleanup(func() { s.Close() })
	return s
}

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// messageTo is testMessage to rcpt with the i-th Message-ID.
func messageTo(rcpt string, i int) smtp.Message {
	m := testMessage()
	m.To = rcpt
	m.MessageID = fmt.Sprintf("<pool-%d@gw.brand.example>", i)
	return m
}

// sendAll sends n messages from n goroutines at once and fails on any error.
func sendAll(t *testing.T, s *smtp.Sender, n int) {
	t.Helper()
	ctx := testContext(t)
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
	)
	for i := range n {
		wg.Go(func() {
			if _, err := s.Send(ctx, messageTo("ada@example.com", i)); err != nil {
				failed.Add(1)
				t.Errorf("message %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
}

func mustSend(t *testing.T, s *smtp.Sender, m smtp.Message) smtp.Result {
	t.Helper()
	res, err := s.Send(testContext(t), m)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// waitFor polls cond for up to 2s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPoolOfTwoUsesAtMostTwoConnections(t *testing.T) {
	srv := startCapture(t, capture.Options{})
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 2, MaxIdle: 2}})
	const n = 40
	sendAll(t, s, n)
	if srv.Count() != n {
		t.Errorf("Count = %d, want %d", srv.Count(), n)
	}
	if c := srv.Connections(); c < 1 || c > 2 {
		t.Errorf("server saw %d connections, want 1 or 2", c)
	}
	if p := srv.PeakTransactions(); p > 2 {
		t.Errorf("%d transactions open at once, want at most 2", p)
	}
	st := s.Stats()
	if st.Dials > 2 || st.Reuses < n-2 || st.Open > 2 || st.Idle != st.Open || st.Waiting != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestPoolDefaultIsOneConnectionPerMessage(t *testing.T) {
	srv := startCapture(t, capture.Options{})
	s := newSender(t, smtp.Config{Addr: srv.Addr()})
	for i := range 3 {
		mustSend(t, s, messageTo("ada@example.com", i))
	}
	if c, q := srv.Connections(), srv.Commands("QUIT"); c != 3 || q != 3 {
		t.Errorf("%d connections and %d QUITs, want 3 of each", c, q)
	}
	if st := s.Stats(); st.Open != 0 || st.Reuses != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestPoolConcurrencyNeverExceedsMaxConns holds each transaction open a
// little so that senders pile up, and counts open transactions at the
// server: they can only overlap on distinct connections in use.
func TestPoolConcurrencyNeverExceedsMaxConns(t *testing.T) {
	for _, pc := range []smtp.PoolConfig{
		{MaxConns: 1, MaxIdle: 1},
		{MaxConns: 3, MaxIdle: 3},
		{MaxConns: 3, MaxIdle: 1}, // extra connections are closed, and the cap still holds
		{MaxConns: 2},             // no reuse, still capped
	} {
		t.Run(fmt.Sprintf("max=%d,idle=%d", pc.MaxConns, pc.MaxIdle), func(t *testing.T) {
			srv := startCapture(t, capture.Options{CheckRecipient: func(string) error {
				time.Sleep(2 * time.Millisecond)
				return nil
			}})
			s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: pc})
			sendAll(t, s, 24)
			if p := srv.PeakTransactions(); p != pc.MaxConns {
				t.Errorf("peak of %d transactions at once, want exactly MaxConns = %d", p, pc.MaxConns)
			}
			if st := s.Stats(); st.Open > pc.MaxIdle || st.Waiting != 0 {
				t.Errorf("Stats after the burst = %+v", st)
			}
			if pc.MaxIdle == pc.MaxConns && srv.Connections() > pc.MaxConns {
				t.Errorf("%d connections, want at most %d", srv.Connections(), pc.MaxConns)
			}
		})
	}
}

func TestPoolMaxMessagesPerConn(t *testing.T) {
	srv := startCapture(t, capture.Options{})
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1, MaxMessagesPerConn: 3}})
	for i := range 7 {
		mustSend(t, s, messageTo("ada@example.com", i))
	}
	// 3 + 3 + 1: two connections used up and QUIT, the third idle.
	if c, q := srv.Connections(), srv.Commands("QUIT"); c != 3 || q != 2 {
		t.Errorf("%d connections and %d QUITs, want 3 and 2", c, q)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if q := srv.Commands("QUIT"); q != 3 {
		t.Errorf("%d QUITs after Close, want 3", q)
	}
}

// TestPoolRedialsAfterServerDropsMidSession: the relay vanishes during
// RCPT; that message fails as temporary, and the next one goes over a new
// connection.
func TestPoolRedialsAfterServerDropsMidSession(t *testing.T) {
	srv := startCapture(t, capture.Options{CheckRecipient: func(addr string) error {
		if addr == "drop@example.com" {
			return capture.ErrDrop
		}
		return nil
	}})
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1}})
	mustSend(t, s, messageTo("ada@example.com", 1))
	_, err := s.Send(testContext(t), messageTo("Ada Lovelace <drop@example.com>", 2))
	if !errors.Is(err, smtp.ErrTemporary) || !errors.Is(err, adapters.ErrTemporary) || adapters.Code(err) != "smtp_network" {
		t.Fatalf("err = %v (code %q), want a temporary network failure", err, adapters.Code(err))
	}
	assertNoPII(t, err.Error())
	mustSend(t, s, messageTo("ada@example.com", 3))
	if c := srv.Connections(); c != 2 {
		t.Errorf("%d connections, want 2: the dropped one must not be reused", c)
	}
	if st := s.Stats(); st.Discards != 1 {
		t.Errorf("Stats = %+v, want one discarded connection", st)
	}
	if srv.Count() != 2 {
		t.Errorf("Count = %d, want 2", srv.Count())
	}
}

// TestPoolReplacesConnectionDroppedWhileIdle: a relay that closed an idle
// connection costs the next message nothing but a new connection, whether
// the NOOP check or the first command finds it dead.
func TestPoolReplacesConnectionDroppedWhileIdle(t *testing.T) {
	for name, check := range map[string]time.Duration{
		"found by NOOP":          time.Nanosecond,
		"found by first command": time.Hour,
	} {
		t.Run(name, func(t *testing.T) {
			srv := startCapture(t, capture.Options{})
			s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1, HealthCheckAfter: check}})
			mustSend(t, s, messageTo("ada@example.com", 1))
			srv.DropConnections()
			mustSend(t, s, messageTo("ada@example.com", 2))
			if c, n := srv.Connections(), srv.Count(); c != 2 || n != 2 {
				t.Errorf("%d connections, %d messages; want 2 and 2", c, n)
			}
			if st := s.Stats(); st.Discards != 1 || st.Open != 1 {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

// TestPoolSurvivesRelayRestart: every idle connection died at once; the
// next message goes through every stale one and then a new connection.
func TestPoolSurvivesRelayRestart(t *testing.T) {
	srv := barrierServer(t, 3)
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 3, MaxIdle: 3, HealthCheckAfter: time.Hour}})
	sendAll(t, s, 3)
	srv.DropConnections()
	mustSend(t, s, messageTo("ada@example.com", 4))
	if c, n := srv.Connections(), srv.Count(); c != 4 || n != 4 {
		t.Errorf("%d connections, %d messages; want 4 and 4", c, n)
	}
	if st := s.Stats(); st.Discards != 3 || st.Open != 1 {
		t.Errorf("Stats = %+v, want 3 discarded and 1 open", st)
	}
}

func TestPoolHealthCheckOnlyAfterIdling(t *testing.T) {
	srv := startCapture(t, capture.Options{})
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1, HealthCheckAfter: 50 * time.Millisecond}})
	mustSend(t, s, messageTo("ada@example.com", 1))
	mustSend(t, s, messageTo("ada@example.com", 2))
	if n := srv.Commands("NOOP"); n != 0 {
		t.Errorf("%d NOOPs for a connection idle a moment, want 0", n)
	}
	time.Sleep(100 * time.Millisecond)
	mustSend(t, s, messageTo("ada@example.com", 3))
	if n := srv.Commands("NOOP"); n != 1 {
		t.Errorf("%d NOOPs after idling, want 1", n)
	}
	if c := srv.Connections(); c != 1 {
		t.Errorf("%d connections, want 1", c)
	}
}

// TestPoolReplyClassification: 4xx is temporary and 5xx permanent, with
// the reply code kept and no address, display name or reply text in the
// error. A 421 closes the connection; any other refused transaction leaves
// it usable after RSET.
func TestPoolReplyClassification(t *testing.T) {
	for _, tc := range []struct {
		reply   gosmtp.SMTPError
		kind    error
		discard bool
	}{
		{gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 2}}, smtp.ErrTemporary, true},
		{gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 2, 1}}, smtp.ErrTemporary, false},
		{gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}}, smtp.ErrTemporary, false},
		{gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 2, 2}}, smtp.ErrTemporary, false},
		{gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}}, smtp.ErrPermanent, false},
		{gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 1, 3}}, smtp.ErrPermanent, false},
		{gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}}, smtp.ErrPermanent, false},
	} {
		t.Run(fmt.Sprint(tc.reply.Code), func(t *testing.T) {
			srv := startCapture(t, capture.Options{CheckRecipient: func(addr string) error {
				if addr != "bounce@example.com" {
					return nil
				}
				e := tc.reply
				e.Message = "<" + strings.ToUpper(addr) + "> (Ada Lovelace): mailbox unavailable"
				return &e
			}})
			s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1}})
			mustSend(t, s, messageTo("ada@example.com", 1))

			_, err := s.Send(testContext(t), messageTo("Ada Lovelace <bounce@example.com>", 2))
			var re *smtp.ReplyError
			if !errors.Is(err, tc.kind) || !errors.As(err, &re) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
			if re.Code != tc.reply.Code || re.Enhanced != [3]int(tc.reply.EnhancedCode) || re.Command != "RCPT" {
				t.Errorf("ReplyError = %+v", re)
			}
			if got, want := adapters.Code(err), fmt.Sprintf("smtp_%d", tc.reply.Code); got != want {
				t.Errorf("adapters.Code = %q, want %q", got, want)
			}
			if errors.Is(err, adapters.ErrTemporary) != (tc.kind == smtp.ErrTemporary) {
				t.Errorf("adapters kind disagrees: %v", err)
			}
			assertNoPII(t, err.Error())
			if strings.Contains(strings.ToLower(re.Message), "bounce@example.com") || !strings.Contains(re.Message, "<recipient>") {
				t.Errorf("Message = %q, want the address redacted", re.Message)
			}

			mustSend(t, s, messageTo("ada@example.com", 3))
			wantConns, wantRSET := 1, 1
			if tc.discard {
				wantConns, wantRSET = 2, 0
			}
			if c, r := srv.Connections(), srv.Commands("RSET"); c != wantConns || r != wantRSET {
				t.Errorf("%d connections and %d RSETs, want %d and %d", c, r, wantConns, wantRSET)
			}
			if srv.Count() != 2 {
				t.Errorf("Count = %d, want 2", srv.Count())
			}
		})
	}
}

// assertNoPII fails if s holds anything from the test messages that could
// identify the recipient or their message.
func assertNoPII(t *testing.T, s string) {
	t.Helper()
	for _, v := range []string{"example.com", "lovelace", "Lovelace", "weekly summary", "Hello Ada", "brand.example/u/"} {
		if strings.Contains(strings.ToLower(s), strings.ToLower(v)) {
			t.Errorf("error text %q holds %q", s, v)
		}
	}
}

func TestPoolIdleTimeoutQuits(t *testing.T) {
	srv := startCapture(t, capture.Options{})
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1, IdleTimeout: 50 * time.Millisecond}})
	mustSend(t, s, messageTo("ada@example.com", 1))
	waitFor(t, "the idle connection's QUIT", func() bool { return srv.Commands("QUIT") == 1 })
	waitFor(t, "the pool to forget it", func() bool { st := s.Stats(); return st.Open == 0 && st.Idle == 0 })
	mustSend(t, s, messageTo("ada@example.com", 2))
	if c := srv.Connections(); c != 2 {
		t.Errorf("%d connections, want 2", c)
	}
}

// holdingServer is a capture server whose RCPT for slow@example.com waits
// until the test releases it; entered receives when one has started.
func holdingServer(t *testing.T) (srv *capture.Server, entered <-chan struct{}, release func()) {
	t.Helper()
	in := make(chan struct{}, 10)
	gate := make(chan struct{})
	var once sync.Once
	srv = startCapture(t, capture.Options{CheckRecipient: func(addr string) error {
		if addr == "slow@example.com" {
			in <- struct{}{}
			<-gate
		}
		return nil
	}})
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // before the server's Close, which waits for sessions
	return srv, in, release
}

func TestPoolWaitHonoursContext(t *testing.T) {
	srv, entered, release := holdingServer(t)
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1}})
	slow := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), messageTo("slow@example.com", 1))
		slow <- err
	}()
	<-entered // the only connection is busy

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Send(ctx, messageTo("ada@example.com", 2))
	if !errors.Is(err, smtp.ErrTemporary) || !errors.Is(err, context.DeadlineExceeded) || adapters.Code(err) != "smtp_timeout" {
		t.Errorf("err = %v (code %q), want a temporary time-out", err, adapters.Code(err))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("waited %v past the deadline", d)
	}
	if st := s.Stats(); st.Waiting != 0 || st.Open != 1 {
		t.Errorf("Stats = %+v, want the waiter gone and one connection", st)
	}
	release()
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	mustSend(t, s, messageTo("ada@example.com", 3))
	if c := srv.Connections(); c != 1 {
		t.Errorf("%d connections, want 1", c)
	}
}

// TestPoolHandsReleasedConnectionToWaiter: a Send waiting for the only
// slot gets the connection the busy one releases, without a new dial.
func TestPoolHandsReleasedConnectionToWaiter(t *testing.T) {
	srv, entered, release := holdingServer(t)
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1}})
	errs := make(chan error, 2)
	go func() {
		_, err := s.Send(testContext(t), messageTo("slow@example.com", 1))
		errs <- err
	}()
	<-entered
	go func() {
		_, err := s.Send(testContext(t), messageTo("ada@example.com", 2))
		errs <- err
	}()
	waitFor(t, "the second Send to wait", func() bool { return s.Stats().Waiting == 1 })
	release()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if c, n := srv.Connections(), srv.Count(); c != 1 || n != 2 {
		t.Errorf("%d connections and %d messages, want 1 and 2", c, n)
	}
}

// TestPoolCancelledSendDiscardsItsConnection: a context that ends
// mid-session leaves the connection in an unknown state, so it is closed.
func TestPoolCancelledSendDiscardsItsConnection(t *testing.T) {
	srv, entered, release := holdingServer(t)
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered
		cancel()
	}()
	_, err := s.Send(ctx, messageTo("slow@example.com", 1))
	if !errors.Is(err, smtp.ErrTemporary) || !errors.Is(err, context.Canceled) || adapters.Code(err) != "smtp_cancelled" {
		t.Fatalf("err = %v (code %q), want a temporary cancellation", err, adapters.Code(err))
	}
	release()
	mustSend(t, s, messageTo("ada@example.com", 2))
	if c := srv.Connections(); c != 2 {
		t.Errorf("%d connections, want 2", c)
	}
}

// barrierServer holds the first n transactions at RCPT until all n are
// open, so that a pool must open n connections; later ones pass at once.
func barrierServer(t *testing.T, n int) *capture.Server {
	t.Helper()
	var (
		mu      sync.Mutex
		arrived int
		all     = make(chan struct{})
	)
	return startCapture(t, capture.Options{CheckRecipient: func(string) error {
		mu.Lock()
		arrived++
		if arrived == n {
			close(all)
		}
		mu.Unlock()
		<-all
		return nil
	}})
}

func TestSenderCloseQuitsIdleConnections(t *testing.T) {
	srv := barrierServer(t, 3)
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Pool: smtp.PoolConfig{MaxConns: 3, MaxIdle: 3}})
	sendAll(t, s, 3)
	if st := s.Stats(); st.Idle != 3 || st.Open != 3 {
		t.Fatalf("Stats = %+v, want 3 idle connections", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if q := srv.Commands("QUIT"); q != 3 {
		t.Errorf("%d QUITs, want 3", q)
	}
	if st := s.Stats(); st.Open != 0 || st.Idle != 0 {
		t.Errorf("Stats after Close = %+v", st)
	}
	// A closed Sender still sends, without keeping connections.
	mustSend(t, s, messageTo("ada@example.com", 9))
	if c, q := srv.Connections(), srv.Commands("QUIT"); c != 4 || q != 4 {
		t.Errorf("%d connections and %d QUITs after a Send past Close, want 4 and 4", c, q)
	}
}

func TestPoolKeepsSTARTTLSAndAUTH(t *testing.T) {
	cert, pool := testCert(t)
	srv := startCapture(t, capture.Options{
		TLSConfig: tlsServerConfig(cert),
		Username:  "relay-user", Password: "s3cret-test-only",
	})
	s := newSender(t, smtp.Config{
		Addr: srv.Addr(), TLS: smtp.TLSRequire, RootCAs: pool,
		Username: "relay-user", Password: "s3cret-test-only",
		Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1},
	})
	for i := range 5 {
		if res := mustSend(t, s, messageTo("ada@example.com", i)); !res.TLS {
			t.Fatalf("message %d went without TLS", i)
		}
	}
	if c, n := srv.Connections(), srv.Count(); c != 1 || n != 5 {
		t.Errorf("%d connections and %d messages, want 1 and 5", c, n)
	}
}

// TestPoolRSETKeepsAUTH: after a refused recipient, RSET (and the EHLO
// go-smtp repeats after it) must not lose the authenticated session.
func TestPoolRSETKeepsAUTH(t *testing.T) {
	srv := startCapture(t, capture.Options{
		Username: "relay-user", Password: "s3cret-test-only",
		CheckRecipient: func(addr string) error {
			if addr == "bounce@example.com" {
				return errors.New("no such user")
			}
			return nil
		},
	})
	s := newSender(t, smtp.Config{Addr: srv.Addr(), Username: "relay-user", Password: "s3cret-test-only",
		Pool: smtp.PoolConfig{MaxConns: 1, MaxIdle: 1}})
	if _, err := s.Send(testContext(t), messageTo("bounce@example.com", 1)); !errors.Is(err, smtp.ErrPermanent) {
		t.Fatalf("err = %v, want permanent", err)
	}
	mustSend(t, s, messageTo("ada@example.com", 2))
	if a, r, c := srv.Commands("AUTH"), srv.Commands("RSET"), srv.Connections(); a != 1 || r != 1 || c != 1 {
		t.Errorf("%d AUTH, %d RSET, %d connections; want 1 of each", a, r, c)
	}
}

func TestPoolConfigValidate(t *testing.T) {
	for name, pc := range map[string]smtp.PoolConfig{
		"negative max conns":    {MaxConns: -1},
		"negative max idle":     {MaxIdle: -1},
		"negative max messages": {MaxMessagesPerConn: -1},
		"negative idle timeout": {IdleTimeout: -time.Second},
		"negative health check": {HealthCheckAfter: -time.Second},
	} {
		err := smtp.Config{Addr: "relay.example:25", Pool: pc}.Validate()
		if !errors.Is(err, smtp.ErrConfig) {
			t.Errorf("%s: Validate = %v, want ErrConfig", name, err)
		}
	}
	if err := (smtp.Config{Addr: "relay.example:25", Pool: smtp.PoolConfig{MaxConns: 4, MaxIdle: 8}}).Validate(); err != nil {
		t.Errorf("MaxIdle above MaxConns is lowered, not refused: %v", err)
	}
}
