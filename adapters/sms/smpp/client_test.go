package smpp_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/sms"
	"github.com/blindpost/blindpost/adapters/sms/smpp"
)

// Numbers with a meaning to smsc.js.
const (
	toOK          = "+15550100001"
	toThrottled   = "+15550100999"
	toInvalid     = "+15550100998"
	toSilent      = "+15550100997"
	toDropsLink   = "+15550100996"
	senderNumber  = "+15550100000"
	testSystemID  = "blindpost"
	testPassword  = "secret"
	testSysType   = "bp"
	waitForEvents = 5 * time.Second
)

// receipts records what the client hands its sink; fail makes the next
// calls fail.
type receipts struct {
	mu   sync.Mutex
	got  []sms.Receipt
	fail int
	ch   chan sms.Receipt
}

func newReceipts() *receipts { return &receipts{ch: make(chan sms.Receipt, 16)} }

func (r *receipts) sink(_ context.Context, rc sms.Receipt) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rc)
	r.ch <- rc
	if r.fail > 0 {
		r.fail--
		return errors.New("store unavailable")
	}
	return nil
}

func (r *receipts) next(t *testing.T) sms.Receipt {
	t.Helper()
	select {
	case rc := <-r.ch:
		return rc
	case <-time.After(waitForEvents):
		t.Fatal("no receipt reached the sink")
		return sms.Receipt{}
	}
}

func config(addr string) smpp.Config {
	return smpp.Config{
		Addr:         addr,
		SystemID:     testSystemID,
		Password:     testPassword,
		SystemType:   testSysType,
		Source:       senderNumber,
		Timeout:      2 * time.Second,
		ReconnectMin: 20 * time.Millisecond,
		ReconnectMax: 200 * time.Millisecond,
	}
}

func newClient(t testing.TB, cfg smpp.Config, sink sms.ReceiptSink) *smpp.Client {
	t.Helper()
	if sink == nil {
		sink = func(context.Context, sms.Receipt) error { return nil }
	}
	c, err := smpp.New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c *smpp.Client, to, body string) sms.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitForEvents)
	defer cancel()
	res, err := c.Send(ctx, sms.Message{To: to, Body: body})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	return res
}

func isSubmit(e event) bool { return e.Event == "submit_sm" }

func TestSendSingleGSMMessage(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	c := newClient(t, config(s.Addr), nil)
	body := "Your code is 1234. Reply STOP to opt out @ £5 {ok}"
	res := send(t, c, toOK, body)

	e := s.wait(waitForEvents, isSubmit)
	if res.Parts != 1 || res.ProviderID != e.MessageID || len(res.PartIDs) != 1 || res.PartIDs[0] != e.MessageID {
		t.Errorf("result %+v, SMSC message_id %q", res, e.MessageID)
	}
	if e.DataCoding != 0 || e.EsmClass != 0 || e.RegDelivery != 1 {
		t.Errorf("data_coding %d esm_class %d registered_delivery %d, want 0 0 1", e.DataCoding, e.EsmClass, e.RegDelivery)
	}
	if e.DestAddr != "15550100001" || e.DestAddrTON != 1 || e.DestAddrNPI != 1 {
		t.Errorf("destination %q ton %d npi %d", e.DestAddr, e.DestAddrTON, e.DestAddrNPI)
	}
	if e.SourceAddr != "15550100000" || e.SourceAddrTON != 1 || e.SourceAddrNPI != 1 {
		t.Errorf("source %q ton %d npi %d", e.SourceAddr, e.SourceAddrTON, e.SourceAddrNPI)
	}
	// Unpacked septets: one octet each; @ is 0x00, £ 0x01, { is escape 0x28.
	wantHex := hex.EncodeToString([]byte("Your code is 1234. Reply STOP to opt out ")) + "00" + "20" + "01" + "35" + "20" + "1b28" + "6f6b" + "1b29"
	if e.ShortMessage != wantHex {
		t.Errorf("short_message\n got %s\nwant %s", e.ShortMessage, wantHex)
	}
	if e.Text == nil || *e.Text != body {
		t.Errorf("the SMSC decoded %v, want %q", e.Text, body)
	}
	bind := s.wait(waitForEvents, func(e event) bool { return e.Event == "bind_transceiver" })
	if bind.SystemID != testSystemID || bind.SystemType != testSysType || bind.InterfaceVersn != 0x34 {
		t.Errorf("bind: %+v", bind)
	}
}

