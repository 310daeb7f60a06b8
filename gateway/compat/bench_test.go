package compat_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/blindpost/blindpost/gateway/compat"
)

type nopAcceptor struct{}

func (nopAcceptor) AcceptCompat(context.Context, *compat.Tenant, compat.Request) (string, error) {
	return "bpm_0123456789abcdefghijklmnop", nil
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the handler rather than a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

func benchServe(b *testing.B, path string, body []byte, log *slog.Logger) {
	h, err := compat.New(testTenants(), nopAcceptor{}, compat.Options{Log: log})
	if err != nil {
		b.Fatal(err)
	}
	// Check once that the request is accepted, so the loop measures the
	// whole path rather than an early refusal.
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.RemoteAddr, r.Header["Authorization"] = acmeIP+":1", []string{acmeSecret2}
	h.ServeHTTP(rec, r)
	if resp := decodeResponse(b, rec.Body.Bytes()); resp.ErrorCode != 0 {
		b.Fatalf("benchmark request refused: %+v", resp)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rd := bytes.NewReader(body)
		w := &discardWriter{h: http.Header{}}
		r := httptest.NewRequest(http.MethodPost, path, nil)
		r.RemoteAddr, r.Header["Authorization"] = acmeIP+":1", []string{acmeSecret2}
		for pb.Next() {
			rd.Reset(body)
			r.Body, r.ContentLength = io.NopCloser(rd), int64(len(body))
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	})
}

func BenchmarkServeEmail(b *testing.B) {
	benchServe(b, "/compat/email", mustRead(b, "email_full.json"), nil)
}

func BenchmarkServeEmailLogged(b *testing.B) {
	benchServe(b, "/compat/email", mustRead(b, "email_full.json"), slog.New(slog.NewJSONHandler(io.Discard, nil)))
}

func BenchmarkServeSMS(b *testing.B) {
	benchServe(b, "/compat/sms", mustRead(b, "sms_full.json"), nil)
}

func BenchmarkServeEmail64KiB(b *testing.B) {
	big := emailBody(func(m map[string]any) {
		m["body"] = "<p>" + string(bytes.Repeat([]byte("Lorem ipsum dolor sit amet. "), 64<<10/28)) + "</p>"
	})
	benchServe(b, "/compat/email", big, nil)
}
