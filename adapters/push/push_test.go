package push_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/push"
)

// Obviously fake values; each is looked for in every error text.
const (
	fakeAuth   = "FAKE-push-gateway-key-for-tests"
	fakeUser   = "fake-user-5550100001"
	fakeToken  = "FAKE-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	fakeToken2 = "FAKE-token-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	fakeToken3 = "FAKE-token-cccccccccccccccccccccccccccccc"
	fakeTitle  = "Fake Player, your bonus"
	fakeBody   = "Hi Fake Player, 10 free spins await"
)

// gwRequest is one request as the fake push gateway received it.
type gwRequest struct {
	Method, Path, Query, Auth, ContentType string
	Raw                                    []byte
}

// reply is a scripted answer; status 0 hangs up without answering.
type reply struct {
	status int
	header http.Header
	body   string
	delay  time.Duration
}

// fakeGateway is an operator's push gateway: it answers each push token
// with its scripted reply (default 200), and records what arrived.
type fakeGateway struct {
	srv *httptest.Server

	mu       sync.Mutex
	reqs     []gwRequest
	byToken  map[string]reply
	inFlight int
	maxIn    int
}

func newGateway(t testing.TB, byToken map[string]reply) *fakeGateway {
	t.Helper()
	g := &fakeGateway{byToken: byToken}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var doc struct {
		PushToken string `json:"push_token"`
	}
	json.Unmarshal(raw, &doc)
	g.mu.Lock()
	g.reqs = append(g.reqs, gwRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), raw})
	rep, ok := g.byToken[doc.PushToken]
	g.inFlight++
	g.maxIn = max(g.maxIn, g.inFlight)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.inFlight--
		g.mu.Unlock()
	}()
	if !ok {
		rep = reply{status: http.StatusOK, body: `{"status":"queued","push_token":"` + doc.PushToken + `"}`}
	}
	if rep.delay > 0 {
		select {
		case <-time.After(rep.delay):
		case <-r.Context().Done():
			return
		}
	}
	if rep.status == 0 {
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	for k, v := range rep.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

func (g *fakeGateway) requests() []gwRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.reqs)
}

func newClient(t testing.TB, rawURL string, mod func(*push.Config)) *push.Client {
	t.Helper()
	cfg := push.Config{URL: rawURL, Authorization: fakeAuth, Timeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := push.New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func fakeMessage() push.Message {
	return push.Message{
		UserExtID:  fakeUser,
		ExtBrandID: "fakebrand1",
		PushToken:  fakeToken,
		DeviceType: "ANDROID",
		MessageID:  "123456",
		Title:      fakeTitle,
		Body:       fakeBody,
	}
}

func golden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimRight(b, "\n")
}

// assertClean fails if err's text, in any fmt form, holds a secret, a
// token or the player's data.
func assertClean(t testing.TB, err error, more ...string) {
	t.Helper()
	if err == nil {
		return
	}
	secrets := append([]string{fakeAuth, fakeUser, fakeToken, fakeToken2, fakeToken3, fakeTitle, fakeBody, "Fake Player", "FAKE"}, more...)
	// Not %#v: it prints pointers, whose hex digits can spell anything.
	for _, form := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err)} {
		for _, s := range secrets {
			if strings.Contains(form, s) {
				t.Errorf("error text holds %q: %s", s, form)
			}
		}
	}
}