func TestSendAlphanumericSender(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	c := newClient(t, config(s.Addr), nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitForEvents)
	defer cancel()
	if _, err := c.Send(ctx, sms.Message{From: "Blindpost", To: toOK, Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	e := s.wait(waitForEvents, isSubmit)
	if e.SourceAddr != "Blindpost" || e.SourceAddrTON != 5 || e.SourceAddrNPI != 0 {
		t.Errorf("source %q ton %d npi %d, want Blindpost 5 0", e.SourceAddr, e.SourceAddrTON, e.SourceAddrNPI)
	}
}

func TestSendLongGSMMessageInThreeParts(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	c := newClient(t, config(s.Addr), nil)
	body := strings.Repeat("Long message with € signs [x]. ", 12) // 372 characters, 396 septets
	res := send(t, c, toOK, body)

	parts := s.waitN(waitForEvents, 3, isSubmit)
	if res.Parts != 3 || len(res.PartIDs) != 3 || res.ProviderID != res.PartIDs[0] {
		t.Fatalf("result %+v", res)
	}
	var text strings.Builder
	var ref string
	for i, e := range parts {
		if res.PartIDs[i] != e.MessageID {
			t.Errorf("part %d id %q, SMSC gave %q", i+1, res.PartIDs[i], e.MessageID)
		}
		if e.EsmClass != 0x40 || e.DataCoding != 0 || e.RegDelivery != 1 {
			t.Errorf("part %d esm_class 0x%02x data_coding %d registered_delivery %d", i+1, e.EsmClass, e.DataCoding, e.RegDelivery)
		}
		// The SMSC's own UDH parser returns each IE without the UDHL:
		// 00 03 ref total seq.
		if len(e.UDH) != 1 || len(e.UDH[0]) != 10 {
			t.Fatalf("part %d UDH %v, want one concatenation IE", i+1, e.UDH)
		}
		ie := e.UDH[0]
		if ie[:4] != "0003" || ie[6:8] != "03" || ie[8:10] != fmt.Sprintf("%02x", i+1) {
			t.Errorf("part %d IE %s, want 0003 ref 03 %02x", i+1, ie, i+1)
		}
		if i == 0 {
			ref = ie[4:6]
		} else if ie[4:6] != ref {
			t.Errorf("part %d reference %s, part 1 had %s", i+1, ie[4:6], ref)
		}
		if !strings.HasPrefix(e.ShortMessage, "050003"+ref) {
			t.Errorf("part %d short_message starts %s, want UDHL 05 and the IE", i+1, e.ShortMessage[:12])
		}
		if n := len(e.ShortMessage)/2 - 6; n > 153 {
			t.Errorf("part %d holds %d septets", i+1, n)
		}
		if e.Text == nil {
			t.Fatalf("part %d: SMSC decoded no text", i+1)
		}
		text.WriteString(*e.Text)
	}
	if text.String() != body {
		t.Errorf("parts joined by the SMSC differ from the body")
	}
}

func TestSendUCS2(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	c := newClient(t, config(s.Addr), nil)
	tests := []struct {
		name  string
		body  string
		parts int
	}{
		{"cyrillic and emoji", "Привет 😀", 1},
		// 66 units, then a surrogate pair that would straddle the 67-unit boundary.
		{"surrogate pair at the boundary", strings.Repeat("Ж", 66) + "😀" + strings.Repeat("Ж", 10), 2},
	}
	seen := 0 // submit_sm so far; the SMSC's log may lag behind Send's return
	for _, tc := range tests {
		res := send(t, c, toOK, tc.body)
		got := s.waitN(waitForEvents, seen+tc.parts, isSubmit)[seen:]
		seen += tc.parts
		if res.Parts != tc.parts || len(got) != tc.parts {
			t.Fatalf("%s: %d parts, SMSC saw %d, want %d", tc.name, res.Parts, len(got), tc.parts)
		}
		var text strings.Builder
		for _, e := range got {
			if e.DataCoding != 8 {
				t.Errorf("%s: data_coding %d, want 8", tc.name, e.DataCoding)
			}
			if e.Text == nil || strings.ContainsRune(*e.Text, '\uFFFD') {
				t.Fatalf("%s: part decoded to %v: a split surrogate pair", tc.name, e.Text)
			}
			text.WriteString(*e.Text)
		}
		if text.String() != tc.body {
			t.Errorf("%s: SMSC decoded %q", tc.name, text.String())
		}
	}
}

// sendErrorCases are the failures of Send, each triggered against the SMSC.
var sendErrorCases = []struct {
	name      string
	to, body  string
	cfg       func(*smpp.Config)
	temporary bool
	code      string
}{
	{name: "throttled", to: toThrottled, body: "Your code is 1234", temporary: true, code: "smpp_0x00000058"},
	{name: "invalid destination", to: toInvalid, body: "Your code is 1234", code: "smpp_0x0000000b"},
	{name: "no response", to: toSilent, body: "Your code is 1234", temporary: true, code: "smpp_timeout",
		cfg: func(c *smpp.Config) { c.Timeout = 600 * time.Millisecond }},
	{name: "connection drops", to: toDropsLink, body: "Your code is 1234", temporary: true, code: "smpp_connection_lost"},
	{name: "malformed number", to: "15550100001", body: "Your code is 1234", code: "smpp_invalid_destination"},
	{name: "empty body", to: toOK, body: "", code: "smpp_empty_body"},
	{name: "too many parts", to: toOK, body: strings.Repeat("Your code is 1234. ", 20), code: "smpp_too_long",
		cfg: func(c *smpp.Config) { c.MaxParts = 2 }},
	{name: "bind refused", to: toOK, body: "Your code is 1234", temporary: true, code: "smpp_not_bound",
		cfg: func(c *smpp.Config) { c.Password = "wrong"; c.Timeout = 300 * time.Millisecond }},
}

func TestSendErrorsAreClassified(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	for _, tc := range sendErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(s.Addr)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			c := newClient(t, cfg, nil)
			_, err := c.Send(context.Background(), sms.Message{To: tc.to, Body: tc.body})
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if got := adapters.Code(err); got != tc.code {
				t.Errorf("code %q, want %q (%v)", got, tc.code, err)
			}
			wantKind := adapters.ErrPermanent
			if tc.temporary {
				wantKind = adapters.ErrTemporary
			}
			if !errors.Is(err, wantKind) {
				t.Errorf("%v is not %v", err, wantKind)
			}
		})
	}
}

