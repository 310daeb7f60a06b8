package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
)

type compatAnswer struct {
	ErrorCode    int    `json:"error_code"`
	ExtMessageID string `json:"ext_message_id"`
	ErrorMessage string `json:"error_message"`
}

// The reference vendor's API through the real gateway: the same policy,
// vault, queue and audit path as the native API; always HTTP 200; uid
// de-duplication; statuses posted to the request's allowed callback_url;
// to_email_address only to a domain the policy allows.
func TestCompatEmailEndToEnd(t *testing.T) {
	var mu sync.Mutex
	var cbs []map[string]any
	cbSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		cbs = append(cbs, m)
		mu.Unlock()
	}))
	defer cbSrv.Close()
	const secret = "compat-secret-0123456789abcdef"
	t.Setenv("BP_TEST_COMPAT_SECRET", secret)
	r := newRig(t, devenv.Options{
		GatewayOptions: gateway.Options{PolicyData: settings(map[string]any{"compat_override_domains": []any{"staff.test"}})},
		Gateway: func(c *gateway.Config) {
			c.Tenants[0].Compat = gateway.TenantCompat{Email: true, SecretsEnv: "BP_TEST_COMPAT_SECRET",
				AllowIPs: []string{"127.0.0.1/32"}, CallbackAllow: []string{cbSrv.URL + "/hooks"},
				Brand: devenv.Brand, Category: "transactional", Purpose: "password_reset"}
		}})
	r.put("u-1", alex())
	client, err := r.in.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	post := func(auth string, body map[string]any) compatAnswer {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", r.in.MessageURL+"/compat/email", bytes.NewReader(b))
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("HTTP %d: %s", resp.StatusCode, raw)
		}
		var a compatAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("answer %s: %v", raw, err)
		}
		return a
	}
	req := func(uid string) map[string]any {
		return map[string]any{"ext_user_id": "u-1", "from_email_address": "Example Casino <news@example.com>",
			"subject": "Your reset code, {{pii.first_name}}", "body": "<p>Hi {{pii.first_name}}</p>", "text_body": "Hi {{pii.first_name}}",
			"email_uid": uid, "callback_url": cbSrv.URL + "/hooks/compat"}
	}

	if a := post("not-the-secret-at-all", req("uid-1")); a.ErrorCode != 2 {
		t.Fatalf("wrong secret: %+v", a)
	}
	a := post(secret, req("uid-1"))
	if a.ErrorCode != 0 || !strings.HasPrefix(a.ExtMessageID, "bpm_") {
		t.Fatalf("accept: %+v", a)
	}
	if again := post(secret, req("uid-1")); again.ErrorCode != 0 || again.ExtMessageID != a.ExtMessageID {
		t.Fatalf("repeat: %+v, want the first answer %s", again, a.ExtMessageID)
	}
	other := req("uid-1")
	other["subject"] = "Something else"
	if c := post(secret, other); c.ErrorCode != 6 {
		t.Fatalf("same uid, other content: %+v", c)
	}
	bad := req("uid-2")
	bad["callback_url"] = "https://elsewhere.example.com/hooks"
	if c := post(secret, bad); c.ErrorCode != 9 {
		t.Fatalf("callback outside the allow-list: %+v", c)
	}
	preview := req("uid-3")
	preview["activity_type"], preview["to_email_address"] = "preview", "qa@staff.test"
	pa := post(secret, preview)
	if pa.ErrorCode != 0 {
		t.Fatalf("preview to an allowed staff domain: %+v", pa)
	}
	denied := req("uid-4")
	denied["activity_type"], denied["to_email_address"] = "preview", "someone@elsewhere.test"
	if c := post(secret, denied); c.ErrorCode != 5 || !strings.Contains(c.ErrorMessage, "recipient_override_not_allowed") {
		t.Fatalf("preview to another domain: %+v", c)
	}

	r.drain()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(cbs)
		mu.Unlock()
		if n >= 2 {
			break
		}
		r.drain()
		time.Sleep(50 * time.Millisecond)
	}
	to := map[string]string{}
	for _, m := range r.mails() {
		to[strings.Trim(m.Header.Get("Message-Id"), "<>")] = m.Header.Get("To")
	}
	if got := to[a.ExtMessageID+"@example.com"]; !strings.Contains(got, alexEmail) {
		t.Errorf("uid-1 went to %q, want the player", got)
	}
	if got := to[pa.ExtMessageID+"@example.com"]; !strings.Contains(got, "qa@staff.test") {
		t.Errorf("preview went to %q, want the staff address", got)
	}
	if len(to) != 2 {
		t.Errorf("%d mails, want 2", len(to))
	}
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]string{}
	for _, cb := range cbs {
		seen[cb["email_uid"].(string)] = cb["status"].(string)
		if cb["ext_message_id"] == "" {
			t.Errorf("callback %v without ext_message_id", cb)
		}
	}
	if seen["uid-1"] != "sent" || seen["uid-3"] != "sent" || len(seen) != 2 {
		t.Errorf("compat callbacks %v", cbs)
	}
	// The core's own callback receiver heard nothing of compat traffic.
	for _, p := range r.env.Core.Received() {
		if strings.HasPrefix(p.ID, "compat:") {
			t.Errorf("compat status went to the core: %+v", p)
		}
	}
}

