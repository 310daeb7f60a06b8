package gateway_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/vault"
)

// noQuietHours lets marketing go out whatever the time of day the suite runs.
func noQuietHours() map[string]any {
	none := map[string]any{"start": "00:00", "end": "00:00"}
	return settings(map[string]any{"quiet_hours": map[string]any{"email": none, "sms": none, "im": none, "push": none}})
}

// Marketing email carries RFC 8058 one-click unsubscribe headers, DKIM-less
// here; a GET of the link changes nothing, a forged link is refused, and
// the one-click POST opts the player out: the core hears "opted_out" for
// the message, and the next marketing email is denied.
func TestMarketingEmailOffersOneClickUnsubscribe(t *testing.T) {
	r := newRig(t, devenv.Options{GatewayOptions: gateway.Options{PolicyData: noQuietHours()}})
	r.put("u-1", alex())
	ext := accepted(t, r.send(marketing("mk-1", "u-1"), message("tx-1", "u-1")))
	r.drain()
	var link string
	for _, m := range r.mails() {
		lu, post := m.Header.Get("List-Unsubscribe"), m.Header.Get("List-Unsubscribe-Post")
		isMarketing := strings.Contains(m.Header.Get("Message-Id"), ext[0])
		if isMarketing != (lu != "") || isMarketing != (post == "List-Unsubscribe=One-Click") {
			t.Fatalf("mail %s: List-Unsubscribe %q, -Post %q", m.Header.Get("Message-Id"), lu, post)
		}
		if isMarketing {
			link = strings.Trim(lu, "<>")
		}
	}
	if !strings.HasPrefix(link, r.in.PublicURL+"/u/") || strings.Contains(link, "u-1") || strings.Contains(link, alexEmail) {
		t.Fatalf("unsubscribe link %q: want an opaque link on the public listener; callbacks %+v", link, r.env.Core.Received())
	}

	client, err := r.in.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	get, err := client.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(get.Body)
	get.Body.Close()
	if get.StatusCode != 200 || !strings.Contains(string(body), `method="post"`) {
		t.Fatalf("GET: %d %s", get.StatusCode, body)
	}
	forged := link[:len(link)-3] + "AAA"
	if resp, err := client.PostForm(forged, url.Values{"List-Unsubscribe": {"One-Click"}}); err != nil || resp.StatusCode != 400 {
		t.Fatalf("forged link: %v %v", resp, err)
	}
	// Nothing has changed yet: marketing still goes out.
	accepted(t, r.send(marketing("mk-2", "u-1")))
	r.drain()
	if st, _ := r.callback("mk-2"); st != gateway.StatusSent {
		t.Fatalf("before unsubscribing: %s", st)
	}

	resp, err := client.PostForm(link, url.Values{"List-Unsubscribe": {"One-Click"}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("one-click POST: %v %v", resp, err)
	}
	// Twice is the same as once.
	if resp, err := client.PostForm(link, url.Values{"List-Unsubscribe": {"One-Click"}}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("second POST: %v %v", resp, err)
	}
	r.drain()
	var optOuts int
	for _, p := range r.env.Core.Received() {
		if p.Status == gateway.StatusOptedOut {
			optOuts++
			if p.ExtMessageID != ext[0] || p.ID != "mk-1" || p.Reason != "list_unsubscribe" {
				t.Errorf("opted_out callback %+v", p)
			}
		}
	}
	if optOuts != 1 {
		t.Fatalf("%d opted_out callbacks, want 1", optOuts)
	}
	accepted(t, r.send(marketing("mk-3", "u-1"), message("tx-2", "u-1")))
	r.drain()
	if st, reason := r.callback("mk-3"); st != gateway.StatusDenied || reason != "opted_out" {
		t.Errorf("marketing after unsubscribing: %s %s", st, reason)
	}
	if st, _ := r.callback("tx-2"); st != gateway.StatusSent {
		t.Errorf("transactional after unsubscribing: %s", st)
	}
}

// twilioServer speaks the shape of Twilio's Messages API and records what
// it was sent.
type twilioServer struct {
	*httptest.Server
	mu    sync.Mutex
	forms []url.Values
}

func newTwilio(t *testing.T) *twilioServer {
	ts := &twilioServer{}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		if r.URL.Path != "/2010-04-01/Accounts/AC0123/Messages.json" || user != "AC0123" || pass != "twilio-test-token" {
			w.WriteHeader(401)
			return
		}
		r.ParseForm()
		ts.mu.Lock()
		ts.forms = append(ts.forms, r.PostForm)
		n := len(ts.forms)
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		json.NewEncoder(w).Encode(map[string]any{"sid": "SM" + strings.Repeat("0", 30) + string(rune('0'+n)), "status": "queued", "num_segments": "1"})
	}))
	t.Cleanup(ts.Close)
	return ts
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// twilioSign is Twilio's request signature, computed independently of the
// adapter: HMAC-SHA1 over the URL and the sorted form fields.
func twilioSign(token, u string, form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := u
	for _, k := range keys {
		s += k + form.Get(k)
	}
	m := hmac.New(sha1.New, []byte(token))
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// An SMS goes out through the Twilio adapter with the player's number and
// the rendered text, and Twilio's signed delivery receipt becomes a
// "delivered" callback for the core; a receipt with a bad signature
// changes nothing.
func TestSMSThroughTwilioWithDeliveryReceipt(t *testing.T) {
	tw := newTwilio(t)
	public := freeAddr(t)
	t.Setenv("BP_TEST_TWILIO_TOKEN", "twilio-test-token")
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) {
		c.SMS = gateway.SMSConfig{Adapter: "twilio", Twilio: gateway.TwilioConfig{BaseURL: tw.URL, AccountSID: "AC0123",
			AuthTokenEnv: "BP_TEST_TWILIO_TOKEN", From: "+15550100999"}}
		c.Public = gateway.PublicConfig{Listen: public, BaseURL: "https://" + public, TLS: true}
	}})
	rec := alex()
	rec.Phone = "+15550100001"
	r.put("u-1", rec)
	m := message("sms-1", "u-1")
	m.Channel, m.From, m.Subject, m.HTML, m.Text = "sms", "", "", "", "Your code for {{pii.first_name}}: 123456"
	ext := accepted(t, r.send(m))
	r.drain()
	if st, reason := r.callback("sms-1"); st != gateway.StatusSent {
		t.Fatalf("sms: %s %s", st, reason)
	}
	tw.mu.Lock()
	if len(tw.forms) != 1 || tw.forms[0].Get("To") != "+15550100001" || tw.forms[0].Get("From") != "+15550100999" || tw.forms[0].Get("Body") != "Your code for "+alexName+": 123456" ||
		!strings.HasPrefix(tw.forms[0].Get("StatusCallback"), "https://"+public+"/receipts/twilio") {
		t.Fatalf("twilio got %v", tw.forms)
	}
	cb := tw.forms[0].Get("StatusCallback")
	tw.mu.Unlock()

	receipt := url.Values{"MessageSid": {"SM" + strings.Repeat("0", 30) + "1"}, "MessageStatus": {"delivered"}, "AccountSid": {"AC0123"}}
	post := func(sig string) int {
		req, _ := http.NewRequest("POST", cb, strings.NewReader(receipt.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Twilio-Signature", sig)
		client, err := r.in.HTTPClient()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(twilioSign("wrong-token", cb, receipt)); code != 403 {
		t.Fatalf("bad signature: %d", code)
	}
	r.drain()
	if st, _ := r.callback("sms-1"); st != gateway.StatusSent {
		t.Fatalf("after a forged receipt: %s", st)
	}
	for range 2 { // a repeated receipt adds nothing
		if code := post(twilioSign("twilio-test-token", cb, receipt)); code != 200 && code != 204 {
			t.Fatalf("signed receipt: %d", code)
		}
	}
	r.drain()
	var delivered int
	for _, p := range r.env.Core.Received() {
		if p.Status == gateway.StatusDelivered && p.ExtMessageID == ext[0] {
			delivered++
		}
	}
	if delivered != 1 {
		t.Fatalf("%d delivered callbacks, want 1", delivered)
	}
}

// The im and push channels: Telegram's sendMessage with the record's chat
// id, and the operator's push gateway with each device; a device the push
// gateway reports gone is dropped from the record and not tried again.
func TestTelegramAndPush(t *testing.T) {
	var mu sync.Mutex
	var tg []map[string]any
	var pushes []map[string]any
	tgSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/bot123:test-bot-token/sendMessage" {
			w.WriteHeader(404)
			return
		}
		var m map[string]any
		d := json.NewDecoder(r.Body)
		d.UseNumber()
		d.Decode(&m)
		mu.Lock()
		tg = append(tg, m)
		mu.Unlock()
		io.WriteString(w, `{"ok":true,"result":{"message_id":77}}`)
	}))
	defer tgSrv.Close()
	pushSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "push-test-key" {
			w.WriteHeader(401)
			return
		}
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		pushes = append(pushes, m)
		mu.Unlock()
		if m["push_token"] == "device-gone" {
			w.WriteHeader(410)
			return
		}
		w.WriteHeader(200)
	}))
	defer pushSrv.Close()
	t.Setenv("BP_TEST_TG", "123:test-bot-token")
	t.Setenv("BP_TEST_PUSH", "push-test-key")
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) {
		c.Telegram = gateway.TelegramConfig{TokenEnv: "BP_TEST_TG", BaseURL: tgSrv.URL}
		c.Push = gateway.PushConfig{URL: pushSrv.URL, AuthorizationEnv: "BP_TEST_PUSH"}
	}})
	rec := alex()
	rec.TelegramChatID = "123456789"
	rec.PushTokens = []vault.PushToken{{Token: "device-gone", DeviceType: "ios"}, {Token: "device-ok", DeviceType: "android"}}
	r.put("u-1", rec)
	im := message("im-1", "u-1")
	im.Channel, im.Subject, im.HTML, im.Text = "im", "", "", "Hi {{pii.first_name}}, your withdrawal is on its way"
	im.Purpose = "withdrawal_confirmation"
	pu := message("push-1", "u-1")
	pu.Channel, pu.Subject, pu.HTML, pu.Text = "push", "Withdrawal", "", "Hi {{pii.first_name}}"
	pu.Purpose = "withdrawal_confirmation"
	ext := accepted(t, r.send(im, pu))
	r.drain()
	for _, id := range []string{"im-1", "push-1"} {
		if st, reason := r.callback(id); st != gateway.StatusSent {
			t.Fatalf("%s: %s %s", id, st, reason)
		}
	}
	mu.Lock()
	if len(tg) != 1 || fmt.Sprint(tg[0]["chat_id"]) != "123456789" || tg[0]["text"] != "Hi "+alexName+", your withdrawal is on its way" {
		t.Errorf("telegram got %v", tg)
	}
	if len(pushes) != 2 {
		t.Fatalf("push gateway got %d requests, want one per device", len(pushes))
	}
	for _, p := range pushes {
		msg, _ := p["message"].(map[string]any)
		if p["user_ext_id"] != "u-1" || p["ext_brand_id"] != devenv.Brand || msg["title"] != "Withdrawal" || msg["body"] != "Hi "+alexName {
			t.Errorf("push %v", p)
		}
		if id, _ := msg["message_id"].(string); id != ext[1] {
			t.Errorf("push message_id %v, want %s", msg["message_id"], ext[1])
		}
	}
	pushes = nil
	mu.Unlock()

	pu.ID = "push-2"
	accepted(t, r.send(pu))
	r.drain()
	mu.Lock()
	defer mu.Unlock()
	if len(pushes) != 1 || pushes[0]["push_token"] != "device-ok" {
		t.Fatalf("after a gone device: %v", pushes)
	}
}

