package telegram_test

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
	"unicode/utf16"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/telegram"
)

// Obviously fake: the bot id and secret say so, the chat ids follow the
// project's +1555 01xx convention.
const (
	fakeToken   = "5550100000:FAKE-token_for-tests-only"
	fakeSecret  = "FAKE-token_for-tests-only"
	fakeChat    = "5550100001"
	fakeGroup   = "-1005550100001"
	fakeNewChat = "-1005550100002"
	fakeText    = "Hi Fake Player, your code is 000111"
)

// botRequest is one sendMessage as the fake Bot API received it.
type botRequest struct {
	Method, Path, ContentType string
	Raw                       []byte
}

func (r botRequest) body(t testing.TB) map[string]any {
	t.Helper()
	return decode(t, r.Raw)
}

func decode(t testing.TB, raw []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	return m
}

// reply is a scripted answer; status 0 means "hang up without answering".
type reply struct {
	status int
	body   string
	header http.Header
	delay  time.Duration
}

// fakeBot speaks the Bot API's sendMessage: it checks the token in the
// path like Telegram does, answers with the scripted replies in order, and
// then with {"ok":true,...} and increasing message ids.
type fakeBot struct {
	srv *httptest.Server

	mu      sync.Mutex
	reqs    []botRequest
	replies []reply
	nextID  int64
}

func newFakeBot(t testing.TB, replies ...reply) *fakeBot {
	t.Helper()
	b := &fakeBot{replies: replies, nextID: 100}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *fakeBot) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.reqs = append(b.reqs, botRequest{r.Method, r.URL.Path, r.Header.Get("Content-Type"), raw})
	var rep *reply
	if len(b.replies) > 0 {
		rep = &b.replies[0]
		b.replies = b.replies[1:]
	}
	b.nextID++
	id := b.nextID
	b.mu.Unlock()

	if r.URL.Path != "/bot"+fakeToken+"/sendMessage" {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"ok":false,"error_code":404,"description":"Not Found"}`)
		return
	}
	if rep == nil {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"result":{"message_id":%d,"date":1700000000,"chat":{"id":%s,"type":"private"},"text":"echo"}}`, id, fakeChat)
		return
	}
	if rep.delay > 0 {
		select {
		case <-time.After(rep.delay):
		case <-r.Context().Done():
			return
		}
	}
	if rep.status == 0 {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
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

func (b *fakeBot) requests() []botRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.reqs)
}

func newClient(t testing.TB, baseURL string, mod func(*telegram.Config)) *telegram.Client {
	t.Helper()
	cfg := telegram.Config{BaseURL: baseURL, Token: fakeToken, Timeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := telegram.New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "replies", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// assertClean fails if err's text, in any fmt form, holds a secret or a
// piece of personal data.
func assertClean(t testing.TB, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	secrets = append(secrets, fakeToken, fakeSecret, fakeChat, fakeGroup, fakeNewChat, fakeText,
		strings.TrimPrefix(fakeGroup, "-"), strings.TrimPrefix(fakeNewChat, "-"), "Fake Player", "000111")
	// Not %#v: it prints pointers, whose hex digits can spell anything.
	for _, form := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err)} {
		for _, s := range secrets {
			if s != "" && strings.Contains(form, s) {
				t.Errorf("error text holds %q: %s", s, form)
			}
		}
	}
}