func TestSendRequestShape(t *testing.T) {
	tests := []struct {
		name string
		msg  func(*push.Message)
		want []byte // the exact body the push gateway must receive
	}{
		{
			name: "all fields, extras sorted after the standard ones",
			msg: func(m *push.Message) {
				m.Action = "https://example.com/offer?a=1&b=2"
				m.IconURL = "https://example.com/icon.png"
				m.ImageURL = "https://example.com/image.png"
				m.Extra = map[string]string{"button1": "Claim", "action2": "dp:inbox", "engagement_uid": "f56883c4-0000-4000-8000-000000000001"}
			},
			want: golden(t, "full_message.json"),
		},
		{
			name: "optional fields left out when empty",
			msg:  func(*push.Message) {},
			want: golden(t, "minimal_message.json"),
		},
		{
			name: "quotes, markup, control characters and unicode are escaped as JSON only",
			msg: func(m *push.Message) {
				m.Title = `"Gewinn" <b>&</b> 😀`
				m.Body = "line 1\nline 2\t\\ \u0001 \u2028"
			},
			want: []byte(`{"user_ext_id":"fake-user-5550100001","ext_brand_id":"fakebrand1","push_token":"FAKE-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","device_type":"ANDROID","message":{"message_id":123456,"title":"\"Gewinn\" <b>&</b> 😀","body":"line 1\nline 2\t\\ \u0001 \u2028"}}`),
		},
		{
			name: "non-numeric message id is a string",
			msg:  func(m *push.Message) { m.MessageID = "msg-0001" },
			want: []byte(`{"user_ext_id":"fake-user-5550100001","ext_brand_id":"fakebrand1","push_token":"FAKE-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","device_type":"ANDROID","message":{"message_id":"msg-0001","title":"Fake Player, your bonus","body":"Hi Fake Player, 10 free spins await"}}`),
		},
		{
			name: "leading zero keeps the id a string",
			msg:  func(m *push.Message) { m.MessageID = "007" },
			want: []byte(`{"user_ext_id":"fake-user-5550100001","ext_brand_id":"fakebrand1","push_token":"FAKE-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","device_type":"ANDROID","message":{"message_id":"007","title":"Fake Player, your bonus","body":"Hi Fake Player, 10 free spins await"}}`),
		},
		{
			name: "id beyond 2^53-1 is a string",
			msg:  func(m *push.Message) { m.MessageID = "9007199254740992" },
			want: []byte(`{"user_ext_id":"fake-user-5550100001","ext_brand_id":"fakebrand1","push_token":"FAKE-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","device_type":"ANDROID","message":{"message_id":"9007199254740992","title":"Fake Player, your bonus","body":"Hi Fake Player, 10 free spins await"}}`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := newGateway(t, nil)
			c := newClient(t, gw.srv.URL+"/push/v1?brand=fakebrand1", nil)
			m := fakeMessage()
			tt.msg(&m)
			res, err := c.Send(context.Background(), m)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if res.StatusCode != http.StatusOK {
				t.Errorf("Result %+v", res)
			}
			reqs := gw.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/push/v1" || r.Query != "brand=fakebrand1" {
				t.Errorf("got %s %s?%s, want POST /push/v1?brand=fakebrand1", r.Method, r.Path, r.Query)
			}
			if r.Auth != fakeAuth || r.ContentType != "application/json" {
				t.Errorf("Authorization %q, Content-Type %q", r.Auth, r.ContentType)
			}
			if !bytes.Equal(r.Raw, tt.want) {
				t.Errorf("body\n got %s\nwant %s", r.Raw, tt.want)
			}
			if !json.Valid(r.Raw) {
				t.Errorf("body is not valid JSON")
			}
		})
	}
}

