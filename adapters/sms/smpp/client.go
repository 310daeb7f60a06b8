package smpp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/sms"
)

// Client submits SMS over one SMPP transceiver session, which it keeps
// bound. It is safe for concurrent use.
type Client struct {
	cfg  Config
	sink sms.ReceiptSink

	ref atomic.Uint32 // concatenation reference of the last long message

	ctx     context.Context // canceled by Close: no more binding
	cancel  context.CancelFunc
	closing chan struct{}  // closed by Close: Sends stop waiting
	runDone chan struct{}  // closed when the binding loop has returned
	wg      sync.WaitGroup // every session's goroutines
	sends   sync.WaitGroup // Sends in flight

	mu      sync.Mutex
	sess    *session      // the bound session, or nil
	ready   chan struct{} // closed once sess is set
	lastErr error         // why the last attempt to bind failed
	closed  bool
}

// New checks cfg and starts binding in the background; it does not wait
// for the bind. sink receives the delivery receipts; it must not be nil.
func New(cfg Config, sink sms.ReceiptSink) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, fmt.Errorf("smpp: receipt sink is required: %w", ErrConfig)
	}
	c := &Client{
		cfg:     cfg.withDefaults(),
		sink:    sink,
		closing: make(chan struct{}),
		runDone: make(chan struct{}),
		ready:   make(chan struct{}),
		lastErr: errors.New("smpp: not bound yet"),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.run()
	return c, nil
}

// run binds, waits for the session to end, and binds again, backing off
// exponentially with jitter while attempts fail, until Close.
func (c *Client) run() {
	defer close(c.runDone)
	backoff := c.cfg.ReconnectMin
	for {
		s, err := c.connect(c.ctx)
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			c.mu.Lock()
			c.lastErr = err
			c.mu.Unlock()
			if !c.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, c.cfg.ReconnectMax)
			continue
		}
		backoff = c.cfg.ReconnectMin

		c.mu.Lock()
		select {
		case <-s.done: // ended already, before it could be published
		default:
			c.sess = s
			close(c.ready)
		}
		c.mu.Unlock()

		select {
		case <-s.done:
		case <-c.ctx.Done():
			return // Close unbinds the session
		}

		c.mu.Lock()
		c.lastErr = s.err // the session has detached itself
		c.mu.Unlock()
		if !c.sleep(backoff) {
			return
		}
	}
}

// detach forgets s as the bound session, if it still is, so that Sends
// wait for the next one instead of trying one that has ended.
func (c *Client) detach(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == s {
		c.sess = nil
		c.ready = make(chan struct{})
	}
}