func TestSendRequestShape(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*telegram.Config)
		msg  telegram.Message
		want string // the JSON body Telegram must receive
		raw  []string
	}{
		{
			name: "plain text to a private chat: chat_id is a number",
			msg:  telegram.Message{ChatID: fakeChat, Text: fakeText},
			want: `{"chat_id":5550100001,"text":"Hi Fake Player, your code is 000111"}`,
			raw:  []string{`"chat_id":5550100001,`},
		},
		{
			name: "supergroup id keeps its sign",
			msg:  telegram.Message{ChatID: fakeGroup, Text: "hello"},
			want: `{"chat_id":-1005550100001,"text":"hello"}`,
		},
		{
			name: "channel username is a string",
			msg:  telegram.Message{ChatID: "@fake_test_channel", Text: "hello"},
			want: `{"chat_id":"@fake_test_channel","text":"hello"}`,
		},
		{
			name: "HTML default from config; markup, quotes and unicode arrive unescaped",
			cfg:  func(c *telegram.Config) { c.ParseMode = telegram.ParseModeHTML },
			msg:  telegram.Message{ChatID: fakeChat, Text: "<b>Hi</b> &amp; \"welcome\"\n😀 Grüße\t\\"},
			want: `{"chat_id":5550100001,"text":"<b>Hi</b> &amp; \"welcome\"\n😀 Grüße\t\\","parse_mode":"HTML"}`,
			raw:  []string{`<b>Hi</b> &amp; \"welcome\"\n😀 Grüße\t\\`},
		},
		{
			name: "message asks for plain text over an HTML default",
			cfg:  func(c *telegram.Config) { c.ParseMode = telegram.ParseModeHTML },
			msg:  telegram.Message{ChatID: fakeChat, Text: "1 < 2", ParseMode: telegram.ParseModePlain},
			want: `{"chat_id":5550100001,"text":"1 < 2"}`,
		},
		{
			name: "message asks for MarkdownV2",
			msg:  telegram.Message{ChatID: fakeChat, Text: "*bold* \\_x\\_", ParseMode: telegram.ParseModeMarkdownV2},
			want: `{"chat_id":5550100001,"text":"*bold* \\_x\\_","parse_mode":"MarkdownV2"}`,
		},
		{
			name: "link previews disabled",
			cfg:  func(c *telegram.Config) { c.DisableWebPagePreview = true },
			msg:  telegram.Message{ChatID: fakeChat, Text: "see https://example.com/offer"},
			want: `{"chat_id":5550100001,"text":"see https://example.com/offer","link_preview_options":{"is_disabled":true}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bot := newFakeBot(t)
			c := newClient(t, bot.srv.URL, tt.cfg)
			res, err := c.Send(context.Background(), tt.msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if res.MessageID != 101 || !slices.Equal(res.MessageIDs, []int64{101}) {
				t.Errorf("Result = %+v, want message 101", res)
			}
			reqs := bot.requests()
			if len(reqs) != 1 {
				t.Fatalf("got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/bot"+fakeToken+"/sendMessage" || r.ContentType != "application/json" {
				t.Errorf("got %s %s (%s), want POST /bot<token>/sendMessage (application/json)", r.Method, r.Path, r.ContentType)
			}
			if got, want := r.body(t), decode(t, []byte(tt.want)); !reflect.DeepEqual(got, want) {
				t.Errorf("body\n got %s\nwant %s", r.Raw, tt.want)
			}
			for _, s := range tt.raw {
				if !bytes.Contains(r.Raw, []byte(s)) {
					t.Errorf("raw body %s lacks %s", r.Raw, s)
				}
			}
		})
	}
}

func TestSendBaseURLWithPath(t *testing.T) {
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		io.WriteString(w, `{"ok":true,"result":{"message_id":7}}`)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL+"/tg-proxy/", nil)
	if _, err := c.Send(context.Background(), telegram.Message{ChatID: fakeChat, Text: "x"}); err != nil {
		t.Fatal(err)
	}
	if want := "/tg-proxy/bot" + fakeToken + "/sendMessage"; path != want {
		t.Errorf("path %q, want %q", path, want)
	}
}

func utf16Len(s string) int { return len(utf16.Encode([]rune(s))) }

func TestSendSplitsLongTextInOrder(t *testing.T) {
	// Three paragraphs of 3000 units each: three messages, cut at the
	// paragraph breaks.
	para := func(c string) string { return strings.Repeat(c+" ", 1499) + c + c }
	text := para("a") + "\n" + para("b") + "\n" + para("c")
	// An astral rune counts two units: 2100 of them overflow one message
	// although they are only 2100 runes.
	emoji := strings.Repeat("😀", 2100)

	tests := []struct {
		name  string
		text  string
		mode  string
		parts []string
	}{
		{"plain paragraphs", text, "", []string{para("a"), para("b"), para("c")}},
		{"astral runes", emoji, "", []string{strings.Repeat("😀", 2048), strings.Repeat("😀", 52)}},
		{"html bold across the cut", "<b>" + strings.Repeat("x", 4000) + " " + strings.Repeat("y", 500) + "</b>", telegram.ParseModeHTML,
			[]string{"<b>" + strings.Repeat("x", 4000) + "</b>", "<b>" + strings.Repeat("y", 500) + "</b>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bot := newFakeBot(t)
			c := newClient(t, bot.srv.URL, nil)
			res, err := c.Send(context.Background(), telegram.Message{ChatID: fakeChat, Text: tt.text, ParseMode: tt.mode})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			reqs := bot.requests()
			var got []string
			for _, r := range reqs {
				b := r.body(t)
				got = append(got, b["text"].(string))
				if b["chat_id"] != json.Number(fakeChat) {
					t.Errorf("part went to chat %v", b["chat_id"])
				}
			}
			if !slices.Equal(got, tt.parts) {
				t.Errorf("parts differ: got %d parts of lengths %v", len(got), lens(got))
			}
			for i, p := range got {
				if n := utf16Len(p); n > telegram.MaxTextLen && tt.mode == "" {
					t.Errorf("part %d has %d UTF-16 units", i, n)
				}
			}
			want := make([]int64, len(tt.parts))
			for i := range want {
				want[i] = int64(101 + i)
			}
			if res.MessageID != 101 || !slices.Equal(res.MessageIDs, want) {
				t.Errorf("Result = %+v, want ids %v", res, want)
			}
		})
	}
}

func lens(parts []string) []int {
	var n []int
	for _, p := range parts {
		n = append(n, utf16Len(p))
	}
	return n
}

func TestSendClassifiesTelegramErrors(t *testing.T) {
	tests := []struct {
		name       string
		rep        reply
		temporary  bool
		code       string
		is         error
		retryAfter time.Duration
	}{
		{"429 is temporary with retry_after", reply{status: 429, body: fixture(t, "too_many_requests.json")}, true, "telegram_429", nil, 7 * time.Second},
		{"429 without parameters falls back to Retry-After", reply{status: 429, body: `{"ok":false,"error_code":429,"description":"Too Many Requests"}`, header: http.Header{"Retry-After": {"3"}}}, true, "telegram_429", nil, 3 * time.Second},
		{"500 is temporary", reply{status: 500, body: fixture(t, "internal_server_error.json")}, true, "telegram_500", nil, 0},
		{"a proxy's 502 page is temporary", reply{status: 502, body: fixture(t, "bad_gateway.html"), header: http.Header{"Retry-After": {"11"}}}, true, "http_502", telegram.ErrBadResponse, 11 * time.Second},
		{"chat not found is permanent", reply{status: 400, body: fixture(t, "chat_not_found.json")}, false, "telegram_400", telegram.ErrChatNotFound, 0},
		{"blocked bot is permanent", reply{status: 403, body: fixture(t, "bot_blocked.json")}, false, "telegram_403", telegram.ErrBotBlocked, 0},
		{"deactivated user is permanent", reply{status: 403, body: fixture(t, "user_deactivated.json")}, false, "telegram_403", telegram.ErrUserDeactivated, 0},
		{"kicked bot is permanent", reply{status: 403, body: fixture(t, "bot_kicked.json")}, false, "telegram_403", telegram.ErrBotKicked, 0},
		{"migrated group is permanent", reply{status: 400, body: fixture(t, "migrated.json")}, false, "telegram_400", telegram.ErrChatMigrated, 0},
		{"bad token is permanent", reply{status: 401, body: fixture(t, "unauthorized.json")}, false, "telegram_401", telegram.ErrUnauthorized, 0},
		{"other 400 is permanent", reply{status: 400, body: fixture(t, "cant_parse_entities.json")}, false, "telegram_400", nil, 0},
		{"2xx that is not JSON is permanent (may have been sent)", reply{status: 200, body: "<html>hello</html>"}, false, "http_200", telegram.ErrBadResponse, 0},
		{"ok without a message_id is permanent", reply{status: 200, body: fixture(t, "ok_without_message_id.json")}, false, "telegram_bad_response", telegram.ErrBadResponse, 0},
		{"redirect is not followed", reply{status: 307, header: http.Header{"Location": {"https://example.com/bot" + fakeToken + "/sendMessage"}}}, false, "http_307", telegram.ErrBadResponse, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bot := newFakeBot(t, tt.rep)
			c := newClient(t, bot.srv.URL, nil)
			res, err := c.Send(context.Background(), telegram.Message{ChatID: fakeChat, Text: fakeText})
			if err == nil {
				t.Fatalf("Send succeeded: %+v", res)
			}
			kind := adapters.ErrPermanent
			if tt.temporary {
				kind = adapters.ErrTemporary
			}
			if !errors.Is(err, kind) {
				t.Errorf("error %v is not %v", err, kind)
			}
			if got := adapters.Code(err); got != tt.code {
				t.Errorf("code %q, want %q", got, tt.code)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if got := adapters.RetryAfter(err); got != tt.retryAfter {
				t.Errorf("RetryAfter %v, want %v", got, tt.retryAfter)
			}
			if len(bot.requests()) != 1 {
				t.Errorf("got %d requests, want 1 (no retry inside Send, no redirect)", len(bot.requests()))
			}
			assertClean(t, err, "Bad Request", "Forbidden", "Too Many Requests", "blink", "nginx", "example.com")
		})
	}
}

func TestChatMigratedCarriesNewID(t *testing.T) {
	bot := newFakeBot(t, reply{status: 400, body: fixture(t, "migrated.json")})
	c := newClient(t, bot.srv.URL, nil)
	_, err := c.Send(context.Background(), telegram.Message{ChatID: fakeGroup, Text: fakeText})
	var me *telegram.ChatMigratedError
	if !errors.As(err, &me) {
		t.Fatalf("error %v holds no *ChatMigratedError", err)
	}
	if fmt.Sprint(me.ToChatID) != fakeNewChat {
		t.Errorf("ToChatID = %d, want %s", me.ToChatID, fakeNewChat)
	}
	assertClean(t, err)
}

func TestSendTransportErrors(t *testing.T) {
	// A port nothing listens on: take one and close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close()

	tests := []struct {
		name    string
		base    func(t *testing.T) string
		ctx     func() (context.Context, context.CancelFunc)
		timeout time.Duration
		code    string
		is      error
	}{
		{
			name: "connection refused",
			base: func(*testing.T) string { return deadURL },
			code: "telegram_network",
		},
		{
			name:    "Telegram too slow: Config.Timeout",
			base:    func(t *testing.T) string { return newFakeBot(t, reply{status: 200, delay: time.Second}).srv.URL },
			timeout: 50 * time.Millisecond,
			code:    "telegram_timeout",
			is:      context.DeadlineExceeded,
		},
		{
			name: "caller's deadline",
			base: func(t *testing.T) string { return newFakeBot(t, reply{status: 200, delay: time.Second}).srv.URL },
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			},
			code: "telegram_timeout",
			is:   context.DeadlineExceeded,
		},
		{
			name: "caller cancelled",
			base: func(*testing.T) string { return deadURL },
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			code: "telegram_canceled",
			is:   context.Canceled,
		},
		{
			name: "connection dropped without an answer",
			base: func(t *testing.T) string { return newFakeBot(t, reply{status: 0}).srv.URL },
			code: "telegram_network",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.base(t), func(c *telegram.Config) {
				if tt.timeout > 0 {
					c.Timeout = tt.timeout
				}
			})
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			_, err := c.Send(ctx, telegram.Message{ChatID: fakeChat, Text: fakeText})
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
			assertClean(t, err, "/bot", "/sendMessage", "http://")
		})
	}
}

func TestSendRejectsInvalidMessageWithoutSending(t *testing.T) {
	tests := []struct {
		name string
		msg  telegram.Message
	}{
		{"empty text", telegram.Message{ChatID: fakeChat}},
		{"blank text", telegram.Message{ChatID: fakeChat, Text: " \n\t "}},
		{"invalid UTF-8", telegram.Message{ChatID: fakeChat, Text: fakeText + "\xff"}},
		{"no chat id", telegram.Message{Text: fakeText}},
		{"chat id with a leading zero", telegram.Message{ChatID: "0" + fakeChat, Text: fakeText}},
		{"chat id out of int64 range", telegram.Message{ChatID: "99999999999999999999", Text: fakeText}},
		{"chat id with a path", telegram.Message{ChatID: fakeChat + "/../getMe", Text: fakeText}},
		{"unknown parse mode", telegram.Message{ChatID: fakeChat, Text: fakeText, ParseMode: "Markdown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bot := newFakeBot(t)
			c := newClient(t, bot.srv.URL, nil)
			_, err := c.Send(context.Background(), tt.msg)
			if !errors.Is(err, telegram.ErrInvalidMessage) || !errors.Is(err, adapters.ErrPermanent) {
				t.Fatalf("error %v, want a permanent ErrInvalidMessage", err)
			}
			if got := adapters.Code(err); got != "telegram_invalid_message" {
				t.Errorf("code %q", got)
			}
			if n := len(bot.requests()); n != 0 {
				t.Errorf("%d requests reached Telegram", n)
			}
			assertClean(t, err, "getMe")
		})
	}
}

func TestSendRefusesTextOverMaxParts(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{"longer than MaxParts full messages", strings.Repeat("a", telegram.MaxParts*telegram.MaxTextLen+1)},
		{"short lines that split into too many parts", strings.Repeat(strings.Repeat("a", 3000)+"\n", telegram.MaxParts+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bot := newFakeBot(t)
			c := newClient(t, bot.srv.URL, nil)
			_, err := c.Send(context.Background(), telegram.Message{ChatID: fakeChat, Text: tt.text})
			if !errors.Is(err, telegram.ErrTextTooLong) || !errors.Is(err, adapters.ErrPermanent) || adapters.Code(err) != "telegram_text_too_long" {
				t.Fatalf("error %v, want a permanent telegram_text_too_long", err)
			}
			if n := len(bot.requests()); n != 0 {
				t.Errorf("%d requests reached Telegram", n)
			}
		})
	}
	t.Run("exactly MaxParts is sent", func(t *testing.T) {
		bot := newFakeBot(t)
		c := newClient(t, bot.srv.URL, nil)
		text := strings.Repeat(strings.Repeat("a", 3000)+"\n", telegram.MaxParts)
		res, err := c.Send(context.Background(), telegram.Message{ChatID: fakeChat, Text: text})
		if err != nil || len(res.MessageIDs) != telegram.MaxParts {
			t.Fatalf("Send = %d ids, %v; want %d ids", len(res.MessageIDs), err, telegram.MaxParts)
		}
	})
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  telegram.Config
	}{
		{"no token", telegram.Config{}},
		{"token without secret", telegram.Config{Token: "5550100000"}},
		{"token with a slash", telegram.Config{Token: "5550100000:FAKE/../x"}},
		{"plain http to a remote host", telegram.Config{Token: fakeToken, BaseURL: "http://api.telegram.org"}},
		{"not a URL", telegram.Config{Token: fakeToken, BaseURL: "api.telegram.org"}},
		{"ftp", telegram.Config{Token: fakeToken, BaseURL: "ftp://api.telegram.org"}},
		{"query in base url", telegram.Config{Token: fakeToken, BaseURL: "https://api.telegram.org/?x=1"}},
		{"negative timeout", telegram.Config{Token: fakeToken, Timeout: -time.Second}},
		{"unknown parse mode", telegram.Config{Token: fakeToken, ParseMode: "html"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := telegram.New(tt.cfg, nil)
			if !errors.Is(err, telegram.ErrConfig) {
				t.Fatalf("New = %v, %v; want ErrConfig", c, err)
			}
			assertClean(t, err, "FAKE")
		})
	}
	for _, base := range []string{"", "https://api.telegram.org", "http://127.0.0.1:8081", "http://localhost:8081", "http://[::1]:8081"} {
		if _, err := telegram.New(telegram.Config{Token: fakeToken, BaseURL: base}, nil); err != nil {
			t.Errorf("base url %q: %v", base, err)
		}
	}
}

func TestConfigAndClientStringsHideToken(t *testing.T) {
	cfg := telegram.Config{Token: fakeToken, BaseURL: "https://api.telegram.org"}
	c, err := telegram.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprint(c), fmt.Sprintf("%v", []any{cfg, c})} {
		if strings.Contains(s, fakeSecret) {
			t.Errorf("%s holds the token", s)
		}
	}
}

func TestSendPartialFailureReturnsDeliveredParts(t *testing.T) {
	text := strings.Repeat("a", 4096) + "\n" + strings.Repeat("b", 4096) + "\n" + strings.Repeat("c", 10)
	bot := newFakeBot(t,
		reply{status: 200, body: `{"ok":true,"result":{"message_id":1}}`},
		reply{status: 403, body: fixture(t, "bot_blocked.json")},
	)
	c := newClient(t, bot.srv.URL, nil)
	res, err := c.Send(context.Background(), telegram.Message{ChatID: fakeChat, Text: text})
	if !errors.Is(err, telegram.ErrBotBlocked) {
		t.Fatalf("error %v, want ErrBotBlocked", err)
	}
	if !strings.Contains(err.Error(), "part 2 of 3") {
		t.Errorf("error %q does not say which part failed", err)
	}
	if !slices.Equal(res.MessageIDs, []int64{1}) {
		t.Errorf("Result %+v, want the first part's id", res)
	}
	if n := len(bot.requests()); n != 2 {
		t.Errorf("%d requests, want 2: nothing after the failed part", n)
	}
	assertClean(t, err)
}

func TestSendWaitsOutFloodLimitOnLaterPart(t *testing.T) {
	text := strings.Repeat("a", 4096) + "\n" + strings.Repeat("b", 10)
	flood := `{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}`

	t.Run("later part: waited out and resent alone", func(t *testing.T) {
		bot := newFakeBot(t,
			reply{status: 200, body: `{"ok":true,"result":{"message_id":1}}`},
			reply{status: 429, body: flood},
		)
		c := newClient(t, bot.srv.URL, nil)
		start := time.Now()
		res, err := c.Send(context.Background(), telegram.Message{ChatID: fakeChat, Text: text})
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if d := time.Since(start); d < time.Second {
			t.Errorf("resent after %v, before retry_after", d)
		}
		reqs := bot.requests()
		if len(reqs) != 3 {
			t.Fatalf("%d requests, want 3 (part 1, part 2 refused, part 2 again)", len(reqs))
		}
		if !bytes.Equal(reqs[1].Raw, reqs[2].Raw) {
			t.Errorf("resent part differs")
		}
		if !slices.Equal(res.MessageIDs, []int64{1, 103}) {
			t.Errorf("ids %v, want [1 103]", res.MessageIDs)
		}
	})
	t.Run("first part: returned to the caller at once", func(t *testing.T) {
		bot := newFakeBot(t, reply{status: 429, body: flood})
		c := newClient(t, bot.srv.URL, nil)
		_, err := c.Send(context.Background(), telegram.Message{ChatID: fakeChat, Text: text})
		if adapters.Code(err) != "telegram_429" || adapters.RetryAfter(err) != time.Second {
			t.Fatalf("error %v, want telegram_429 after 1s", err)
		}
		if n := len(bot.requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
	t.Run("later part: a hint beyond the caller's deadline is not waited for", func(t *testing.T) {
		bot := newFakeBot(t,
			reply{status: 200, body: `{"ok":true,"result":{"message_id":1}}`},
			reply{status: 429, body: flood},
		)
		c := newClient(t, bot.srv.URL, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		res, err := c.Send(ctx, telegram.Message{ChatID: fakeChat, Text: text})
		if adapters.Code(err) != "telegram_429" {
			t.Fatalf("error %v, want telegram_429", err)
		}
		if !slices.Equal(res.MessageIDs, []int64{1}) {
			t.Errorf("ids %v, want [1]", res.MessageIDs)
		}
	})
}

// TestErrorsHoldNoSecretsOrPersonalData drives every failure path of one
// client, with secrets and personal data in the message and in Telegram's
// replies, and checks none of it reaches an error's text.
func TestErrorsHoldNoSecretsOrPersonalData(t *testing.T) {
	echo := func(code int) string {
		return fmt.Sprintf(`{"ok":false,"error_code":%d,"description":"chat %s text %q token %s"}`, code, fakeChat, fakeText, fakeToken)
	}
	replies := []reply{
		{status: 400, body: echo(400)},
		{status: 403, body: echo(403)},
		{status: 429, body: echo(429)},
		{status: 500, body: echo(500)},
		{status: 502, body: "<p>" + fakeText + " " + fakeChat + "</p>"},
		{status: 400, body: fixture(t, "migrated.json")},
		{status: 401, body: fixture(t, "unauthorized.json")},
		{status: 200, body: fixture(t, "ok_without_message_id.json")},
		{status: 302, header: http.Header{"Location": {"/bot" + fakeToken + "/x?chat=" + fakeChat}}},
		{status: 0},
	}
	bot := newFakeBot(t, replies...)
	c := newClient(t, bot.srv.URL, nil)
	msg := telegram.Message{ChatID: fakeChat, Text: fakeText}
	for i := range replies {
		_, err := c.Send(context.Background(), msg)
		if err == nil {
			t.Fatalf("reply %d: no error", i)
		}
		assertClean(t, err)
	}
	slow := newClient(t, newFakeBot(t, reply{status: 200, delay: time.Second}).srv.URL, func(c *telegram.Config) { c.Timeout = 20 * time.Millisecond })
	_, err := slow.Send(context.Background(), msg)
	assertClean(t, err)
	dead := newClient(t, "http://127.0.0.1:1", nil)
	_, err = dead.Send(context.Background(), msg)
	assertClean(t, err)
	for _, bad := range []telegram.Message{{ChatID: fakeChat + "x", Text: fakeText}, {ChatID: fakeChat, Text: fakeText + "\xff"}} {
		_, err := c.Send(context.Background(), bad)
		assertClean(t, err)
	}
}
