package smpp

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/sms"
)

// These tests script the SMSC side by hand, frame by frame, for the
// session behaviours smsc.js cannot provoke: odd requests, an SMSC that
// unbinds, one that goes silent.

type peer struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (p *peer) read() pdu {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	f, err := readPDU(p.br)
	if err != nil {
		p.t.Fatalf("fake SMSC read: %v", err)
	}
	return f
}

func (p *peer) write(id, status, seq uint32, body []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(appendPDU(nil, id, status, seq, body)); err != nil {
		p.t.Fatalf("fake SMSC write: %v", err)
	}
}

// readUntil skips the client's enquire_links and returns the first other frame.
func (p *peer) readUntil(id uint32) pdu {
	p.t.Helper()
	for {
		f := p.read()
		if f.id == id {
			return f
		}
		if f.id == cmdEnquireLink {
			p.write(cmdEnquireLinkResp, 0, f.seq, nil)
			continue
		}
		p.t.Fatalf("fake SMSC: got command 0x%08x, waiting for 0x%08x", f.id, id)
	}
}

// fakeSMSC accepts connections and hands each, after answering its bind
// (when bind is set), to the test.
func fakeSMSC(t *testing.T, bind bool) (addr string, conns <-chan *peer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *peer, 4)
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			p := &peer{t: t, conn: c, br: bufio.NewReader(c)}
			if bind {
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				f, err := readPDU(p.br)
				if err != nil || f.id != cmdBindTransceiver {
					c.Close()
					continue
				}
				c.Write(appendPDU(nil, cmdBindTransceiverResp, 0, f.seq, []byte("fake\x00")))
			}
			ch <- p
		}
	}()
	return ln.Addr().String(), ch
}

func nextPeer(t *testing.T, conns <-chan *peer) *peer {
	t.Helper()
	select {
	case p := <-conns:
		return p
	case <-time.After(3 * time.Second):
		t.Fatal("the client did not connect")
		return nil
	}
}

func testClient(t *testing.T, addr string, mutate func(*Config), sink sms.ReceiptSink) *Client {
	t.Helper()
	cfg := Config{
		Addr: addr, SystemID: "blindpost", Password: "secret",
		Timeout: time.Second, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if sink == nil {
		sink = func(context.Context, sms.Receipt) error { return nil }
	}
	c, err := New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestBindTimesOutOnSilentSMSC(t *testing.T) {
	addr, conns := fakeSMSC(t, false)
	c := testClient(t, addr, func(c *Config) { c.Timeout = 200 * time.Millisecond }, nil)
	nextPeer(t, conns) // connected, never answers the bind
	_, err := c.Send(context.Background(), sms.Message{To: "+15550100001", Body: "hi"})
	if adapters.Code(err) != "smpp_not_bound" || !errors.Is(err, ErrNotBound) || !errors.Is(err, adapters.ErrTemporary) {
		t.Fatalf("Send: %v", err)
	}
	// The client gives up on the silent bind and tries again.
	nextPeer(t, conns)
}

func TestUnknownRequestGetsGenericNack(t *testing.T) {
	addr, conns := fakeSMSC(t, true)
	testClient(t, addr, nil, nil)
	p := nextPeer(t, conns)
	const dataSM = 0x00000103
	p.write(dataSM, 0, 77, []byte{0})
	f := p.readUntil(cmdGenericNack)
	if f.seq != 77 || f.status != statusInvCmdID {
		t.Fatalf("generic_nack seq %d status 0x%x, want 77 and ESME_RINVCMDID", f.seq, f.status)
	}
	p.conn.Close() // so Close need not wait for an unbind_resp
}

func TestUndecodableDeliverSMIsRejectedForGood(t *testing.T) {
	addr, conns := fakeSMSC(t, true)
	called := make(chan struct{}, 1)
	testClient(t, addr, nil, func(context.Context, sms.Receipt) error { called <- struct{}{}; return nil })
	p := nextPeer(t, conns)
	p.write(cmdDeliverSM, 0, 9, []byte("\x00\x01\x01no terminator"))
	f := p.readUntil(cmdDeliverSMResp)
	if f.seq != 9 || f.status != statusXRAppn {
		t.Fatalf("deliver_sm_resp seq %d status 0x%x, want 9 and ESME_RX_R_APPN", f.seq, f.status)
	}
	select {
	case <-called:
		t.Fatal("sink called for an undecodable deliver_sm")
	default:
	}
	p.conn.Close()
}

func TestSMSCUnbindIsAnsweredAndClientRebinds(t *testing.T) {
	addr, conns := fakeSMSC(t, true)
	c := testClient(t, addr, nil, nil)
	p := nextPeer(t, conns)
	p.write(cmdUnbind, 0, 5, nil)
	if f := p.readUntil(cmdUnbindResp); f.seq != 5 || f.status != 0 {
		t.Fatalf("unbind_resp seq %d status 0x%x", f.seq, f.status)
	}
	p2 := nextPeer(t, conns)
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(context.Background(), sms.Message{To: "+15550100001", Body: "hi"})
		done <- err
	}()
	f := p2.readUntil(cmdSubmitSM)
	p2.write(cmdSubmitSMResp, 0, f.seq, []byte("abc\x00"))
	if err := <-done; err != nil {
		t.Fatalf("Send on the new session: %v", err)
	}
	p2.conn.Close()
}

func TestUnansweredEnquireLinkEndsSession(t *testing.T) {
	addr, conns := fakeSMSC(t, true)
	testClient(t, addr, func(c *Config) {
		c.EnquireLink = 20 * time.Millisecond
		c.Timeout = 100 * time.Millisecond
	}, nil)
	p := nextPeer(t, conns)
	if f := p.read(); f.id != cmdEnquireLink {
		t.Fatalf("got command 0x%08x, want enquire_link", f.id)
	}
	// Not answered: the client must give the session up and bind anew.
	nextPeer(t, conns)
}

func TestLateResponseAfterTimeoutIsDropped(t *testing.T) {
	addr, conns := fakeSMSC(t, true)
	c := testClient(t, addr, func(c *Config) { c.Timeout = 150 * time.Millisecond }, nil)
	p := nextPeer(t, conns)
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(context.Background(), sms.Message{To: "+15550100001", Body: "hi"})
		done <- err
	}()
	first := p.readUntil(cmdSubmitSM)
	if err := <-done; adapters.Code(err) != "smpp_timeout" || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Send: %v", err)
	}
	p.write(cmdSubmitSMResp, 0, first.seq, []byte("late\x00")) // nobody waits for it
	go func() {
		res, err := c.Send(context.Background(), sms.Message{To: "+15550100001", Body: "again"})
		if err == nil && res.ProviderID != "fresh" {
			err = errors.New("got id " + res.ProviderID)
		}
		done <- err
	}()
	second := p.readUntil(cmdSubmitSM)
	if second.seq == first.seq {
		t.Fatal("sequence number reused")
	}
	p.write(cmdSubmitSMResp, 0, second.seq, []byte("fresh\x00"))
	if err := <-done; err != nil {
		t.Fatalf("second Send: %v", err)
	}
}