// TestErrorTextsHoldNoPII triggers every error path and checks that neither
// the number nor the body appears in the error or its code.
func TestErrorTextsHoldNoPII(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	for _, tc := range sendErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(s.Addr)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			c := newClient(t, cfg, nil)
			body := tc.body
			if body != "" {
				body = "Secret body 7391 " + body
			}
			_, err := c.Send(context.Background(), sms.Message{To: tc.to, Body: body})
			if err == nil {
				t.Fatal("Send succeeded")
			}
			text := err.Error() + " " + adapters.Code(err)
			for _, pii := range []string{tc.to, strings.TrimPrefix(tc.to, "+"), "Secret body", "7391", senderNumber[1:]} {
				if pii != "" && strings.Contains(text, pii) {
					t.Errorf("error %q contains %q", text, pii)
				}
			}
		})
	}
}

func TestReceiptReachesSink(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	rs := newReceipts()
	c := newClient(t, config(s.Addr), rs.sink)
	tests := []struct {
		name, stat, err string
		tlv             bool
		status, code    string
	}{
		{"delivered, text only", "DELIVRD", "000", false, sms.StatusDelivered, "smpp_stat_DELIVRD_err_000"},
		{"undeliverable, with TLVs", "UNDELIV", "001", true, sms.StatusUndelivered, "smpp_stat_UNDELIV_err_001"},
		{"expired", "EXPIRED", "027", false, sms.StatusUndelivered, "smpp_stat_EXPIRED_err_027"},
		{"en route", "ENROUTE", "000", true, sms.StatusAccepted, "smpp_stat_ENROUTE_err_000"},
	}
	for _, tc := range tests {
		res := send(t, c, toOK, "Your code is 1234")
		s.command(map[string]any{"cmd": "receipt", "id": res.ProviderID, "stat": tc.stat, "err": tc.err, "tlv": tc.tlv})
		r := rs.next(t)
		if r.ProviderID != res.ProviderID || r.Status != tc.status || r.Code != tc.code || r.Adapter != "smpp" {
			t.Errorf("%s: receipt %+v, want id %q status %q code %q", tc.name, r, res.ProviderID, tc.status, tc.code)
		}
		if want := time.Date(2024, 1, 1, 12, 1, 0, 0, time.UTC); !r.Time.Equal(want) {
			t.Errorf("%s: time %v, want the done date %v", tc.name, r.Time, want)
		}
		resp := s.wait(waitForEvents, func(e event) bool { return e.Event == "deliver_sm_resp" && e.ID == res.ProviderID })
		if resp.Status != 0 {
			t.Errorf("%s: deliver_sm_resp status 0x%x, want 0", tc.name, resp.Status)
		}
	}
}