func TestSendClassifiesStatuses(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name       string
		rep        reply
		ok         bool
		temporary  bool
		code       string
		is         error
		retryAfter time.Duration
	}{
		{name: "200", rep: reply{status: 200}, ok: true},
		{name: "202", rep: reply{status: 202}, ok: true},
		{name: "204", rep: reply{status: 204}, ok: true},
		{name: "410: token gone", rep: reply{status: 410, body: `{"error":"NotRegistered","token":"` + fakeToken + `"}`}, code: "push_410", is: push.ErrTokenGone},
		{name: "404: token gone", rep: reply{status: 404}, code: "push_404", is: push.ErrTokenGone},
		{name: "401: bad key", rep: reply{status: 401}, code: "push_401", is: push.ErrUnauthorized},
		{name: "403: bad key", rep: reply{status: 403}, code: "push_403", is: push.ErrUnauthorized},
		{name: "400: other 4xx is permanent", rep: reply{status: 400, body: fakeBody}, code: "push_400"},
		{name: "422: other 4xx is permanent", rep: reply{status: 422}, code: "push_422"},
		{name: "429 with delay-seconds", rep: reply{status: 429, header: http.Header{"Retry-After": {"30"}}}, temporary: true, code: "push_429", retryAfter: 30 * time.Second},
		{name: "503 with an HTTP date", rep: reply{status: 503, header: http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}}, temporary: true, code: "push_503", retryAfter: 90 * time.Second},
		{name: "500 without a hint", rep: reply{status: 500, body: "stack trace with " + fakeUser}, temporary: true, code: "push_500"},
		{name: "408 is a time-out", rep: reply{status: 408}, temporary: true, code: "push_408"},
		{name: "garbage Retry-After gives no hint", rep: reply{status: 503, header: http.Header{"Retry-After": {"soon"}}}, temporary: true, code: "push_503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := newGateway(t, map[string]reply{fakeToken: tt.rep})
			c := newClient(t, gw.srv.URL, func(c *push.Config) { c.Now = func() time.Time { return now } })
			res, err := c.Send(context.Background(), fakeMessage())
			if tt.ok {
				if err != nil || res.StatusCode != tt.rep.status {
					t.Fatalf("Send = %+v, %v; want status %d", res, err, tt.rep.status)
				}
				return
			}
			kind := adapters.ErrPermanent
			if tt.temporary {
				kind = adapters.ErrTemporary
			}
			if !errors.Is(err, kind) {
				t.Fatalf("error %v is not %v", err, kind)
			}
			if got := adapters.Code(err); got != tt.code {
				t.Errorf("code %q, want %q", got, tt.code)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if !tt.temporary && tt.is != push.ErrTokenGone && errors.Is(err, push.ErrTokenGone) {
				t.Errorf("error %v claims the token is gone", err)
			}
			if got := adapters.RetryAfter(err); got != tt.retryAfter {
				t.Errorf("RetryAfter %v, want %v", got, tt.retryAfter)
			}
			assertClean(t, err, "NotRegistered", "stack trace")
		})
	}
}

func TestSendDoesNotFollowRedirects(t *testing.T) {
	elsewhere := newGateway(t, nil)
	gw := newGateway(t, map[string]reply{fakeToken: {status: http.StatusTemporaryRedirect, header: http.Header{"Location": {elsewhere.srv.URL + "/steal"}}}})
	c := newClient(t, gw.srv.URL, nil)
	_, err := c.Send(context.Background(), fakeMessage())
	if !errors.Is(err, adapters.ErrPermanent) || adapters.Code(err) != "push_307" {
		t.Fatalf("error %v, want permanent push_307", err)
	}
	if n := len(elsewhere.requests()); n != 0 {
		t.Errorf("redirect target got %d requests (with the Authorization value)", n)
	}
}

func TestSendTransportErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String() + "/push?key=FAKE-query-key"
	ln.Close()

	tests := []struct {
		name    string
		url     func(t *testing.T) string
		ctx     func() (context.Context, context.CancelFunc)
		timeout time.Duration
		code    string
		is      error
	}{
		{name: "connection refused", url: func(*testing.T) string { return deadURL }, code: "push_network"},
		{
			name: "gateway too slow: Config.Timeout",
			url: func(t *testing.T) string {
				return newGateway(t, map[string]reply{fakeToken: {status: 200, delay: time.Second}}).srv.URL
			},
			timeout: 50 * time.Millisecond,
			code:    "push_timeout",
			is:      context.DeadlineExceeded,
		},
		{
			name: "caller cancelled",
			url:  func(*testing.T) string { return deadURL },
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			code: "push_canceled",
			is:   context.Canceled,
		},
		{
			name: "connection dropped without an answer",
			url:  func(t *testing.T) string { return newGateway(t, map[string]reply{fakeToken: {status: 0}}).srv.URL },
			code: "push_network",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.url(t), func(c *push.Config) {
				if tt.timeout > 0 {
					c.Timeout = tt.timeout
				}
			})
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			_, err := c.Send(ctx, fakeMessage())
			if !errors.Is(err, adapters.ErrTemporary) {
				t.Fatalf("error %v is not temporary", err)
			}
			if got := adapters.Code(err); got != tt.code {
				t.Errorf("code %q, want %q (%v)", got, tt.code, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			var ue *url.Error
			if errors.As(err, &ue) {
				t.Errorf("chain still holds a *url.Error")
			}
			assertClean(t, err, "key=", "/push")
		})
	}
}

