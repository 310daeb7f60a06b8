package httpsms_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/sms"
	"github.com/blindpost/blindpost/adapters/sms/httpsms"
)

var receiptNow = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

func receiptServer(t *testing.T, rc httpsms.ReceiptConfig, s *sinkRecorder) *httptest.Server {
	t.Helper()
	cfg := jsonConfig(t, "https://sms.example")
	cfg.Receipts = rc
	cfg.Now = func() time.Time { return receiptNow }
	c := mustNew(t, cfg)
	srv := httptest.NewServer(c.ReceiptHandler(s.sink))
	t.Cleanup(srv.Close)
	return srv
}

func postReceipt(t *testing.T, srv *httptest.Server, body []byte, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/receipts/http", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// hmacHex and hmacBase64 sign the way a provider would, written out here
// apart from the package's code.
func hmacSum(key string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return m.Sum(nil)
}

func hmacHex(key string, body []byte) string { return hex.EncodeToString(hmacSum(key, body)) }
func hmacBase64(key string, body []byte) string {
	return base64.StdEncoding.EncodeToString(hmacSum(key, body))
}

func TestReceiptParsing(t *testing.T) {
	secret := http.Header{"X-Receipt-Secret": {"receipt-secret-0123456789"}}
	tests := []struct {
		name string
		body string
		want []sms.Receipt
	}{
		{
			name: "delivered fixture",
			body: string(mustRead(t, "receipt_delivered.json")),
			want: []sms.Receipt{{Adapter: "http", ProviderID: "0A0000000123ABCD1", Ref: "msg-0001", Status: sms.StatusDelivered, Code: "provider_0", Time: receiptNow}},
		},
		{
			name: "failed fixture, status in capitals, numeric code",
			body: string(mustRead(t, "receipt_failed.json")),
			want: []sms.Receipt{{Adapter: "http", ProviderID: "0A0000000123ABCD1", Ref: "msg-0001", Status: sms.StatusUndelivered, Code: "provider_6", Time: receiptNow}},
		},
		{
			name: "numeric id, no ref",
			body: `{"messageId": 42, "status": "accepted"}`,
			want: []sms.Receipt{{Adapter: "http", ProviderID: "42", Status: sms.StatusAccepted, Time: receiptNow}},
		},
		{
			name: "free-text code is dropped",
			body: `{"messageId": "m1", "status": "failed", "err-code": "number +15550100001 unreachable"}`,
			want: []sms.Receipt{{Adapter: "http", ProviderID: "m1", Status: sms.StatusUndelivered, Time: receiptNow}},
		},
		{
			name: "phone-number-like code is dropped",
			body: `{"messageId": "m1", "status": "failed", "err-code": "15550100001"}`,
			want: []sms.Receipt{{Adapter: "http", ProviderID: "m1", Status: sms.StatusUndelivered, Time: receiptNow}},
		},
		{
			name: "unmapped status is acknowledged and dropped",
			body: `{"messageId": "m1", "status": "buffered"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sinkRecorder
			srv := receiptServer(t, validReceipts(), &s)
			status, _ := postReceipt(t, srv, []byte(tt.body), secret)
			if status != http.StatusNoContent {
				t.Fatalf("status = %d, want 204", status)
			}
			if got := s.receipts(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("receipts =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestReceiptMalformed(t *testing.T) {
	secret := http.Header{"X-Receipt-Secret": {"receipt-secret-0123456789"}}
	for name, body := range map[string]string{
		"not JSON":            `status=delivered`,
		"two documents":       `{"messageId":"m1","status":"delivered"} {"x":1}`,
		"no status":           `{"messageId":"m1"}`,
		"status is an object": `{"messageId":"m1","status":{"a":1}}`,
		"no id and no ref":    `{"status":"delivered"}`,
		"array of receipts":   `[{"messageId":"m1","status":"delivered"}]`,
	} {
		t.Run(name, func(t *testing.T) {
			var s sinkRecorder
			srv := receiptServer(t, validReceipts(), &s)
			status, answer := postReceipt(t, srv, []byte(body), secret)
			if status != http.StatusBadRequest {
				t.Errorf("status = %d, want 400", status)
			}
			if len(s.receipts()) != 0 {
				t.Error("sink called for a malformed receipt")
			}
			if strings.Contains(answer, "m1") || strings.Contains(answer, "delivered") {
				t.Errorf("answer echoes the request: %q", answer)
			}
		})
	}
}

func TestReceiptSharedSecret(t *testing.T) {
	body := mustRead(t, "receipt_delivered.json")
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"right secret", http.Header{"X-Receipt-Secret": {"receipt-secret-0123456789"}}, http.StatusNoContent},
		{"header name is case-insensitive", http.Header{"x-receipt-secret": {"receipt-secret-0123456789"}}, http.StatusNoContent},
		{"missing", nil, http.StatusForbidden},
		{"empty", http.Header{"X-Receipt-Secret": {""}}, http.StatusForbidden},
		{"wrong", http.Header{"X-Receipt-Secret": {"receipt-secret-0123456788"}}, http.StatusForbidden},
		{"prefix of the secret", http.Header{"X-Receipt-Secret": {"receipt-secret"}}, http.StatusForbidden},
		{"secret with a suffix", http.Header{"X-Receipt-Secret": {"receipt-secret-0123456789x"}}, http.StatusForbidden},
		{"unresolved reference", http.Header{"X-Receipt-Secret": {"${SMS_RECEIPT_SECRET}"}}, http.StatusForbidden},
		{"twice", http.Header{"X-Receipt-Secret": {"receipt-secret-0123456789", "receipt-secret-0123456789"}}, http.StatusForbidden},
		{"in another header", http.Header{"Authorization": {"receipt-secret-0123456789"}}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sinkRecorder
			srv := receiptServer(t, validReceipts(), &s)
			status, _ := postReceipt(t, srv, body, tt.header)
			if status != tt.want {
				t.Errorf("status = %d, want %d", status, tt.want)
			}
			if wantCalls := map[bool]int{true: 1, false: 0}[tt.want == http.StatusNoContent]; len(s.receipts()) != wantCalls {
				t.Errorf("sink calls = %d, want %d", len(s.receipts()), wantCalls)
			}
		})
	}
}

func TestReceiptSignature(t *testing.T) {
	const key = "hmac-key-0123456789"
	body := mustRead(t, "receipt_delivered.json")
	hexCfg := validReceipts()
	hexCfg.SecretHeader, hexCfg.Secret = "", ""
	hexCfg.SignatureHeader, hexCfg.SignatureSecret, hexCfg.SignaturePrefix = "X-Signature", "${SMS_RECEIPT_KEY}", "sha256="
	b64Cfg := hexCfg
	b64Cfg.SignatureEncoding, b64Cfg.SignaturePrefix = "base64", ""

	altered := bytes.Replace(body, []byte(`"delivered"`), []byte(`"failed"`), 1)
	tests := []struct {
		name string
		cfg  httpsms.ReceiptConfig
		body []byte
		sig  string
		want int
	}{
		{"hex with prefix", hexCfg, body, "sha256=" + hmacHex(key, body), http.StatusNoContent},
		{"hex in capitals", hexCfg, body, "sha256=" + strings.ToUpper(hmacHex(key, body)), http.StatusNoContent},
		{"hex without the prefix", hexCfg, body, hmacHex(key, body), http.StatusForbidden},
		{"hex over another body", hexCfg, altered, "sha256=" + hmacHex(key, body), http.StatusForbidden},
		{"hex with another key", hexCfg, body, "sha256=" + hmacHex("other-key", body), http.StatusForbidden},
		{"hex truncated", hexCfg, body, "sha256=" + hmacHex(key, body)[:40], http.StatusForbidden},
		{"missing", hexCfg, body, "", http.StatusForbidden},
		{"base64", b64Cfg, body, hmacBase64(key, body), http.StatusNoContent},
		{"base64 given hex", b64Cfg, body, hmacHex(key, body), http.StatusForbidden},
		{"base64 over an empty body", b64Cfg, []byte{}, hmacBase64(key, nil), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sinkRecorder
			srv := receiptServer(t, tt.cfg, &s)
			h := http.Header{}
			if tt.sig != "" {
				h.Set("X-Signature", tt.sig)
			}
			status, _ := postReceipt(t, srv, tt.body, h)
			if status != tt.want {
				t.Errorf("status = %d, want %d", status, tt.want)
			}
			if status == http.StatusForbidden && len(s.receipts()) != 0 {
				t.Error("sink called for a bad signature")
			}
			if status == http.StatusNoContent && len(s.receipts()) != 1 {
				t.Errorf("sink calls = %d, want 1", len(s.receipts()))
			}
		})
	}
}

func TestReceiptAckAfterSink(t *testing.T) {
	var s sinkRecorder
	s.fail = errors.New("store down")
	srv := receiptServer(t, validReceipts(), &s)
	status, answer := postReceipt(t, srv, mustRead(t, "receipt_delivered.json"), http.Header{"X-Receipt-Secret": {"receipt-secret-0123456789"}})
	if status != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500 so the provider retries", status)
	}
	if len(s.receipts()) != 1 {
		t.Errorf("sink calls = %d, want 1", len(s.receipts()))
	}
	if strings.Contains(answer, "store down") {
		t.Errorf("answer leaks the sink's error: %q", answer)
	}
}

func TestReceiptRequestLimits(t *testing.T) {
	secret := http.Header{"X-Receipt-Secret": {"receipt-secret-0123456789"}}
	t.Run("oversized body", func(t *testing.T) {
		var s sinkRecorder
		srv := receiptServer(t, validReceipts(), &s)
		body := []byte(`{"messageId":"m1","status":"delivered","pad":"` + strings.Repeat("x", 70<<10) + `"}`)
		if status, _ := postReceipt(t, srv, body, secret); status != http.StatusRequestEntityTooLarge {
			t.Errorf("status = %d, want 413", status)
		}
		if len(s.receipts()) != 0 {
			t.Error("sink called")
		}
	})
	t.Run("GET", func(t *testing.T) {
		var s sinkRecorder
		srv := receiptServer(t, validReceipts(), &s)
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("status = %d, want 405", resp.StatusCode)
		}
	})
	t.Run("receipts not configured", func(t *testing.T) {
		var s sinkRecorder
		c := mustNew(t, jsonConfig(t, "https://sms.example"))
		srv := httptest.NewServer(c.ReceiptHandler(s.sink))
		defer srv.Close()
		if status, _ := postReceipt(t, srv, mustRead(t, "receipt_delivered.json"), secret); status != http.StatusNotFound {
			t.Errorf("status = %d, want 404", status)
		}
		if len(s.receipts()) != 0 {
			t.Error("sink called")
		}
	})
}