// An SMS through the compat API: the player's number from the vault, the
// text as sent, the status to the request's callback_url under im_uid.
func TestCompatSMSEndToEnd(t *testing.T) {
	tw := newTwilio(t)
	public := freeAddr(t)
	var mu sync.Mutex
	var cbs []map[string]any
	cbSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		cbs = append(cbs, m)
		mu.Unlock()
	}))
	defer cbSrv.Close()
	const secret = "compat-sms-secret-0123456789"
	t.Setenv("BP_TEST_COMPAT_SECRET", secret)
	t.Setenv("BP_TEST_TWILIO_TOKEN", "twilio-test-token")
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) {
		c.SMS = gateway.SMSConfig{Adapter: "twilio", Twilio: gateway.TwilioConfig{BaseURL: tw.URL, AccountSID: "AC0123",
			AuthTokenEnv: "BP_TEST_TWILIO_TOKEN", From: "+15550100999"}}
		c.Public = gateway.PublicConfig{Listen: public, BaseURL: "https://" + public, TLS: true}
		c.Tenants[0].Compat = gateway.TenantCompat{SMS: true, SecretsEnv: "BP_TEST_COMPAT_SECRET",
			AllowIPs: []string{"127.0.0.1/32"}, CallbackAllow: []string{cbSrv.URL + "/hooks"},
			Brand: devenv.Brand, Category: "transactional", Purpose: "account_verification"}
	}})
	rec := alex()
	rec.Phone = "+15550100001"
	r.put("u-1", rec)
	client, err := r.in.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"ext_user_id": "u-1", "body": "Your code: 4711", "im_uid": "sms-uid-1",
		"callback_url": cbSrv.URL + "/hooks/sms"})
	req, _ := http.NewRequest("POST", r.in.MessageURL+"/compat/sms", bytes.NewReader(b))
	req.Header.Set("Authorization", secret)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var a compatAnswer
	json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if a.ErrorCode != 0 {
		t.Fatalf("compat sms: %+v", a)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.drain()
		mu.Lock()
		n := len(cbs)
		mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	tw.mu.Lock()
	if len(tw.forms) != 1 || tw.forms[0].Get("To") != "+15550100001" || tw.forms[0].Get("Body") != "Your code: 4711" {
		t.Errorf("twilio got %v", tw.forms)
	}
	tw.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if len(cbs) != 1 || cbs[0]["im_uid"] != "sms-uid-1" || cbs[0]["status"] != "sent" || cbs[0]["ext_message_id"] != a.ExtMessageID {
		t.Errorf("callbacks %v", cbs)
	}
}
