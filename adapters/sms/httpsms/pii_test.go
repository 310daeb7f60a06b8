package httpsms_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/sms"
)

// TestErrorsHoldNoPII drives every error path of Send with a provider that
// echoes the request back, and checks that no error's text holds the
// number, the body, the provider's text or the key from the environment
// (which sits in the URL, a header and the body).
func TestErrorsHoldNoPII(t *testing.T) {
	const (
		number = "+15550100987"
		body   = "SECRET-BODY your code is 424242"
		echo   = "ECHOED-PROVIDER-TEXT"
	)
	echoing := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(status)
			w.Write([]byte(`{"error":"` + echo + ` to ` + number + `: ` + body + `","request":` + mustJSONString(r) + `}`))
		}
	}
	tests := []struct {
		name    string
		respond http.HandlerFunc
		success []int
		closed  bool
		timeout time.Duration
		cancel  bool
		msg     sms.Message
	}{
		{name: "400", respond: echoing(400)},
		{name: "429", respond: echoing(429)},
		{name: "503", respond: echoing(503)},
		{name: "2xx outside the success set", respond: echoing(200), success: []int{202}},
		{name: "redirect", respond: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/"+number+"/"+echo, http.StatusFound)
		}},
		{name: "connection refused", closed: true},
		{name: "time-out", timeout: 30 * time.Millisecond, respond: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }},
		{name: "canceled", cancel: true},
		{name: "no recipient", msg: sms.Message{Body: body}},
		{name: "no body", msg: sms.Message{To: number}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProvider(t, tt.respond)
			cfg := jsonConfig(t, p.URL)
			cfg.URL += "?api_key=${SMS_API_KEY}"
			cfg.SuccessStatuses = tt.success
			if tt.timeout > 0 {
				cfg.Timeout = tt.timeout
			}
			if tt.closed {
				p.Close()
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			msg := tt.msg
			if msg == (sms.Message{}) {
				msg = sms.Message{To: number, Body: body, Ref: "r"}
			}
			_, err := mustNew(t, cfg).Send(ctx, msg)
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			text := err.Error()
			for _, secret := range []string{number, "0100987", body, "424242", echo, testKey} {
				if strings.Contains(text, secret) {
					t.Errorf("error %q holds %q", text, secret)
				}
			}
		})
	}
}

func mustJSONString(r *http.Request) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range r.URL.String() {
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
	return b.String()
}
