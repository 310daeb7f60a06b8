package smpp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

var (
	errUnbound  = errors.New("smpp: SMSC unbound the session")
	errClientUp = errors.New("smpp: session closed by the client")
)

// maxReceiptsInFlight bounds the deliver_sm handled at once; past it the
// reader waits, and TCP pushes back on the SMSC.
const maxReceiptsInFlight = 16

// session is one bound connection. It ends, for good, when the connection
// fails, the SMSC unbinds, a keep-alive goes unanswered or the client
// closes it; the Client then binds a new one.
type session struct {
	c    *Client
	conn net.Conn
	br   *bufio.Reader // holds what the bind read past its response

	wmu sync.Mutex // one frame at a time on the wire
	seq atomic.Uint32

	window   chan struct{} // a slot per submit_sm awaiting its response
	receipts chan struct{} // a slot per deliver_sm being handled

	mu      sync.Mutex
	pending map[uint32]chan pdu // requests awaiting their response, by sequence number

	end  sync.Once
	done chan struct{} // closed when the session has ended
	err  error         // why it ended; set before done is closed
}

// connect dials the SMSC and binds as transceiver, within Timeout.
func (c *Client) connect(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	conn, err := c.cfg.Dial(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("smpp: dial: %w", err)
	}
	// A Close during the bind must not wait for the time-out.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	s, err := c.bind(ctx, conn)
	if !stop() && err == nil {
		err = fmt.Errorf("smpp: bind: %w", ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.wg.Add(2)
	go s.read()
	go s.keepAlive()
	return s, nil
}

func (c *Client) bind(ctx context.Context, conn net.Conn) (*session, error) {
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return nil, fmt.Errorf("smpp: bind: %w", err)
		}
	}
	if c.cfg.TLS != nil {
		tc := tls.Client(conn, c.cfg.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("smpp: tls: %w", err)
		}
		conn = tc
	}
	body, err := bindBody{
		systemID:   c.cfg.SystemID,
		password:   c.cfg.Password,
		systemType: c.cfg.SystemType,
	}.appendTo(nil)
	if err != nil {
		return nil, fmt.Errorf("smpp: bind_transceiver: %w", err)
	}
	const bindSeq = 1
	if _, err := conn.Write(appendPDU(nil, cmdBindTransceiver, 0, bindSeq, body)); err != nil {
		return nil, fmt.Errorf("smpp: bind: %w", err)
	}
	br := bufio.NewReader(conn)
	for {
		p, err := readPDU(br)
		if err != nil {
			return nil, fmt.Errorf("smpp: bind: %w", err)
		}
		if p.seq != bindSeq || (p.id != cmdBindTransceiverResp && p.id != cmdGenericNack) {
			continue // nothing else is expected before the bind; skip it
		}
		if p.status != statusOK {
			return nil, fmt.Errorf("smpp: bind_transceiver refused: command_status %s", statusText(p.status))
		}
		if p.id == cmdGenericNack {
			return nil, errors.New("smpp: bind_transceiver answered with generic_nack")
		}
		if _, err := decodeBindResp(p.body); err != nil {
			return nil, fmt.Errorf("smpp: bind_transceiver_resp: %w", err)
		}
		break
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("smpp: bind: %w", err)
	}
	s := &session{
		c:        c,
		conn:     conn,
		br:       br,
		window:   make(chan struct{}, c.cfg.Window),
		receipts: make(chan struct{}, maxReceiptsInFlight),
		pending:  make(map[uint32]chan pdu),
		done:     make(chan struct{}),
	}
	s.seq.Store(bindSeq)
	return s, nil
}

// fail ends the session with err, once.
func (s *session) fail(err error) {
	s.end.Do(func() {
		s.err = err
		s.c.detach(s) // before done: who sees done sees it detached
		close(s.done)
		s.conn.Close()
	})
}

// nextSeq returns the next sequence number, 1 to 0x7FFFFFFF (SMPP 3.4
// §5.1.4).
func (s *session) nextSeq() uint32 {
	for {
		if v := s.seq.Add(1) & 0x7FFFFFFF; v != 0 {
			return v
		}
	}
}

// write sends one frame; a failed write ends the session.
func (s *session) write(frame []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.c.cfg.Timeout)); err != nil {
		s.fail(err)
		return err
	}
	if _, err := s.conn.Write(frame); err != nil {
		s.fail(fmt.Errorf("smpp: write: %w", err))
		return err
	}
	return nil
}