func TestSinkFailureMakesSMSCRedeliver(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	rs := newReceipts()
	rs.fail = 1
	c := newClient(t, config(s.Addr), rs.sink)
	res := send(t, c, toOK, "Your code is 1234")
	s.command(map[string]any{"cmd": "receipt", "id": res.ProviderID, "stat": "DELIVRD", "retries": 3})

	resps := s.waitN(waitForEvents, 2, func(e event) bool { return e.Event == "deliver_sm_resp" })
	if resps[0].Status != 0x64 || resps[0].Attempt != 0 {
		t.Errorf("first deliver_sm_resp status 0x%x attempt %d, want ESME_RX_T_APPN (0x64) on attempt 0", resps[0].Status, resps[0].Attempt)
	}
	if resps[1].Status != 0 || resps[1].Attempt != 1 {
		t.Errorf("second deliver_sm_resp status 0x%x attempt %d, want 0 on attempt 1", resps[1].Status, resps[1].Attempt)
	}
	first, second := rs.next(t), rs.next(t)
	if first.ProviderID != res.ProviderID || second.ProviderID != res.ProviderID || second.Status != sms.StatusDelivered {
		t.Errorf("sink saw %+v then %+v", first, second)
	}
	time.Sleep(100 * time.Millisecond) // a third delivery would come 50 ms after the second
	if n := len(s.all(func(e event) bool { return e.Event == "deliver_sm_resp" })); n != 2 {
		t.Errorf("SMSC delivered the receipt %d times, want 2", n)
	}
}

func TestMobileOriginatedIsAckedAndDropped(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	rs := newReceipts()
	c := newClient(t, config(s.Addr), rs.sink)
	send(t, c, toOK, "hello") // bound
	s.command(map[string]any{"cmd": "mo", "text": "STOP"})
	resp := s.wait(waitForEvents, func(e event) bool { return e.Event == "deliver_sm_resp" && e.MO })
	if resp.Status != 0 {
		t.Errorf("deliver_sm_resp status 0x%x, want 0", resp.Status)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.got) != 0 {
		t.Errorf("sink got %+v for a mobile-originated message", rs.got)
	}
}

func TestReconnectsAfterConnectionDrop(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	c := newClient(t, config(s.Addr), nil)
	send(t, c, toOK, "before the drop")
	s.command(map[string]any{"cmd": "drop"})
	// The client binds again on its own, without a Send to prompt it. (A
	// Send racing the drop, before the client has read the EOF, fails as
	// temporary: whether the SMSC took it is unknown.)
	binds := s.waitN(waitForEvents, 2, func(e event) bool { return e.Event == "bind_transceiver" })
	if binds[0].Session == binds[1].Session {
		t.Fatalf("binds %+v, want two on different connections", binds)
	}

	res := send(t, c, toOK, "after the drop")
	if res.ProviderID == "" {
		t.Fatal("no message id after reconnect")
	}
	submits := s.waitN(waitForEvents, 2, isSubmit)
	if got := submits[1]; got.Session != binds[1].Session {
		t.Errorf("second message went over session %d, want %d", got.Session, binds[1].Session)
	}
}

