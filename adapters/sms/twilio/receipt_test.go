package twilio_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/sms"
	"github.com/blindpost/blindpost/adapters/sms/twilio"
)

var receiptNow = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

// receiptServer serves c's ReceiptHandler on loopback at /hook.
func receiptServer(t *testing.T, cfg twilio.Config, s *sinkRecorder) *httptest.Server {
	t.Helper()
	cfg.Now = func() time.Time { return receiptNow }
	c := mustNew(t, cfg)
	mux := http.NewServeMux()
	mux.Handle("/hook", c.ReceiptHandler(s.sink))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// postCallback posts form to the loopback server at /hook?query, signed
// with sig; it returns the status and the answer's body.
func postCallback(t *testing.T, srv *httptest.Server, query string, form url.Values, sig string) (int, string) {
	t.Helper()
	u := srv.URL + "/hook"
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if sig != "" {
		req.Header.Set("X-Twilio-Signature", sig)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// statusCallback is the form Twilio posts for an outbound SMS status
// change (Messaging webhooks: outbound message status callback).
func statusCallback(status, errorCode string) url.Values {
	f := url.Values{
		"AccountSid":    {testSID},
		"ApiVersion":    {"2010-04-01"},
		"From":          {testFrom},
		"To":            {testTo},
		"MessageSid":    {"SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
		"SmsSid":        {"SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
		"MessageStatus": {status},
		"SmsStatus":     {status},
	}
	if errorCode != "" {
		f.Set("ErrorCode", errorCode)
	}
	return f
}

func TestReceiptStatuses(t *testing.T) {
	tests := []struct {
		word, errorCode string
		wantStatus      string
		wantCode        string
	}{
		{word: "queued", wantStatus: sms.StatusAccepted},
		{word: "sending", wantStatus: sms.StatusAccepted},
		{word: "sent", wantStatus: sms.StatusAccepted},
		{word: "accepted", wantStatus: sms.StatusAccepted},
		{word: "scheduled", wantStatus: sms.StatusAccepted},
		{word: "delivered", wantStatus: sms.StatusDelivered},
		{word: "read", wantStatus: sms.StatusDelivered},
		{word: "undelivered", errorCode: "30003", wantStatus: sms.StatusUndelivered, wantCode: "twilio_30003"},
		{word: "failed", errorCode: "30007", wantStatus: sms.StatusUndelivered, wantCode: "twilio_30007"},
		{word: "failed", errorCode: "not a code +15550100001", wantStatus: sms.StatusUndelivered},
		{word: "canceled", wantStatus: sms.StatusUndelivered},
	}
	for _, tt := range tests {
		t.Run(tt.word+"_"+tt.errorCode, func(t *testing.T) {
			var s sinkRecorder
			srv := receiptServer(t, baseConfig("https://api.twilio.com"), &s)
			form := statusCallback(tt.word, tt.errorCode)
			status, _ := postCallback(t, srv, "ref=msg-0001", form, sign(testToken, publicCallback+"?ref=msg-0001", form))
			if status != http.StatusNoContent {
				t.Fatalf("status = %d, want 204", status)
			}
			want := []sms.Receipt{{
				Adapter: "twilio", ProviderID: "SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Ref: "msg-0001",
				Status: tt.wantStatus, Code: tt.wantCode, Time: receiptNow,
			}}
			if got := s.receipts(); !reflect.DeepEqual(got, want) {
				t.Errorf("receipts =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestReceiptCallbackURLIsRebuiltExactly(t *testing.T) {
	tests := []struct{ name, callback, query string }{
		{"port and an operator's query", "https://gateway.example:8443/receipts/twilio?tenant=a%20b", "tenant=a%20b&ref=a%26b"},
		{"unusual escaping in the path", "https://gateway.example/r/tw%69lio/é", "ref=a%26b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sinkRecorder
			cfg := baseConfig("https://api.twilio.com")
			cfg.StatusCallbackURL = tt.callback
			srv := receiptServer(t, cfg, &s)
			base, _, _ := strings.Cut(tt.callback, "?")
			form := statusCallback("delivered", "")
			status, _ := postCallback(t, srv, tt.query, form, sign(testToken, base+"?"+tt.query, form))
			if status != http.StatusNoContent {
				t.Fatalf("status = %d, want 204", status)
			}
			if got := s.receipts(); len(got) != 1 || got[0].Ref != "a&b" {
				t.Errorf("receipts = %+v, want one with ref a&b", got)
			}
		})
	}
}

func TestReceiptRejectsBadSignature(t *testing.T) {
	form := statusCallback("delivered", "")
	good := publicCallback + "?ref=msg-0001"
	tampered := statusCallback("delivered", "")
	tampered.Set("MessageStatus", "undelivered")
	extra := statusCallback("delivered", "")
	extra.Set("ErrorCode", "30003")
	tests := []struct {
		name string
		sig  func(srvURL string) string
		form url.Values
	}{
		{"missing signature", func(string) string { return "" }, form},
		{"wrong auth token", func(string) string { return sign("another-token", good, form) }, form},
		{"signed over the loopback Host", func(u string) string { return sign(testToken, u+"/hook?ref=msg-0001", form) }, form},
		{"signed without the query", func(string) string { return sign(testToken, publicCallback, form) }, form},
		{"signed for another ref", func(string) string { return sign(testToken, publicCallback+"?ref=msg-0002", form) }, form},
		{"tampered parameter", func(string) string { return sign(testToken, good, form) }, tampered},
		{"added parameter", func(string) string { return sign(testToken, good, form) }, extra},
		{"not base64", func(string) string { return "!!!not-base64!!!" }, form},
		{"truncated", func(string) string { return sign(testToken, good, form)[:20] }, form},
		{"hex instead of base64", func(string) string { return "da39a3ee5e6b4b0d3255bfef95601890afd80709" }, form},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sinkRecorder
			srv := receiptServer(t, baseConfig("https://api.twilio.com"), &s)
			status, body := postCallback(t, srv, "ref=msg-0001", tt.form, tt.sig(srv.URL))
			if status != http.StatusForbidden {
				t.Errorf("status = %d, want 403", status)
			}
			if got := s.receipts(); len(got) != 0 {
				t.Errorf("sink got %+v for a bad signature", got)
			}
			if strings.Contains(body, testTo) || strings.Contains(body, "SMbbbb") {
				t.Errorf("answer echoes the request: %q", body)
			}
		})
	}
}

func TestReceiptRepeatedParameters(t *testing.T) {
	var s sinkRecorder
	srv := receiptServer(t, baseConfig("https://api.twilio.com"), &s)
	form := statusCallback("delivered", "")
	form["Extra"] = []string{"zeta", "alpha"}
	status, _ := postCallback(t, srv, "ref=r", form, sign(testToken, publicCallback+"?ref=r", form))
	if status != http.StatusNoContent {
		t.Errorf("status = %d, want 204", status)
	}
}

func TestReceiptAckAfterSink(t *testing.T) {
	var s sinkRecorder
	s.fail = errors.New("store down")
	srv := receiptServer(t, baseConfig("https://api.twilio.com"), &s)
	form := statusCallback("delivered", "")
	status, body := postCallback(t, srv, "ref=r", form, sign(testToken, publicCallback+"?ref=r", form))
	if status != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500 so Twilio retries", status)
	}
	if len(s.receipts()) != 1 {
		t.Errorf("sink called %d times, want 1", len(s.receipts()))
	}
	if strings.Contains(body, "store down") {
		t.Errorf("answer leaks the sink's error: %q", body)
	}
}

func TestReceiptRequestLimits(t *testing.T) {
	t.Run("oversized body", func(t *testing.T) {
		var s sinkRecorder
		srv := receiptServer(t, baseConfig("https://api.twilio.com"), &s)
		form := statusCallback("delivered", "")
		form.Set("Padding", strings.Repeat("x", 64<<10))
		status, _ := postCallback(t, srv, "ref=r", form, sign(testToken, publicCallback+"?ref=r", form))
		if status != http.StatusRequestEntityTooLarge {
			t.Errorf("status = %d, want 413", status)
		}
		if len(s.receipts()) != 0 {
			t.Error("sink called for an oversized body")
		}
	})
	t.Run("GET", func(t *testing.T) {
		var s sinkRecorder
		srv := receiptServer(t, baseConfig("https://api.twilio.com"), &s)
		resp, err := srv.Client().Get(srv.URL + "/hook?ref=r")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("status = %d, want 405", resp.StatusCode)
		}
	})
	t.Run("missing MessageStatus", func(t *testing.T) {
		var s sinkRecorder
		srv := receiptServer(t, baseConfig("https://api.twilio.com"), &s)
		form := statusCallback("delivered", "")
		form.Del("MessageStatus")
		form.Del("SmsStatus")
		status, _ := postCallback(t, srv, "ref=r", form, sign(testToken, publicCallback+"?ref=r", form))
		if status != http.StatusBadRequest || len(s.receipts()) != 0 {
			t.Errorf("status = %d, sink calls = %d; want 400, 0", status, len(s.receipts()))
		}
	})
	t.Run("untracked status is acknowledged and dropped", func(t *testing.T) {
		var s sinkRecorder
		srv := receiptServer(t, baseConfig("https://api.twilio.com"), &s)
		form := statusCallback("received", "")
		status, _ := postCallback(t, srv, "ref=r", form, sign(testToken, publicCallback+"?ref=r", form))
		if status != http.StatusNoContent || len(s.receipts()) != 0 {
			t.Errorf("status = %d, sink calls = %d; want 204, 0", status, len(s.receipts()))
		}
	})
	t.Run("receipts not configured", func(t *testing.T) {
		var s sinkRecorder
		cfg := baseConfig("https://api.twilio.com")
		cfg.StatusCallbackURL = ""
		srv := receiptServer(t, cfg, &s)
		form := statusCallback("delivered", "")
		status, _ := postCallback(t, srv, "", form, sign(testToken, srv.URL+"/hook", form))
		if status != http.StatusNotFound || len(s.receipts()) != 0 {
			t.Errorf("status = %d, sink calls = %d; want 404, 0", status, len(s.receipts()))
		}
	})
}

// TestSendThenCallback runs the round trip: Send hands Twilio a
// StatusCallback; the fake Twilio later posts a signed status change to
// exactly that URL (routed to loopback), and the receipt carries the ref.
func TestSendThenCallback(t *testing.T) {
	var s sinkRecorder
	cfg := baseConfig("")
	cfg.Now = func() time.Time { return receiptNow }
	var c *twilio.Client
	mux := http.NewServeMux()
	gateway := httptest.NewServer(mux)
	defer gateway.Close()

	tw := startTwilio(t, nil)
	cfg.BaseURL = tw.URL
	c = mustNew(t, cfg)
	mux.Handle("/receipts/twilio", c.ReceiptHandler(s.sink))

	res, err := c.Send(context.Background(), sms.Message{To: testTo, Body: "hi", Ref: "01J9Z6 ref/+="})
	if err != nil {
		t.Fatal(err)
	}
	cb := tw.requests()[0].Form.Get("StatusCallback")
	u, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	form := statusCallback("delivered", "")
	form.Set("MessageSid", res.ProviderID)
	req, _ := http.NewRequest(http.MethodPost, gateway.URL+u.RequestURI(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", sign(testToken, cb, form))
	resp, err := gateway.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status = %d, want 204", resp.StatusCode)
	}
	want := []sms.Receipt{{Adapter: "twilio", ProviderID: res.ProviderID, Ref: "01J9Z6 ref/+=", Status: sms.StatusDelivered, Time: receiptNow}}
	if got := s.receipts(); !reflect.DeepEqual(got, want) {
		t.Errorf("receipts = %+v, want %+v", got, want)
	}
}