// request sends a request and waits, up to Timeout, for the response with
// its sequence number. It returns ErrConnectionLost, ErrTimeout or the
// context's error.
func (s *session) request(ctx context.Context, id uint32, body []byte) (pdu, error) {
	seq := s.nextSeq()
	ch := make(chan pdu, 1)
	s.mu.Lock()
	s.pending[seq] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, seq)
		s.mu.Unlock()
	}()

	if err := ctx.Err(); err != nil {
		return pdu{}, fmt.Errorf("%w: %w", ErrTimeout, err) // nothing sent yet
	}
	frame := appendPDU(make([]byte, 0, headerLen+len(body)), id, 0, seq, body)
	if err := s.write(frame); err != nil {
		return pdu{}, fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	t := time.NewTimer(s.c.cfg.Timeout)
	defer t.Stop()
	select {
	case p := <-ch:
		return p, nil
	case <-s.done:
		// The reader hands a response over before it can end the session,
		// so one that came just before the end is not lost.
		select {
		case p := <-ch:
			return p, nil
		default:
		}
		return pdu{}, fmt.Errorf("%w: %w", ErrConnectionLost, s.err)
	case <-t.C:
		return pdu{}, ErrTimeout
	case <-ctx.Done():
		return pdu{}, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
}

// read takes every frame the SMSC sends until the connection ends.
func (s *session) read() {
	defer s.c.wg.Done()
	for {
		p, err := readPDU(s.br)
		if err != nil {
			s.fail(fmt.Errorf("smpp: read: %w", err))
			return
		}
		if p.id&respBit != 0 { // a response, or generic_nack
			s.mu.Lock()
			ch := s.pending[p.seq]
			delete(s.pending, p.seq)
			s.mu.Unlock()
			if ch != nil {
				ch <- p
			}
			continue
		}
		switch p.id {
		case cmdEnquireLink:
			s.write(appendPDU(nil, cmdEnquireLinkResp, statusOK, p.seq, nil))
		case cmdUnbind:
			s.write(appendPDU(nil, cmdUnbindResp, statusOK, p.seq, nil))
			s.fail(errUnbound)
			return
		case cmdDeliverSM:
			select {
			case s.receipts <- struct{}{}:
			case <-s.done:
				return
			}
			s.c.wg.Add(1)
			go s.deliver(p)
		case cmdAlertNotification:
			// Has no response; the client has no use for it.
		default:
			s.write(appendPDU(nil, cmdGenericNack, statusInvCmdID, p.seq, nil))
		}
	}
}

// deliver handles one deliver_sm and answers it. A receipt is answered
// with success only after the sink took it; a sink failure is answered
// with ESME_RX_T_APPN so the SMSC tries again, and a deliver_sm the client
// cannot read with ESME_RX_R_APPN so it does not.
func (s *session) deliver(p pdu) {
	defer s.c.wg.Done()
	defer func() { <-s.receipts }()
	status := s.c.handleDeliverSM(p.body)
	// message_id is unused in deliver_sm_resp and set to NULL (§4.6.2).
	s.write(appendPDU(nil, cmdDeliverSMResp, status, p.seq, []byte{0}))
}

// handleDeliverSM passes a receipt to the sink and returns the status to
// answer with.
func (c *Client) handleDeliverSM(body []byte) uint32 {
	m, err := decodeShortMessage(body)
	if err != nil {
		return statusXRAppn
	}
	switch m.esmClass & esmTypeMask {
	case esmDeliveryReceipt, esmIntermediateNote:
	default:
		return statusOK // mobile-originated: acknowledged and dropped
	}
	r, err := parseReceipt(&m, c.cfg.ReceiptLocation, c.cfg.Now())
	if err != nil {
		return statusXRAppn // no id to match it by: another try would not help
	}
	// The sink's context is not the client's: a receipt taken while Close
	// runs is still stored, even if its acknowledgement cannot go out.
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	if err := c.sink(ctx, r); err != nil {
		return statusXTAppn
	}
	return statusOK
}

// keepAlive sends enquire_link every EnquireLink and ends the session when
// one goes unanswered.
func (s *session) keepAlive() {
	defer s.c.wg.Done()
	t := time.NewTicker(s.c.cfg.EnquireLink)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.done:
			return
		}
		p, err := s.request(context.Background(), cmdEnquireLink, nil)
		if err == nil && p.status != statusOK {
			err = fmt.Errorf("command_status %s", statusText(p.status))
		}
		if err != nil {
			s.fail(fmt.Errorf("smpp: enquire_link: %w", err))
			return
		}
	}
}

// unbind ends the session politely: unbind, then wait for unbind_resp.
func (s *session) unbind() error {
	defer s.fail(errClientUp)
	select {
	case <-s.done:
		return nil // already gone; nothing to unbind
	default:
	}
	p, err := s.request(context.Background(), cmdUnbind, nil)
	if err == nil && p.status != statusOK {
		err = fmt.Errorf("command_status %s", statusText(p.status))
	}
	if err != nil {
		return fmt.Errorf("smpp: unbind: %w", err)
	}
	return nil
}
