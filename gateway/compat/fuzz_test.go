package compat_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/gateway/compat"
)

// canaryWriter remembers whether a log line contained "canary", without
// keeping the lines (a fuzzer writes millions).
type canaryWriter struct{ seen bool }

func (w *canaryWriter) Write(b []byte) (int, error) {
	w.seen = w.seen || bytes.Contains(bytes.ToLower(b), []byte("canary"))
	return len(b), nil
}

// FuzzServe feeds arbitrary bodies to both endpoints: the answer is always
// HTTP 200 with one well-formed Response, and never quotes the body (the
// canary, wherever the fuzzer puts it, does not come back).
func FuzzServe(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte(`{"ext_user_id":"canary","ext_user_id":"canary"}`), false)
	logged := &canaryWriter{}
	fx := newFixture(f, compat.Options{MaxBodyBytes: 64 << 10, Log: slog.New(slog.NewJSONHandler(logged, nil))})
	f.Fuzz(func(t *testing.T, body []byte, sms bool) {
		path := "/compat/email"
		if sms {
			path = "/compat/sms"
		}
		rec := fx.serve(req{path: path, body: body})
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d", rec.Code)
		}
		resp := decodeResponse(t, rec.Body.Bytes())
		if resp.ErrorCode < compat.CodeOK || resp.ErrorCode > compat.CodeInternal {
			t.Fatalf("error_code %d", resp.ErrorCode)
		}
		if strings.Contains(strings.ToLower(resp.ErrorMessage), "canary") {
			t.Fatalf("answer %q quotes the body", resp.ErrorMessage)
		}
		if logged.seen {
			t.Fatalf("log quotes the body")
		}
	})
}
