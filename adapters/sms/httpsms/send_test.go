package httpsms_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/sms"
	"github.com/blindpost/blindpost/adapters/sms/httpsms"
)

// hostileValues are bodies (and refs) that would break a template filled
// in by plain string substitution.
var hostileValues = []struct {
	name, value string
}{
	{"plain", "Your weekly bonus is waiting"},
	{"quotes", `he said "hi" and 'bye'`},
	{"json injection", `", "to": "+15550100999", "x": "`},
	{"backslashes", `C:\path\to\ \" \\ \u0041`},
	{"control characters", "nul\x00 bell\x07 bs\b ff\f nl\n cr\r tab\t esc\x1b us\x1f del\x7f"},
	{"line and paragraph separators", "a\u2028b\u2029c"},
	{"emoji and astral plane", "🎰 spins 👩‍👩‍👧 𝄞"},
	{"form metacharacters", "50% off & more = win + a?b#c;d"},
	{"template syntax in a value", "{{to}} ${SMS_API_KEY} }}"},
	{"non-latin scripts", "Привет 你好 مرحبا"},
	{"empty ref", ""},
}

func TestSendJSONEscaping(t *testing.T) {
	for _, tt := range hostileValues {
		t.Run(tt.name, func(t *testing.T) {
			p := startProvider(t, nil)
			c := mustNew(t, jsonConfig(t, p.URL))
			body := tt.value
			if body == "" {
				body = "x"
			}
			if _, err := c.Send(context.Background(), sms.Message{To: testTo, Body: body, Ref: tt.value}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := p.last(t)
			if !json.Valid(got.Body) {
				t.Fatalf("the provider got invalid JSON: %q", got.Body)
			}
			var doc struct {
				From, To, Text string
				Ref            string `json:"client-ref"`
				Meta           map[string]string
			}
			dec := json.NewDecoder(strings.NewReader(string(got.Body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&doc); err != nil {
				t.Fatalf("decode %q: %v", got.Body, err)
			}
			if doc.To != testTo || doc.From != testFrom || doc.Text != body || doc.Ref != tt.value {
				t.Errorf("provider got to=%q from=%q text=%q ref=%q; want %q %q %q %q", doc.To, doc.From, doc.Text, doc.Ref, testTo, testFrom, body, tt.value)
			}
			if want := "prefix " + tt.value + " suffix"; doc.Meta["note"] != want || doc.Meta["channel"] != "sms" || len(doc.Meta) != 2 {
				t.Errorf("meta = %q, want channel sms and note %q", doc.Meta, want)
			}
			if strings.Contains(string(got.Body), "\u2028") || strings.Contains(string(got.Body), "\u2029") {
				t.Errorf("U+2028/U+2029 sent unescaped: %q", got.Body)
			}
		})
	}
}

func TestSendJSONInvalidUTF8BecomesReplacementCharacter(t *testing.T) {
	p := startProvider(t, nil)
	c := mustNew(t, jsonConfig(t, p.URL))
	if _, err := c.Send(context.Background(), sms.Message{To: testTo, Body: "bad \xff\xfe byte"}); err != nil {
		t.Fatal(err)
	}
	var doc struct{ Text string }
	if err := json.Unmarshal(p.last(t).Body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Text != "bad \ufffd\ufffd byte" {
		t.Errorf("text = %q", doc.Text)
	}
}

func TestSendFormEscaping(t *testing.T) {
	for _, tt := range hostileValues {
		t.Run(tt.name, func(t *testing.T) {
			p := startProvider(t, nil)
			cfg := jsonConfig(t, p.URL)
			cfg.ContentType = "application/x-www-form-urlencoded"
			cfg.BodyTemplate = string(mustRead(t, "template_form.tmpl"))
			c := mustNew(t, cfg)
			body := tt.value
			if body == "" {
				body = "x"
			}
			if _, err := c.Send(context.Background(), sms.Message{From: "+15550100000", To: testTo, Body: body, Ref: tt.value}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := p.last(t)
			if ct := got.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
				t.Errorf("content type = %q", ct)
			}
			form, err := url.ParseQuery(string(got.Body))
			if err != nil {
				t.Fatalf("provider got an invalid form %q: %v", got.Body, err)
			}
			want := url.Values{
				"api_key":    {testKey},
				"from":       {"+15550100000"},
				"to":         {testTo},
				"text":       {body},
				"client-ref": {tt.value},
			}
			if !reflect.DeepEqual(form, want) {
				t.Errorf("form =\n%q\nwant\n%q", form, want)
			}
		})
	}
}

func TestSendRequestShape(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(*httpsms.Config)
		wantPath  string
		wantQuery string
		wantMeth  string
	}{
		{name: "defaults to POST", wantPath: "/sms/json", wantMeth: http.MethodPost},
		{name: "PUT", edit: func(c *httpsms.Config) { c.Method = "put" }, wantPath: "/sms/json", wantMeth: http.MethodPut},
		{name: "key in the query from the environment", edit: func(c *httpsms.Config) { c.URL += "?api_key=${SMS_API_KEY}&v=2" }, wantPath: "/sms/json", wantQuery: "api_key=" + testKey + "&v=2", wantMeth: http.MethodPost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProvider(t, nil)
			cfg := jsonConfig(t, p.URL)
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			res, err := mustNew(t, cfg).Send(context.Background(), sms.Message{To: testTo, Body: "hi", Ref: "msg-0001"})
			if err != nil {
				t.Fatal(err)
			}
			if res.ProviderID != "0A0000000123ABCD1" {
				t.Errorf("provider id = %q", res.ProviderID)
			}
			got := p.last(t)
			if got.Method != tt.wantMeth || got.Path != tt.wantPath || got.RawQuery != tt.wantQuery {
				t.Errorf("request = %s %s?%s, want %s %s?%s", got.Method, got.Path, got.RawQuery, tt.wantMeth, tt.wantPath, tt.wantQuery)
			}
			for name, want := range map[string]string{
				"Authorization": "Bearer " + testKey,
				"X-Client":      "blindpost",
				"Content-Type":  "application/json",
				"Accept":        "application/json",
			} {
				if v := got.Header.Values(name); len(v) != 1 || v[0] != want {
					t.Errorf("header %s = %q, want %q", name, v, want)
				}
			}
		})
	}
}

func TestSendKeyInJSONBody(t *testing.T) {
	p := startProvider(t, nil)
	cfg := jsonConfig(t, p.URL)
	cfg.BodyTemplate = `{"api_key":"${SMS_API_KEY}","quoted":"${QUOTE_KEY}","to":"{{to}}","text":"{{body}}"}`
	if _, err := mustNew(t, cfg).Send(context.Background(), sms.Message{To: testTo, Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	var doc map[string]string
	if err := json.Unmarshal(p.last(t).Body, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"api_key": testKey, "quoted": `a"b\c`, "to": testTo, "text": "hi"}
	if !reflect.DeepEqual(doc, want) {
		t.Errorf("body = %q, want %q", doc, want)
	}
}

func TestSendIDPointer(t *testing.T) {
	tests := []struct {
		name, pointer, answer, want string
	}{
		{"nested array", "/messages/0/message-id", string(mustRead(t, "send_ok.json")), "0A0000000123ABCD1"},
		{"top level", "/id", `{"id":"abc"}`, "abc"},
		{"number", "/id", `{"id":12345678901234567890}`, "12345678901234567890"},
		{"escaped tokens", "/a~1b/m~0n", `{"a/b":{"m~n":"esc"}}`, "esc"},
		{"missing", "/nope", `{"id":"abc"}`, ""},
		{"object is not an id", "/id", `{"id":{"x":1}}`, ""},
		{"index out of range", "/messages/1/message-id", string(mustRead(t, "send_ok.json")), ""},
		{"not JSON", "/id", `OK: queued`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProvider(t, func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(tt.answer)) })
			cfg := jsonConfig(t, p.URL)
			cfg.IDPointer = tt.pointer
			res, err := mustNew(t, cfg).Send(context.Background(), sms.Message{To: testTo, Body: "hi"})
			if err != nil {
				t.Fatalf("Send: %v (an unreadable 2xx is still success)", err)
			}
			if res.ProviderID != tt.want {
				t.Errorf("provider id = %q, want %q", res.ProviderID, tt.want)
			}
		})
	}
}

func TestSendFailureClassification(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name       string
		status     int
		success    []int
		retryAfter string
		wantCode   string
		wantTemp   bool
		wantAfter  time.Duration
		wantOK     bool
	}{
		{name: "200 is success by default", status: 200, wantOK: true},
		{name: "202 is success by default", status: 202, wantOK: true},
		{name: "202 when only 201 counts", status: 202, success: []int{201}, wantCode: "http_202"},
		{name: "201 in the configured set", status: 201, success: []int{200, 201}, wantOK: true},
		{name: "400 permanent", status: 400, wantCode: "http_400"},
		{name: "401 permanent", status: 401, wantCode: "http_401"},
		{name: "422 permanent", status: 422, wantCode: "http_422"},
		{name: "429 temporary with seconds", status: 429, retryAfter: "30", wantCode: "http_429", wantTemp: true, wantAfter: 30 * time.Second},
		{name: "503 temporary with a date", status: 503, retryAfter: now.Add(2 * time.Minute).Format(http.TimeFormat), wantCode: "http_503", wantTemp: true, wantAfter: 2 * time.Minute},
		{name: "500 temporary", status: 500, wantCode: "http_500", wantTemp: true},
		{name: "redirect not followed", status: 307, wantCode: "http_307"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProvider(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				if tt.status/100 == 3 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(`{"error":"nope"}`))
			})
			cfg := jsonConfig(t, p.URL)
			cfg.SuccessStatuses = tt.success
			cfg.Now = func() time.Time { return now }
			_, err := mustNew(t, cfg).Send(context.Background(), sms.Message{To: testTo, Body: "hi"})
			if n := len(p.requests()); n != 1 {
				t.Errorf("provider got %d requests, want 1", n)
			}
			if tt.wantOK {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if got := adapters.Code(err); got != tt.wantCode {
				t.Errorf("code = %q, want %q", got, tt.wantCode)
			}
			if errors.Is(err, adapters.ErrTemporary) != tt.wantTemp || errors.Is(err, adapters.ErrPermanent) == tt.wantTemp {
				t.Errorf("err = %v, want temporary=%v", err, tt.wantTemp)
			}
			if !errors.Is(err, httpsms.ErrRejected) {
				t.Errorf("err = %v, want ErrRejected in the chain", err)
			}
			if got := adapters.RetryAfter(err); got != tt.wantAfter {
				t.Errorf("retry after = %v, want %v", got, tt.wantAfter)
			}
		})
	}
}