func TestEnquireLink(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	cfg := config(s.Addr)
	cfg.EnquireLink = 50 * time.Millisecond
	c := newClient(t, cfg, nil)
	send(t, c, toOK, "hello")

	t.Run("client keeps the session alive", func(t *testing.T) {
		s.waitN(waitForEvents, 3, func(e event) bool { return e.Event == "enquire_link" })
	})
	t.Run("client answers the SMSC", func(t *testing.T) {
		s.command(map[string]any{"cmd": "enquire_link"})
		resp := s.wait(waitForEvents, func(e event) bool { return e.Event == "enquire_link_resp" })
		if resp.Status != 0 {
			t.Errorf("enquire_link_resp status 0x%x", resp.Status)
		}
	})
	if n := len(s.all(func(e event) bool { return e.Event == "bind_transceiver" })); n != 1 {
		t.Errorf("%d binds, want the one session kept alive", n)
	}
}

func TestCloseUnbinds(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	c := newClient(t, config(s.Addr), nil)
	send(t, c, toOK, "hello")
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s.wait(waitForEvents, func(e event) bool { return e.Event == "unbind" })
	_, err := c.Send(context.Background(), sms.Message{To: toOK, Body: "late"})
	if !errors.Is(err, smpp.ErrClosed) || !errors.Is(err, adapters.ErrTemporary) {
		t.Fatalf("Send after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestWindowLimitsOutstandingSubmits(t *testing.T) {
	t.Parallel()
	s := startSMSC(t)
	cfg := config(s.Addr)
	cfg.Window = 1
	cfg.Timeout = time.Second
	c := newClient(t, cfg, nil)
	send(t, c, toOK, "hello")

	silent := make(chan error, 1)
	go func() {
		_, err := c.Send(context.Background(), sms.Message{To: toSilent, Body: "never answered"})
		silent <- err
	}()
	s.wait(waitForEvents, func(e event) bool { return isSubmit(e) && e.DestAddr == "15550100997" })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Send(ctx, sms.Message{To: toOK, Body: "waits for the window"})
	if adapters.Code(err) != "smpp_window_full" || !errors.Is(err, adapters.ErrTemporary) {
		t.Fatalf("Send with a full window: %v", err)
	}
	if n := len(s.all(isSubmit)); n != 2 {
		t.Errorf("SMSC saw %d submit_sm, want 2: the window let a third through", n)
	}
	if err := <-silent; adapters.Code(err) != "smpp_timeout" {
		t.Fatalf("silent Send: %v", err)
	}
	send(t, c, toOK, "window free again")
}

func TestNewRejectsBadConfig(t *testing.T) {
	sink := func(context.Context, sms.Receipt) error { return nil }
	good := config("127.0.0.1:2775")
	tests := map[string]func(*smpp.Config){
		"no addr":           func(c *smpp.Config) { c.Addr = "" },
		"addr without port": func(c *smpp.Config) { c.Addr = "smsc.example.com" },
		"no system_id":      func(c *smpp.Config) { c.SystemID = "" },
		"long system_id":    func(c *smpp.Config) { c.SystemID = "0123456789abcdef" },
		"long password":     func(c *smpp.Config) { c.Password = "123456789" },
		"bad source":        func(c *smpp.Config) { c.Source = "far too long a sender" },
		"negative window":   func(c *smpp.Config) { c.Window = -1 },
		"max parts > 255":   func(c *smpp.Config) { c.MaxParts = 256 },
		"min above max":     func(c *smpp.Config) { c.ReconnectMin, c.ReconnectMax = time.Minute, time.Second },
	}
	for name, mutate := range tests {
		cfg := good
		mutate(&cfg)
		if _, err := smpp.New(cfg, sink); !errors.Is(err, smpp.ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
	if _, err := smpp.New(good, nil); !errors.Is(err, smpp.ErrConfig) {
		t.Errorf("nil sink: err = %v, want ErrConfig", err)
	}
}