func TestSendRejectsInvalidMessageWithoutSending(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*push.Message)
	}{
		{"no push token", func(m *push.Message) { m.PushToken = "" }},
		{"blank push token", func(m *push.Message) { m.PushToken = "  " }},
		{"no user id", func(m *push.Message) { m.UserExtID = "" }},
		{"invalid UTF-8 in the body", func(m *push.Message) { m.Body = fakeBody + "\xff" }},
		{"invalid UTF-8 in an extra", func(m *push.Message) { m.Extra = map[string]string{"button1": "\xfe"} }},
		{"extra with an empty name", func(m *push.Message) { m.Extra = map[string]string{"": "x"} }},
		{"extra shadowing body", func(m *push.Message) { m.Extra = map[string]string{"body": fakeBody} }},
		{"extra shadowing iconUrl", func(m *push.Message) { m.Extra = map[string]string{"iconUrl": "x"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := newGateway(t, nil)
			c := newClient(t, gw.srv.URL, nil)
			m := fakeMessage()
			tt.mod(&m)
			_, err := c.Send(context.Background(), m)
			if !errors.Is(err, push.ErrInvalidMessage) || !errors.Is(err, adapters.ErrPermanent) || adapters.Code(err) != "push_invalid_message" {
				t.Fatalf("error %v, want a permanent push_invalid_message", err)
			}
			if n := len(gw.requests()); n != 0 {
				t.Errorf("%d requests reached the gateway", n)
			}
			assertClean(t, err)
		})
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  push.Config
	}{
		{"no url", push.Config{Authorization: fakeAuth}},
		{"relative url", push.Config{URL: "/push", Authorization: fakeAuth}},
		{"plain http to a remote host", push.Config{URL: "http://push.example.com/push", Authorization: fakeAuth}},
		{"ftp", push.Config{URL: "ftp://push.example.com/push", Authorization: fakeAuth}},
		{"user info in url", push.Config{URL: "https://user:FAKE@push.test/push", Authorization: fakeAuth}},
		{"no authorization", push.Config{URL: "https://push.example.com/push"}},
		{"authorization with a line break", push.Config{URL: "https://push.example.com/push", Authorization: fakeAuth + "\r\nX-Injected: 1"}},
		{"negative timeout", push.Config{URL: "https://push.example.com/push", Authorization: fakeAuth, Timeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := push.New(tt.cfg, nil)
			if !errors.Is(err, push.ErrConfig) {
				t.Fatalf("New = %v, %v; want ErrConfig", c, err)
			}
			assertClean(t, err)
		})
	}
	for _, cfg := range []push.Config{
		{URL: "https://push.example.com/push", Authorization: fakeAuth},
		{URL: "http://127.0.0.1:9000/push", Authorization: fakeAuth},
		{URL: "http://push.internal.example.com/push", Authorization: fakeAuth, AllowInsecureHTTP: true},
	} {
		if _, err := push.New(cfg, nil); err != nil {
			t.Errorf("%v: %v", cfg, err)
		}
	}
}

func TestConfigAndClientStringsHideSecrets(t *testing.T) {
	cfg := push.Config{URL: "https://push.example.com/push?key=FAKE-query-key", Authorization: fakeAuth}
	c, err := push.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprint(c), fmt.Sprintf("%v", []any{cfg, c})} {
		if strings.Contains(s, fakeAuth) || strings.Contains(s, "FAKE-query-key") {
			t.Errorf("%s holds a secret", s)
		}
	}
}