// An adapter's rate limit puts messages back in the queue without using
// their attempts or telling the core; they all go out once tokens come,
// each once. A message that could only go out after it expires expires.
func TestRateLimitPacesWithoutLoss(t *testing.T) {
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) {
		// A token every 2 s: slow enough that a loaded machine's own
		// delays cannot change which message gets one.
		c.SMTP.Throttle = gateway.ThrottleConfig{Rate: 0.5, Burst: 1, MaxWait: gateway.Duration(time.Millisecond)}
		c.Send.MaxAttempts = 1 // pacing must not use attempts up
	}})
	r.put("u-1", alex())
	var msgs []envelope.Message
	for _, id := range []string{"rl-1", "rl-2", "rl-3"} {
		msgs = append(msgs, message(id, "u-1"))
	}
	accepted(t, r.send(msgs...))
	r.drain() // one goes out and takes the only token; the next is 2 s away
	exp := message("rl-exp", "u-1")
	at := time.Now().Add(600 * time.Millisecond)
	exp.ExpiresAt = &at
	accepted(t, r.send(exp))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		r.drain()
		done := 0
		for _, id := range []string{"rl-1", "rl-2", "rl-3", "rl-exp"} {
			if st, _ := r.callback(id); st != "" {
				done++
			}
		}
		if done == 4 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, id := range []string{"rl-1", "rl-2", "rl-3"} {
		if st, reason := r.callback(id); st != gateway.StatusSent {
			t.Errorf("%s: %s %s", id, st, reason)
		}
	}
	if st, reason := r.callback("rl-exp"); st != gateway.StatusExpired {
		t.Errorf("rl-exp: %s %s, want expired", st, reason)
	}
	for _, p := range r.env.Core.Received() {
		if p.Status == gateway.StatusDeferred {
			t.Errorf("pacing told the core: %+v", p)
		}
	}
	if n := len(r.mails()); n != 3 {
		t.Errorf("%d mails, want 3", n)
	}
	if !regexp.MustCompile(`blindpost_gateway_paced_total\{adapter="smtp",reason="rate_limited"\} [1-9]`).MatchString(r.metrics()) {
		t.Error("no paced messages counted")
	}
}

