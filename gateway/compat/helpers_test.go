package compat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/blindpost/blindpost/gateway/compat"
)

// Secrets of the test tenants. gammaSecret belongs to a tenant that has the
// API disabled, so it must open nothing.
const (
	acmeSecret  = "acme-secret-0000000001"
	acmeSecret2 = "acme-secret-0000000002-rotated"
	betaSecret  = "beta-secret-0000000001"
	gammaSecret = "gamma-secret-000000001"
)

// Client addresses: acmeIP is allowed for acme, betaIP for beta, otherIP
// for nobody; proxyIP is a trusted reverse proxy.
const (
	acmeIP  = "203.0.113.10"
	betaIP  = "198.51.100.7"
	otherIP = "192.0.2.99"
	proxyIP = "10.0.0.2"
)

func testTenants() []*compat.Tenant {
	return []*compat.Tenant{
		{
			ID: "acme", Brand: "acme-casino",
			Secrets:       [][]byte{[]byte(acmeSecret), []byte(acmeSecret2)},
			AllowIPs:      []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:1::/48"), netip.MustParsePrefix("127.0.0.1/32")},
			CallbackAllow: []string{"https://cb.test/hooks", "http://127.0.0.1:8080/cb"},
			EmailEnabled:  true, SMSEnabled: true,
		},
		{
			ID: "beta", Brand: "beta-sports",
			Secrets:       [][]byte{[]byte(betaSecret)},
			AllowIPs:      []netip.Prefix{netip.MustParsePrefix(betaIP + "/32")},
			CallbackAllow: []string{"https://beta.example.com/"},
			EmailEnabled:  true,
		},
		{
			ID: "gamma", Brand: "gamma",
			Secrets:       [][]byte{[]byte(gammaSecret)},
			AllowIPs:      []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")},
			CallbackAllow: []string{"https://gamma.example.com/"},
		},
	}
}

type call struct {
	tenant  string
	brand   string
	secrets int
	req     compat.Request
}

// fakeAcceptor records what the handler passes on and answers with ext or
// err. The gateway's real Acceptor is tested end to end by the gateway.
type fakeAcceptor struct {
	mu    sync.Mutex
	calls []call
	ext   string
	err   error
}

func (f *fakeAcceptor) AcceptCompat(_ context.Context, t *compat.Tenant, r compat.Request) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{t.ID, t.Brand, len(t.Secrets), r})
	if f.err != nil {
		return "", f.err
	}
	if f.ext == "" {
		return "bpm_test0001", nil
	}
	return f.ext, nil
}

func (f *fakeAcceptor) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

type fixture struct {
	h   *compat.Handler
	acc *fakeAcceptor
	log *bytes.Buffer
}

func newFixture(t testing.TB, opts compat.Options) *fixture {
	t.Helper()
	f := &fixture{acc: &fakeAcceptor{}, log: &bytes.Buffer{}}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewJSONHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.TrustedProxies == nil {
		opts.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	}
	h, err := compat.New(testTenants(), f.acc, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.h = h
	return f
}

// call describes one HTTP request to the handler.
type req struct {
	method string // default POST
	path   string // default /compat/email
	auth   string // Authorization; default acmeSecret, "-" for none
	remote string // peer IP, default acmeIP
	xff    []string
	body   []byte
}

// do serves r and returns the decoded answer. It fails the test unless the
// HTTP status is 200 and the body is exactly one Response.
func (f *fixture) do(t testing.TB, r req) compat.Response {
	t.Helper()
	rec := f.serve(r)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP status %d, want 200 always", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return decodeResponse(t, rec.Body.Bytes())
}

func (f *fixture) serve(r req) *httptest.ResponseRecorder {
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.path == "" {
		r.path = "/compat/email"
	}
	if r.remote == "" {
		r.remote = acmeIP
	}
	hr := httptest.NewRequest(r.method, r.path, bytes.NewReader(r.body))
	hr.RemoteAddr = netip.AddrPortFrom(netip.MustParseAddr(r.remote), 40000).String()
	switch r.auth {
	case "":
		hr.Header.Set("Authorization", acmeSecret)
	case "-":
	default:
		hr.Header.Set("Authorization", r.auth)
	}
	for _, v := range r.xff {
		hr.Header.Add("X-Forwarded-For", v)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, hr)
	return rec
}

func decodeResponse(t testing.TB, b []byte) compat.Response {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var resp compat.Response
	if err := dec.Decode(&resp); err != nil {
		t.Fatalf("answer %q is not a Response: %v", b, err)
	}
	if resp.ErrorCode == 0 && (resp.ExtMessageID == "" || resp.ErrorMessage != "") {
		t.Fatalf("success answer %q must have ext_message_id and no error_message", b)
	}
	if resp.ErrorCode != 0 && (resp.ExtMessageID != "" || resp.ErrorMessage == "") {
		t.Fatalf("error answer %q must have error_message and no ext_message_id", b)
	}
	return resp
}

func mustRead(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// emailBody is a valid email request as a map, for tests that change one
// field; mutate may set a key to nil to send null, or delete it.
func emailBody(mutate func(m map[string]any)) []byte {
	m := map[string]any{
		"ext_user_id":            "u-1001",
		"from_email_address":     "noreply@example.com",
		"reply_to_email_address": "support@example.com",
		"subject":                "Subject",
		"body":                   "<p>Hi</p>",
		"text_body":              "Hi",
		"email_uid":              "e-1000",
		"callback_url":           "https://cb.test/hooks",
	}
	if mutate != nil {
		mutate(m)
	}
	b, _ := json.Marshal(m)
	return b
}

func smsBody(mutate func(m map[string]any)) []byte {
	m := map[string]any{
		"ext_user_id":  "u-1001",
		"from_number":  "+15550100001",
		"body":         "Hi",
		"im_uid":       "s-1000",
		"callback_url": "https://cb.test/hooks",
	}
	if mutate != nil {
		mutate(m)
	}
	b, _ := json.Marshal(m)
	return b
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
