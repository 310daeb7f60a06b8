package twilio_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/sms"
)

// TestErrorsHoldNoPII drives every error path of Send with a fake Twilio
// that echoes the recipient and the text back, as Twilio's error messages
// do, and checks that no error's text holds the number, the body or any of
// the answer's text.
func TestErrorsHoldNoPII(t *testing.T) {
	const (
		number = "+15550100987"
		body   = "SECRET-BODY your code is 424242"
		echo   = "ECHOED-PROVIDER-TEXT"
	)
	echoing := func(status int, extra string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(status)
			w.Write([]byte(`{"code": 21211, "message": "` + echo + ` ` + r.PostForm.Get("To") + ` ` + r.PostForm.Get("Body") + `", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400` + extra + `}`))
		}
	}
	tests := []struct {
		name    string
		respond http.HandlerFunc
		closed  bool
		timeout time.Duration
		cancel  bool
		msg     sms.Message
	}{
		{name: "400 with Twilio error", respond: echoing(400, "")},
		{name: "429", respond: echoing(429, "")},
		{name: "500", respond: echoing(500, "")},
		{name: "3xx", respond: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/"+number+"?"+body, http.StatusFound)
		}},
		{name: "non-JSON error", respond: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, echo+" "+r.PostForm.Get("To")+" "+r.PostForm.Get("Body"), http.StatusBadRequest)
		}},
		{name: "created but failed", respond: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"sid":"SM1","status":"failed","error_code":30007,"error_message":"` + echo + ` ` + r.PostForm.Get("To") + `","to":"` + r.PostForm.Get("To") + `"}`))
		}},
		{name: "connection refused", closed: true},
		{name: "time-out", timeout: 30 * time.Millisecond, respond: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }},
		{name: "canceled", cancel: true},
		{name: "no recipient", msg: sms.Message{Body: body, Ref: "r"}},
		{name: "no body", msg: sms.Message{To: number, Ref: "r"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startTwilio(t, tt.respond)
			cfg := baseConfig(srv.URL)
			if tt.timeout > 0 {
				cfg.Timeout = tt.timeout
			}
			if tt.closed {
				srv.Close()
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
			for _, secret := range []string{number, "0100987", body, "424242", echo, testToken} {
				if strings.Contains(text, secret) {
					t.Errorf("error %q holds %q", text, secret)
				}
			}
		})
	}
}
