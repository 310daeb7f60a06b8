package compat_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/blindpost/blindpost/gateway/compat"
)

// TestOverLoopback runs the handler behind a real HTTP server, so the peer
// address comes from a real connection and bodies are streamed.
func TestOverLoopback(t *testing.T) {
	f := newFixture(t, compat.Options{MaxBodyBytes: 4 << 10})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	post := func(path, auth string, body []byte, chunked bool) compat.Response {
		t.Helper()
		var r io.Reader = bytes.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // hides the length: sent chunked
		}
		hr, err := http.NewRequest(http.MethodPost, srv.URL+path, r)
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set("Authorization", auth)
		hr.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP %d", resp.StatusCode)
		}
		return decodeResponse(t, b)
	}
	// acme allows 127.0.0.1/32; its callback prefix on loopback is http.
	body := emailBody(func(m map[string]any) { m["callback_url"] = "http://127.0.0.1:8080/cb/e-1000" })
	if r := post("/compat/email", acmeSecret, body, false); r.ErrorCode != 0 {
		t.Fatalf("email: %+v", r)
	}
	if r := post("/compat/sms", acmeSecret2, smsBody(nil), true); r.ErrorCode != 0 {
		t.Fatalf("sms, chunked: %+v", r)
	}
	if r := post("/compat/email", betaSecret, body, false); r.ErrorCode != compat.CodeIPNotAllowed {
		t.Fatalf("beta from loopback: %+v", r)
	}
	big := bytes.Repeat([]byte("x"), 8<<10)
	if r := post("/compat/email", acmeSecret, big, true); r.ErrorCode != compat.CodeTooLarge {
		t.Fatalf("chunked body over the limit: %+v", r)
	}
	if n := len(f.acc.Calls()); n != 2 {
		t.Fatalf("%d Acceptor calls, want 2", n)
	}
}