// With the relay down, the first failures are retried with back-off and
// reported deferred; then the breaker opens and the rest wait in the
// queue without calling the relay, their attempts untouched. Nothing fails.
func TestCircuitBreakerOpensWhenTheRelayIsDown(t *testing.T) {
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) {
		c.SMTP.Throttle = gateway.ThrottleConfig{BreakerFailures: 2, BreakerCooldown: gateway.Duration(time.Minute)}
		c.Send.MaxAttempts = 2
	}})
	r.put("u-1", alex())
	r.env.Capture.Close() // the relay goes away
	var msgs []envelope.Message
	for _, id := range []string{"cb-1", "cb-2", "cb-3", "cb-4", "cb-5"} {
		msgs = append(msgs, message(id, "u-1"))
	}
	accepted(t, r.send(msgs...))
	for range 3 { // each round would use an attempt, were they counted
		r.drain()
	}
	var deferred int
	for _, p := range r.env.Core.Received() {
		switch p.Status {
		case gateway.StatusDeferred:
			deferred++
		default:
			t.Errorf("%s: %s %s", p.ID, p.Status, p.Reason)
		}
	}
	if deferred != 2 {
		t.Errorf("%d deferred callbacks, want the 2 that opened the breaker", deferred)
	}
	m := r.metrics()
	if !strings.Contains(m, `blindpost_gateway_adapter_circuit{adapter="smtp"} 2`) {
		t.Error("breaker not reported open")
	}
	if !regexp.MustCompile(`blindpost_gateway_paced_total\{adapter="smtp",reason="circuit_open"\} [1-9]`).MatchString(m) {
		t.Error("no message counted as put off by the open circuit")
	}
}

