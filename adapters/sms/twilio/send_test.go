package twilio_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/sms"
	"github.com/blindpost/blindpost/adapters/sms/twilio"
)

func TestSendRequestShape(t *testing.T) {
	tests := []struct {
		name   string
		cfg    func(*twilio.Config)
		msg    sms.Message
		want   url.Values
		result sms.Result
	}{
		{
			name: "default sender and callback with ref",
			msg:  sms.Message{To: testTo, Body: "Your bonus is waiting", Ref: "msg-0001"},
			want: url.Values{
				"To":             {testTo},
				"From":           {testFrom},
				"Body":           {"Your bonus is waiting"},
				"StatusCallback": {publicCallback + "?ref=msg-0001"},
			},
		},
		{
			name: "message sender overrides the default",
			msg:  sms.Message{From: "BRAND", To: testTo, Body: "hi", Ref: "r"},
			want: url.Values{"To": {testTo}, "From": {"BRAND"}, "Body": {"hi"}, "StatusCallback": {publicCallback + "?ref=r"}},
		},
		{
			name: "messaging service without a sender",
			cfg:  func(c *twilio.Config) { c.From = ""; c.MessagingServiceSID = "MGdddddddddddddddddddddddddddddddd" },
			msg:  sms.Message{To: testTo, Body: "hi", Ref: "r"},
			want: url.Values{"To": {testTo}, "MessagingServiceSid": {"MGdddddddddddddddddddddddddddddddd"}, "Body": {"hi"}, "StatusCallback": {publicCallback + "?ref=r"}},
		},
		{
			name: "messaging service and sender",
			cfg:  func(c *twilio.Config) { c.MessagingServiceSID = "MGdddddddddddddddddddddddddddddddd" },
			msg:  sms.Message{To: testTo, Body: "hi"},
			want: url.Values{"To": {testTo}, "From": {testFrom}, "MessagingServiceSid": {"MGdddddddddddddddddddddddddddddddd"}, "Body": {"hi"}, "StatusCallback": {publicCallback}},
		},
		{
			name: "no callback configured",
			cfg:  func(c *twilio.Config) { c.StatusCallbackURL = "" },
			msg:  sms.Message{To: testTo, Body: "hi", Ref: "r"},
			want: url.Values{"To": {testTo}, "From": {testFrom}, "Body": {"hi"}},
		},
		{
			name: "ref is query-escaped and appended to an existing query",
			cfg:  func(c *twilio.Config) { c.StatusCallbackURL = publicCallback + "?tenant=a" },
			msg:  sms.Message{To: testTo, Body: "hi", Ref: "a&b=c d/é"},
			want: url.Values{"To": {testTo}, "From": {testFrom}, "Body": {"hi"}, "StatusCallback": {publicCallback + "?tenant=a&ref=a%26b%3Dc+d%2F%C3%A9"}},
		},
		{
			name: "body with form metacharacters and unicode arrives intact",
			msg:  sms.Message{To: testTo, Body: "50% off & more = 🎰\n\"quoted\" +plus", Ref: "r"},
			want: url.Values{"To": {testTo}, "From": {testFrom}, "Body": {"50% off & more = 🎰\n\"quoted\" +plus"}, "StatusCallback": {publicCallback + "?ref=r"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startTwilio(t, nil)
			cfg := baseConfig(srv.URL)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c := mustNew(t, cfg)
			res, err := c.Send(context.Background(), tt.msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			want := sms.Result{ProviderID: "SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Parts: 2}
			if !reflect.DeepEqual(res, want) {
				t.Errorf("result = %+v, want %+v", res, want)
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("Twilio got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost {
				t.Errorf("method = %s, want POST", r.Method)
			}
			if want := "/2010-04-01/Accounts/" + testSID + "/Messages.json"; r.Path != want {
				t.Errorf("path = %s, want %s", r.Path, want)
			}
			if !r.BasicAuth || r.User != testSID || r.Pass != testToken || r.AuthorizationCount != 1 {
				t.Errorf("basic auth = %v %q %q (%d headers), want %q:%q", r.BasicAuth, r.User, r.Pass, r.AuthorizationCount, testSID, testToken)
			}
			if r.ContentType != "application/x-www-form-urlencoded" {
				t.Errorf("content type = %q", r.ContentType)
			}
			if r.Accept != "application/json" {
				t.Errorf("accept = %q", r.Accept)
			}
			if !reflect.DeepEqual(r.Form, tt.want) {
				t.Errorf("form =\n%v\nwant\n%v", r.Form, tt.want)
			}
		})
	}
}

func TestSendFailureClassification(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name       string
		status     int
		fixture    string // testdata file for the body; "" means body
		body       string
		retryAfter string
		location   string
		wantCode   string
		wantTemp   bool
		wantAfter  time.Duration
	}{
		{name: "invalid number is permanent", status: 400, fixture: "error_21211.json", wantCode: "twilio_21211"},
		{name: "bad credentials are permanent", status: 401, fixture: "error_20003.json", wantCode: "twilio_20003"},
		{name: "429 is temporary with Retry-After seconds", status: 429, fixture: "error_20429.json", retryAfter: "7", wantCode: "twilio_20429", wantTemp: true, wantAfter: 7 * time.Second},
		{name: "full sender queue is temporary despite 400", status: 400, fixture: "error_21611.json", wantCode: "twilio_21611", wantTemp: true},
		{name: "500 with Twilio code", status: 500, fixture: "error_20500.json", wantCode: "twilio_20500", wantTemp: true},
		{name: "503 without JSON and a Retry-After date", status: 503, body: "<html>down</html>", retryAfter: now.Add(90 * time.Second).Format(http.TimeFormat), wantCode: "http_503", wantTemp: true, wantAfter: 90 * time.Second},
		{name: "502 with empty body", status: 502, wantCode: "http_502", wantTemp: true},
		{name: "absurd Retry-After is ignored", status: 429, retryAfter: "99999999", wantCode: "http_429", wantTemp: true},
		{name: "404 without JSON is permanent", status: 404, body: "not found", wantCode: "http_404"},
		{name: "redirect is not followed", status: 302, location: "/elsewhere", wantCode: "http_302"},
		{name: "created but already failed", status: 201, fixture: "message_failed.json", wantCode: "twilio_30007"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			if tt.fixture != "" {
				body = mustRead(t, tt.fixture)
			}
			srv := startTwilio(t, func(w http.ResponseWriter, _ *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				if tt.location != "" {
					w.Header().Set("Location", tt.location)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				w.Write(body)
			})
			cfg := baseConfig(srv.URL)
			cfg.Now = func() time.Time { return now }
			c := mustNew(t, cfg)
			_, err := c.Send(context.Background(), sms.Message{To: testTo, Body: "hi", Ref: "r"})
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			if got := adapters.Code(err); got != tt.wantCode {
				t.Errorf("code = %q, want %q", got, tt.wantCode)
			}
			if got := errors.Is(err, adapters.ErrTemporary); got != tt.wantTemp {
				t.Errorf("temporary = %v, want %v (%v)", got, tt.wantTemp, err)
			}
			if got := errors.Is(err, adapters.ErrPermanent); got == tt.wantTemp {
				t.Errorf("permanent = %v, want %v", got, !tt.wantTemp)
			}
			if got := adapters.RetryAfter(err); got != tt.wantAfter {
				t.Errorf("retry after = %v, want %v", got, tt.wantAfter)
			}
			if n := len(srv.requests()); n != 1 {
				t.Errorf("Twilio got %d requests, want 1 (no redirect, no retry)", n)
			}
		})
	}
}

func TestSendAcceptedWithUnreadableBody(t *testing.T) {
	// Twilio said 201: the message is queued. Failing here would make the
	// gateway send it again.
	for _, body := range []string{"", "not json", `{"sid": 12}`, strings.Repeat("x", 1<<20)} {
		srv := startTwilio(t, func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(body))
		})
		c := mustNew(t, baseConfig(srv.URL))
		res, err := c.Send(context.Background(), sms.Message{To: testTo, Body: "hi"})
		if err != nil {
			t.Errorf("body %.10q: Send: %v", body, err)
		}
		if res.ProviderID != "" {
			t.Errorf("body %.10q: provider id = %q, want none", body, res.ProviderID)
		}
	}
}

func TestSendNumSegmentsAsNumber(t *testing.T) {
	srv := startTwilio(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"sid":"SMeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee","status":"accepted","num_segments":3,"error_code":null}`))
	})
	res, err := mustNew(t, baseConfig(srv.URL)).Send(context.Background(), sms.Message{To: testTo, Body: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ProviderID != "SMeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee" || res.Parts != 3 {
		t.Errorf("result = %+v", res)
	}
}

func TestSendTransportFailures(t *testing.T) {
	t.Run("connection refused is temporary", func(t *testing.T) {
		srv := startTwilio(t, nil)
		cfg := baseConfig(srv.URL)
		srv.Close()
		_, err := mustNew(t, cfg).Send(context.Background(), sms.Message{To: testTo, Body: "hi"})
		assertTemporary(t, err, "twilio_network")
	})
	t.Run("time-out is temporary", func(t *testing.T) {
		release := make(chan struct{})
		srv := startTwilio(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		cfg := baseConfig(srv.URL)
		cfg.Timeout = 50 * time.Millisecond
		start := time.Now()
		_, err := mustNew(t, cfg).Send(context.Background(), sms.Message{To: testTo, Body: "hi"})
		assertTemporary(t, err, "twilio_timeout")
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Send took %v with a 50ms timeout", d)
		}
	})
	t.Run("caller's deadline is honoured", func(t *testing.T) {
		release := make(chan struct{})
		srv := startTwilio(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := mustNew(t, baseConfig(srv.URL)).Send(ctx, sms.Message{To: testTo, Body: "hi"})
		assertTemporary(t, err, "twilio_timeout")
	})
	t.Run("canceled context is temporary", func(t *testing.T) {
		srv := startTwilio(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := mustNew(t, baseConfig(srv.URL)).Send(ctx, sms.Message{To: testTo, Body: "hi"})
		assertTemporary(t, err, "twilio_canceled")
		if n := len(srv.requests()); n != 0 {
			t.Errorf("Twilio got %d requests after cancel", n)
		}
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
	srv := startTwilio(t, nil)
	c := mustNew(t, baseConfig(srv.URL))
	for _, m := range []sms.Message{{Body: "hi"}, {To: testTo}} {
		_, err := c.Send(context.Background(), m)
		if !errors.Is(err, twilio.ErrInvalidMessage) || !errors.Is(err, adapters.ErrPermanent) || adapters.Code(err) != "invalid_message" {
			t.Errorf("Send(%+v) = %v, want permanent ErrInvalidMessage", m, err)
		}
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("Twilio got %d requests for invalid messages", n)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*twilio.Config)
	}{
		{"no account sid", func(c *twilio.Config) { c.AccountSID = "" }},
		{"no auth token", func(c *twilio.Config) { c.AuthToken = "" }},
		{"account sid with a slash", func(c *twilio.Config) { c.AccountSID = "AC/../x" }},
		{"no sender and no service", func(c *twilio.Config) { c.From = "" }},
		{"base url not http", func(c *twilio.Config) { c.BaseURL = "ftp://api.twilio.com" }},
		{"base url relative", func(c *twilio.Config) { c.BaseURL = "/api" }},
		{"base url with credentials", func(c *twilio.Config) { c.BaseURL = "https://u:p@api.twilio.test" }},
		{"callback relative", func(c *twilio.Config) { c.StatusCallbackURL = "/receipts" }},
		{"callback with fragment", func(c *twilio.Config) { c.StatusCallbackURL = publicCallback + "#x" }},
		{"callback with credentials", func(c *twilio.Config) { c.StatusCallbackURL = "https://u:p@gateway.example/r" }},
		{"callback with a ref already", func(c *twilio.Config) { c.StatusCallbackURL = publicCallback + "?ref=x" }},
		{"callback with empty query", func(c *twilio.Config) { c.StatusCallbackURL = publicCallback + "?" }},
		{"negative timeout", func(c *twilio.Config) { c.Timeout = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig("https://api.twilio.com")
			tt.edit(&cfg)
			c, err := twilio.New(cfg, nil)
			if !errors.Is(err, twilio.ErrConfig) {
				t.Fatalf("New = %v, %v; want ErrConfig", c, err)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("config error leaks the auth token: %v", err)
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		if _, err := twilio.New(twilio.Config{AccountSID: testSID, AuthToken: testToken, From: testFrom}, nil); err != nil {
			t.Errorf("minimal config: %v", err)
		}
	})
}