func TestSendAll(t *testing.T) {
	base := fakeMessage()
	base.PushToken, base.DeviceType = "ignored", "ignored"
	gone := reply{status: 410}
	busy := reply{status: 503, header: http.Header{"Retry-After": {"5"}}}
	bad := reply{status: 400}

	tests := []struct {
		name      string
		tokens    []push.Token
		replies   map[string]reply
		wantErrs  []string // per token: "" for accepted, else the code
		wantCode  string   // SendAll's own error code; "" for nil
		wantSent  int
		temporary bool
	}{
		{
			name:     "one accepted is enough",
			tokens:   []push.Token{{fakeToken, "ANDROID"}, {fakeToken2, "IOS"}, {fakeToken3, "DESKTOP"}},
			replies:  map[string]reply{fakeToken2: gone, fakeToken3: busy},
			wantErrs: []string{"", "push_410", "push_503"},
			wantSent: 3,
		},
		{
			name:      "none accepted: a temporary failure wins",
			tokens:    []push.Token{{fakeToken, "ANDROID"}, {fakeToken2, "IOS"}},
			replies:   map[string]reply{fakeToken: gone, fakeToken2: busy},
			wantErrs:  []string{"push_410", "push_503"},
			wantCode:  "push_503",
			wantSent:  2,
			temporary: true,
		},
		{
			name:     "all gone: permanent, token gone",
			tokens:   []push.Token{{fakeToken, "ANDROID"}, {fakeToken2, "IOS"}},
			replies:  map[string]reply{fakeToken: gone, fakeToken2: gone},
			wantErrs: []string{"push_410", "push_410"},
			wantCode: "push_410",
			wantSent: 2,
		},
		{
			name:     "all permanent: the first one",
			tokens:   []push.Token{{fakeToken, "ANDROID"}, {fakeToken2, "IOS"}},
			replies:  map[string]reply{fakeToken: bad, fakeToken2: gone},
			wantErrs: []string{"push_400", "push_410"},
			wantCode: "push_400",
			wantSent: 2,
		},
		{
			name:     "a token listed twice is sent once",
			tokens:   []push.Token{{fakeToken, "ANDROID"}, {fakeToken2, "IOS"}, {fakeToken, "ANDROID"}},
			replies:  map[string]reply{fakeToken: gone},
			wantErrs: []string{"push_410", "", "push_410"},
			wantSent: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := newGateway(t, tt.replies)
			c := newClient(t, gw.srv.URL, nil)
			results, err := c.SendAll(context.Background(), base, tt.tokens)
			if len(results) != len(tt.tokens) {
				t.Fatalf("%d results for %d tokens", len(results), len(tt.tokens))
			}
			for i, r := range results {
				if got := adapters.Code(r.Err); got != tt.wantErrs[i] {
					t.Errorf("token %d: code %q, want %q", i, got, tt.wantErrs[i])
				}
				if (r.Err == nil) != (r.Result.StatusCode == 200) {
					t.Errorf("token %d: result %+v with error %v", i, r.Result, r.Err)
				}
			}
			if got := adapters.Code(err); got != tt.wantCode {
				t.Errorf("SendAll code %q, want %q (%v)", got, tt.wantCode, err)
			}
			if tt.wantCode != "" && errors.Is(err, adapters.ErrTemporary) != tt.temporary {
				t.Errorf("SendAll error %v: temporary = %t, want %t", err, !tt.temporary, tt.temporary)
			}
			if tt.wantCode == "push_410" && !errors.Is(err, push.ErrTokenGone) {
				t.Errorf("error %v is not ErrTokenGone", err)
			}
			assertClean(t, err)

			reqs := gw.requests()
			if len(reqs) != tt.wantSent {
				t.Fatalf("%d requests, want %d", len(reqs), tt.wantSent)
			}
			// Each request is base with one token's push_token and
			// device_type, and every token got exactly one.
			sent := map[string]string{}
			for _, r := range reqs {
				var doc map[string]any
				if err := json.Unmarshal(r.Raw, &doc); err != nil {
					t.Fatal(err)
				}
				tok, dev := doc["push_token"].(string), doc["device_type"].(string)
				if _, dup := sent[tok]; dup {
					t.Errorf("token %s sent twice", tok)
				}
				sent[tok] = dev
				if doc["user_ext_id"] != fakeUser || doc["message"].(map[string]any)["title"] != fakeTitle {
					t.Errorf("request lost the base message: %s", r.Raw)
				}
			}
			for _, tok := range tt.tokens {
				if sent[tok.PushToken] != tok.DeviceType {
					t.Errorf("token %s sent with device %q, want %q", tok.PushToken, sent[tok.PushToken], tok.DeviceType)
				}
			}
		})
	}
}