// Waiting does not use attempts up, but it does not last forever either:
// a message still put off by the pacing past send.max_age fails, with a
// final callback.
func TestPacedMessagesStillHaveAMaximumAge(t *testing.T) {
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) {
		// A token every 2 s, as above.
		c.SMTP.Throttle = gateway.ThrottleConfig{Rate: 0.5, Burst: 1, MaxWait: gateway.Duration(time.Millisecond)}
		c.Send.MaxAge = gateway.Duration(time.Second)
	}})
	r.put("u-1", alex())
	ids := []string{"age-1", "age-2", "age-3"}
	accepted(t, r.send(message(ids[0], "u-1"), message(ids[1], "u-1"), message(ids[2], "u-1")))
	r.drain() // one goes out; the others wait 2 s for a token
	time.Sleep(2200 * time.Millisecond)
	r.drain() // one more token: one goes out, the last is put off again, past its age
	var sent, aged int
	for _, id := range ids {
		switch st, reason := r.callback(id); {
		case st == gateway.StatusSent:
			sent++
		case st == gateway.StatusFailed && reason == "max_age:rate_limited":
			aged++
		default:
			t.Errorf("%s: %q %q", id, st, reason)
		}
	}
	if sent != 2 || aged != 1 {
		t.Fatalf("sent %d, failed for age %d; want 2 and 1", sent, aged)
	}
}