// sleep waits d, less up to half of it at random so that many gateways do
// not reconnect in step, and reports false if Close came first.
func (c *Client) sleep(d time.Duration) bool {
	if d > 1 {
		d -= rand.N(d / 2)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// Send submits m, one submit_sm per part, and waits for each
// submit_sm_resp. The parts go out one after the other, so a refused part
// stops the rest; the Result returned with the error then lists the parts
// the SMSC took (ProviderID and PartIDs), whose receipts may still come.
//
// Errors are *adapters.Error: throttling, a full queue, an SMSC system
// error, a time-out or a lost connection are temporary; a refused number
// or message is permanent. A time-out or a lost connection after the
// submit_sm went out leaves it unknown whether the SMSC took the message,
// so a retry may deliver it twice.
func (c *Client) Send(ctx context.Context, m sms.Message) (sms.Result, error) {
	dst, err := parseDestination(m.To)
	if err != nil {
		return sms.Result{}, adapters.Permanent("smpp_invalid_destination", err)
	}
	from := m.From
	if from == "" {
		from = c.cfg.Source
	}
	var src address
	if from != "" {
		if src, err = parseSource(from); err != nil {
			return sms.Result{}, adapters.Permanent("smpp_invalid_source", err)
		}
	}
	if m.Body == "" {
		return sms.Result{}, adapters.Permanent("smpp_empty_body", fmt.Errorf("%w: empty body", ErrMessage))
	}
	seg := segment(m.Body)
	if len(seg.parts) > c.cfg.MaxParts {
		return sms.Result{}, adapters.Permanent("smpp_too_long",
			fmt.Errorf("%w: body needs %d parts, at most %d allowed", ErrMessage, len(seg.parts), c.cfg.MaxParts))
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return sms.Result{}, adapters.Temporary("smpp_closed", ErrClosed)
	}
	c.sends.Add(1)
	c.mu.Unlock()
	defer c.sends.Done()

	sm := shortMessage{
		srcTON: src.ton, srcNPI: src.npi, src: src.addr,
		dstTON: dst.ton, dstNPI: dst.npi, dst: dst.addr,
		registeredDelivery: 0x01, // SMSC delivery receipt on success and failure
		dataCoding:         seg.dataCoding,
	}
	var ref byte
	if len(seg.parts) > 1 {
		sm.esmClass = esmUDHI
		ref = byte(c.ref.Add(1))
	}
	res := sms.Result{Parts: len(seg.parts), PartIDs: make([]string, 0, len(seg.parts))}
	body := make([]byte, 0, 256)
	for i, part := range seg.parts {
		sm.message = part
		if len(seg.parts) > 1 {
			sm.message = append(udh(ref, byte(len(seg.parts)), byte(i+1)), part...)
		}
		if body, err = sm.appendTo(body[:0]); err != nil {
			return res, adapters.Permanent("smpp_invalid_message", fmt.Errorf("%w: %w", ErrMessage, err))
		}
		id, err := c.submit(ctx, body)
		if err != nil {
			return res, err
		}
		res.PartIDs = append(res.PartIDs, id)
		res.ProviderID = res.PartIDs[0]
	}
	return res, nil
}

// submit sends one submit_sm body on the bound session and returns the
// message_id of its response.
func (c *Client) submit(ctx context.Context, body []byte) (string, error) {
	s, err := c.session(ctx)
	if err != nil {
		return "", err
	}
	if err := c.acquire(ctx, s); err != nil {
		return "", err
	}
	defer func() { <-s.window }()

	p, err := s.request(ctx, cmdSubmitSM, body)
	switch {
	case errors.Is(err, ErrConnectionLost):
		return "", adapters.Temporary("smpp_connection_lost", err)
	case err != nil:
		return "", adapters.Temporary("smpp_timeout", err)
	}
	if p.status != statusOK {
		return "", c.statusError(p.status)
	}
	if p.id != cmdSubmitSMResp {
		return "", adapters.Temporary("smpp_protocol",
			fmt.Errorf("smpp: submit_sm answered with command_id 0x%08x", p.id))
	}
	id, err := decodeMessageIDResp(p.body)
	if err == nil && id == "" {
		err = errors.New("smpp: empty message_id")
	}
	if err != nil {
		return "", adapters.Temporary("smpp_protocol", fmt.Errorf("smpp: submit_sm_resp: %w", err))
	}
	return id, nil
}

// session returns the bound session, waiting for one up to Timeout.
func (c *Client) session(ctx context.Context) (*session, error) {
	var timer <-chan time.Time
	for {
		c.mu.Lock()
		s, ready, closed, last := c.sess, c.ready, c.closed, c.lastErr
		c.mu.Unlock()
		if closed {
			return nil, adapters.Temporary("smpp_closed", ErrClosed)
		}
		if s != nil {
			return s, nil
		}
		if timer == nil {
			t := time.NewTimer(c.cfg.Timeout)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ready:
		case <-timer:
			return nil, adapters.Temporary("smpp_not_bound", fmt.Errorf("%w: %w", ErrNotBound, last))
		case <-ctx.Done():
			return nil, adapters.Temporary("smpp_not_bound", fmt.Errorf("%w: %w", ErrNotBound, ctx.Err()))
		case <-c.closing:
			return nil, adapters.Temporary("smpp_closed", ErrClosed)
		}
	}
}

// acquire takes a slot of s's window, waiting up to Timeout.
func (c *Client) acquire(ctx context.Context, s *session) error {
	select {
	case s.window <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(c.cfg.Timeout)
	defer t.Stop()
	select {
	case s.window <- struct{}{}:
		return nil
	case <-t.C:
		return adapters.Temporary("smpp_window_full", errors.New("smpp: window full"))
	case <-ctx.Done():
		return adapters.Temporary("smpp_window_full", fmt.Errorf("smpp: window full: %w", ctx.Err()))
	case <-s.done:
		return adapters.Temporary("smpp_connection_lost", fmt.Errorf("%w: %w", ErrConnectionLost, s.err))
	case <-c.closing:
		return adapters.Temporary("smpp_closed", ErrClosed)
	}
}

// statusError classifies a submit_sm_resp (or generic_nack) status.
func (c *Client) statusError(st uint32) error {
	code := fmt.Sprintf("smpp_0x%08x", st)
	cause := fmt.Errorf("smpp: submit_sm refused: command_status %s", statusText(st))
	if temporaryStatus(st) || slices.Contains(c.cfg.TemporaryStatuses, st) {
		return adapters.Temporary(code, cause)
	}
	return adapters.Permanent(code, cause)
}

// temporaryStatus reports the statuses a later attempt may not repeat:
// the SMSC's own load or trouble, or a session in the wrong state. Every
// other status says something about the message or its addresses, so a
// retry would repeat it.
func temporaryStatus(st uint32) bool {
	switch st {
	case statusThrottled, statusMsgQFul, statusSysErr, statusInvBndSts,
		statusSubmitFail, statusXTAppn, statusUnknownError:
		return true
	}
	return false
}

// Close stops accepting Sends, waits for those in flight, unbinds the
// session and waits for unbind_resp (up to Timeout). Receipts the sink is
// still handling are waited for; their acknowledgement may not reach the
// SMSC, which then delivers them again. Close is safe to call twice.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.closing)
	c.sends.Wait()
	c.cancel()
	<-c.runDone

	c.mu.Lock()
	s := c.sess
	c.sess = nil
	c.mu.Unlock()
	var err error
	if s != nil {
		err = s.unbind()
	}
	c.wg.Wait()
	return err
}