func TestSendTransportFailures(t *testing.T) {
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	t.Run("connection refused", func(t *testing.T) {
		p := startProvider(t, nil)
		cfg := jsonConfig(t, p.URL)
		p.Close()
		_, err := mustNew(t, cfg).Send(context.Background(), sms.Message{To: testTo, Body: "hi"})
		assertTemporary(t, err, "http_network")
	})
	t.Run("adapter time-out", func(t *testing.T) {
		p := startProvider(t, hang)
		cfg := jsonConfig(t, p.URL)
		cfg.Timeout = 50 * time.Millisecond
		start := time.Now()
		_, err := mustNew(t, cfg).Send(context.Background(), sms.Message{To: testTo, Body: "hi"})
		assertTemporary(t, err, "http_timeout")
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Send took %v", d)
		}
	})
	t.Run("caller's deadline", func(t *testing.T) {
		p := startProvider(t, hang)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := mustNew(t, jsonConfig(t, p.URL)).Send(ctx, sms.Message{To: testTo, Body: "hi"})
		assertTemporary(t, err, "http_timeout")
	})
	t.Run("canceled", func(t *testing.T) {
		p := startProvider(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := mustNew(t, jsonConfig(t, p.URL)).Send(ctx, sms.Message{To: testTo, Body: "hi"})
		assertTemporary(t, err, "http_canceled")
	})
}

func assertTemporary(t *testing.T, err error, code string) {
	t.Helper()
	if !errors.Is(err, adapters.ErrTemporary) {
		t.Fatalf("err = %v, want temporary", err)
	}
	if got := adapters.Code(err); got != code {
		t.Errorf("code = %q, want %q", got, code)
	}
}

func TestSendInvalidMessage(t *testing.T) {
	p := startProvider(t, nil)
	c := mustNew(t, jsonConfig(t, p.URL))
	for _, m := range []sms.Message{{Body: "hi"}, {To: testTo}} {
		_, err := c.Send(context.Background(), m)
		if !errors.Is(err, httpsms.ErrInvalidMessage) || !errors.Is(err, adapters.ErrPermanent) || adapters.Code(err) != "invalid_message" {
			t.Errorf("Send(%+v) = %v", m, err)
		}
	}
	if n := len(p.requests()); n != 0 {
		t.Errorf("provider got %d requests", n)
	}
}
