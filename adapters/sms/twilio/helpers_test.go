package twilio_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/sms"
	"github.com/blindpost/blindpost/adapters/sms/twilio"
)

const (
	testSID   = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testToken = "test-auth-token-0123456789abcdef"
	testFrom  = "+15550100000"
	testTo    = "+15550100001"
	// publicCallback is where Twilio would reach the gateway; the tests'
	// handlers listen on loopback, so this also shows the Host header is
	// not what the signature is checked against.
	publicCallback = "https://gateway.example/receipts/twilio"
)

// recorded is what the fake Twilio saw of one request.
type recorded struct {
	Method, Path       string
	User, Pass         string
	BasicAuth          bool
	ContentType        string
	Accept             string
	Form               url.Values
	AuthorizationCount int
}

// fakeTwilio speaks the Messages resource: it records each create request
// and answers with respond (default: 201 and testdata/message_created.json).
type fakeTwilio struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	respond http.HandlerFunc
}

func startTwilio(t testing.TB, respond http.HandlerFunc) *fakeTwilio {
	t.Helper()
	if respond == nil {
		created := mustRead(t, "message_created.json")
		respond = func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			w.Write(created)
		}
	}
	f := &fakeTwilio{respond: respond}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{
			Method: r.Method, Path: r.URL.Path, User: user, Pass: pass, BasicAuth: ok,
			ContentType: r.Header.Get("Content-Type"), Accept: r.Header.Get("Accept"),
			Form: r.PostForm, AuthorizationCount: len(r.Header.Values("Authorization")),
		})
		f.mu.Unlock()
		f.respond(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeTwilio) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func mustRead(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustNew(t testing.TB, cfg twilio.Config) *twilio.Client {
	t.Helper()
	c, err := twilio.New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func baseConfig(baseURL string) twilio.Config {
	return twilio.Config{
		BaseURL:           baseURL,
		AccountSID:        testSID,
		AuthToken:         testToken,
		From:              testFrom,
		StatusCallbackURL: publicCallback,
		Timeout:           5 * time.Second,
	}
}

// sign computes X-Twilio-Signature the way Twilio's documentation states
// it, written out here apart from the package's own code.
func sign(token, fullURL string, params url.Values) string {
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	sort.Strings(names)
	data := fullURL
	for _, n := range names {
		vals := append([]string(nil), params[n]...)
		sort.Strings(vals)
		for _, v := range vals {
			data += n + v
		}
	}
	mac := hmac.New(sha1.New, []byte(token))
	mac.Write([]byte(data))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// sinkRecorder is a ReceiptSink that keeps what it got and fails with err.
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
