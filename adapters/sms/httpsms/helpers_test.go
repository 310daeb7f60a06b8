package httpsms_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/sms"
	"github.com/blindpost/blindpost/adapters/sms/httpsms"
)

const (
	testTo   = "+15550100001"
	testFrom = "BRAND"
	testKey  = "k3y-from-the-environment"
)

// env is the lookup the tests give New in place of os.LookupEnv.
func env(name string) (string, bool) {
	v, ok := map[string]string{
		"SMS_API_KEY":        testKey,
		"SMS_RECEIPT_SECRET": "receipt-secret-0123456789",
		"SMS_RECEIPT_KEY":    "hmac-key-0123456789",
		"QUOTE_KEY":          `a"b\c`,
	}[name]
	return v, ok
}

// seen is what the fake provider saw of one request.
type seen struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

// fakeProvider records every request and answers with respond (default:
// 200 and testdata/send_ok.json).
type fakeProvider struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []seen
	respond http.HandlerFunc
}

func startProvider(t testing.TB, respond http.HandlerFunc) *fakeProvider {
	t.Helper()
	if respond == nil {
		ok := mustRead(t, "send_ok.json")
		respond = func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(ok)
		}
	}
	p := &fakeProvider{respond: respond}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.reqs = append(p.reqs, seen{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: b})
		p.mu.Unlock()
		p.respond(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *fakeProvider) requests() []seen {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]seen(nil), p.reqs...)
}

func (p *fakeProvider) last(t testing.TB) seen {
	t.Helper()
	reqs := p.requests()
	if len(reqs) == 0 {
		t.Fatal("the provider got no request")
	}
	return reqs[len(reqs)-1]
}

func mustRead(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonConfig is a Vonage-like JSON provider at baseURL.
func jsonConfig(t testing.TB, baseURL string) httpsms.Config {
	return httpsms.Config{
		URL:          baseURL + "/sms/json",
		Headers:      map[string]string{"Authorization": "Bearer ${SMS_API_KEY}", "X-Client": "blindpost"},
		ContentType:  "application/json",
		BodyTemplate: string(mustRead(t, "template_json.tmpl")),
		From:         testFrom,
		IDPointer:    "/messages/0/message-id",
		Timeout:      5 * time.Second,
	}
}

func mustNew(t testing.TB, cfg httpsms.Config) *httpsms.Client {
	t.Helper()
	c, err := httpsms.New(cfg, nil, env)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

type sinkRecorder struct {
	mu   sync.Mutex
	got  []sms.Receipt
	fail error
}

func (s *sinkRecorder) sink(_ context.Context, r sms.Receipt) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, r)
	return s.fail
}

func (s *sinkRecorder) receipts() []sms.Receipt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sms.Receipt(nil), s.got...)
}