func TestCloseDuringBindReturnsPromptly(t *testing.T) {
	addr, conns := fakeSMSC(t, false)
	c := testClient(t, addr, func(c *Config) { c.Timeout = 5 * time.Second }, nil)
	nextPeer(t, conns)
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v while a bind was pending", d)
	}
	_, err := c.Send(context.Background(), sms.Message{To: "+15550100001", Body: "hi"})
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Send after Close: %v", err)
	}
}

// answeringSMSC is a minimal SMSC in Go that accepts any bind and answers
// every submit_sm at once, flushing only when it has read all it was sent
// (as a pipelining SMSC would). It lets the benchmarks below measure the
// client without Node's share.
func answeringSMSC(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				for n := 0; ; n++ {
					p, err := readPDU(br)
					if err != nil {
						return
					}
					switch p.id {
					case cmdBindTransceiver:
						bw.Write(appendPDU(nil, cmdBindTransceiverResp, 0, p.seq, []byte("go\x00")))
					case cmdSubmitSM:
						bw.Write(appendPDU(nil, cmdSubmitSMResp, 0, p.seq, []byte("5a"+strconv.Itoa(n)+"\x00")))
					case cmdEnquireLink, cmdUnbind:
						bw.Write(appendPDU(nil, p.id|respBit, 0, p.seq, nil))
					}
					if br.Buffered() == 0 {
						if bw.Flush() != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func benchmarkSendGo(b *testing.B, parallel bool) {
	c, err := New(Config{Addr: answeringSMSC(b), SystemID: "blindpost"},
		func(context.Context, sms.Receipt) error { return nil })
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := sms.Message{To: "+15550100001", Body: "Your code is 123456"}
	ctx := context.Background()
	b.ReportAllocs()
	if !parallel {
		for b.Loop() {
			if _, err := c.Send(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Send(ctx, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSendGoSMSC is Send against answeringSMSC, one at a time.
func BenchmarkSendGoSMSC(b *testing.B) { benchmarkSendGo(b, false) }

// BenchmarkSendGoSMSCParallel keeps the window busy.
func BenchmarkSendGoSMSCParallel(b *testing.B) { benchmarkSendGo(b, true) }