func TestSendAllBoundsConcurrency(t *testing.T) {
	var tokens []push.Token
	replies := map[string]reply{}
	for i := range 12 {
		tok := fmt.Sprintf("FAKE-token-%02d", i)
		tokens = append(tokens, push.Token{PushToken: tok, DeviceType: "ANDROID"})
		replies[tok] = reply{status: 200, delay: 30 * time.Millisecond}
	}
	gw := newGateway(t, replies)
	c := newClient(t, gw.srv.URL, nil)
	results, err := c.SendAll(context.Background(), fakeMessage(), tokens)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r.Err != nil {
			t.Errorf("token %d: %v", i, r.Err)
		}
	}
	gw.mu.Lock()
	maxIn := gw.maxIn
	gw.mu.Unlock()
	if maxIn > 4 || maxIn < 2 {
		t.Errorf("%d requests in flight at most, want 2..4", maxIn)
	}
}

func TestSendAllWithoutTokens(t *testing.T) {
	gw := newGateway(t, nil)
	c := newClient(t, gw.srv.URL, nil)
	results, err := c.SendAll(context.Background(), fakeMessage(), nil)
	if !errors.Is(err, push.ErrNoTokens) || !errors.Is(err, adapters.ErrPermanent) || adapters.Code(err) != "push_no_token" {
		t.Fatalf("SendAll = %v, %v; want permanent push_no_token", results, err)
	}
	if len(gw.requests()) != 0 {
		t.Errorf("requests reached the gateway")
	}
}

// TestErrorsHoldNoSecretsOrPersonalData drives every failure path with the
// player's data in the message and in the gateway's replies, and checks
// none of it, nor the Authorization value, reaches an error's text.
func TestErrorsHoldNoSecretsOrPersonalData(t *testing.T) {
	echo := fmt.Sprintf(`{"error":"reply-canary-qz","token":%q,"user":%q,"title":%q,"auth":%q}`, fakeToken, fakeUser, fakeTitle, fakeAuth)
	statuses := []int{301, 400, 401, 403, 404, 408, 410, 413, 422, 429, 500, 502, 503, 504, 0}
	for _, status := range statuses {
		gw := newGateway(t, map[string]reply{fakeToken: {status: status, body: echo, header: http.Header{"Location": {"/x?token=" + fakeToken}}}})
		c := newClient(t, gw.srv.URL+"/push?key=FAKE-query-key", nil)
		_, err := c.Send(context.Background(), fakeMessage())
		if err == nil {
			t.Fatalf("status %d: no error", status)
		}
		assertClean(t, err, "FAKE-query-key", "reply-canary-qz")
		_, err = c.SendAll(context.Background(), fakeMessage(), []push.Token{{fakeToken, "IOS"}, {fakeToken, "IOS"}})
		assertClean(t, err, "FAKE-query-key", "reply-canary-qz")
	}
	slow := newClient(t, newGateway(t, map[string]reply{fakeToken: {status: 200, delay: time.Second}}).srv.URL+"/push?key=FAKE-query-key",
		func(c *push.Config) { c.Timeout = 20 * time.Millisecond })
	_, err := slow.Send(context.Background(), fakeMessage())
	assertClean(t, err, "FAKE-query-key")
	dead := newClient(t, "http://127.0.0.1:1/push?key=FAKE-query-key", nil)
	_, err = dead.Send(context.Background(), fakeMessage())
	assertClean(t, err, "FAKE-query-key")
	invalid := fakeMessage()
	invalid.Extra = map[string]string{"title": fakeTitle}
	_, err = dead.Send(context.Background(), invalid)
	assertClean(t, err)
}

// The golden files must be what the documented shape says; decoding them
// guards against a golden file drifting into something the shape forbids.
func TestGoldenFilesMatchDocumentedShape(t *testing.T) {
	var doc struct {
		UserExtID  string         `json:"user_ext_id"`
		ExtBrandID string         `json:"ext_brand_id"`
		PushToken  string         `json:"push_token"`
		DeviceType string         `json:"device_type"`
		Message    map[string]any `json:"message"`
	}
	dec := json.NewDecoder(bytes.NewReader(golden(t, "full_message.json")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"message_id": 123456.0, "title": fakeTitle, "body": fakeBody,
		"action": "https://example.com/offer?a=1&b=2", "iconUrl": "https://example.com/icon.png", "imageUrl": "https://example.com/image.png",
		"button1": "Claim", "action2": "dp:inbox", "engagement_uid": "f56883c4-0000-4000-8000-000000000001",
	}
	if !reflect.DeepEqual(doc.Message, want) {
		t.Errorf("message = %v", doc.Message)
	}
}
