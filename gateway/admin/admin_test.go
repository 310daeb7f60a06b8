package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/blindpost/blindpost/gateway/admin"
	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
)

// Every PII value in these tests contains "canary" or the digits
// "5550100", so one check finds any of them in a response or a log line.
var canaries = []string{"canary", "5550100"}

const (
	acmeToken   = "test-only-admin-token-acme-0123456789"
	globexToken = "test-only-admin-token-globex-0123456789"
)

var alice = vault.Record{
	Email: "Alice.Canary@example.com", Phone: "+1 555 010 0001", FirstName: "Alice", LastName: "Canary",
	Country: "MT", Timezone: "Europe/Malta", Consents: map[string]bool{"marketing_email": true},
}

type env struct {
	store  *embedded.Store
	srv    *httptest.Server
	acme   *admin.Client
	globex *admin.Client

	mu       sync.Mutex
	erased   []vault.Ref
	eraseErr error
	bodies   bytes.Buffer // every response body, for the PII check
	logs     bytes.Buffer
}

// recorder keeps a copy of every response body.
type recorder struct{ e *env }

func (rt recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	rt.e.mu.Lock()
	rt.e.bodies.Write(b)
	rt.e.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, err
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	if err := embedded.GenerateKeyFile(filepath.Join(dir, "master.key")); err != nil {
		t.Fatal(err)
	}
	kp, err := embedded.NewKeyFileProvider(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{}
	e.store, err = embedded.Open(filepath.Join(dir, "vault.db"), kp, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(lockedWriter{e}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	onErase := func(ctx context.Context, ref vault.Ref) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.erased = append(e.erased, ref)
		return e.eraseErr
	}
	tokens := admin.NewTokens(map[string]string{acmeToken: "acme", globexToken: "globex"})
	e.srv = httptest.NewServer(admin.NewHandler(e.store, tokens, onErase, log))
	hc := &http.Client{Transport: recorder{e}}
	e.acme = &admin.Client{BaseURL: e.srv.URL, Token: acmeToken, HTTP: hc}
	e.globex = &admin.Client{BaseURL: e.srv.URL + "/", Token: globexToken, HTTP: hc}
	t.Cleanup(func() {
		e.srv.Close()
		e.store.Close()
		e.mu.Lock()
		defer e.mu.Unlock()
		for what, b := range map[string][]byte{"a response body": e.bodies.Bytes(), "the log": e.logs.Bytes()} {
			lower := strings.ToLower(string(b))
			for _, c := range canaries {
				if strings.Contains(lower, c) {
					t.Errorf("%s contains PII (%q):\n%s", what, c, b)
				}
			}
			for _, tok := range []string{acmeToken, globexToken, "test-only-admin-token"} {
				if strings.Contains(string(b), tok) {
					t.Errorf("%s contains an admin token", what)
				}
			}
		}
	})
	return e
}

type lockedWriter struct{ e *env }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.e.mu.Lock()
	defer w.e.mu.Unlock()
	return w.e.logs.Write(b)
}

// raw sends a request outside the Client and decodes a JSON answer.
func (e *env) raw(t *testing.T, method, path, token, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := (&http.Client{Transport: recorder{e}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %q", method, path, b)
		}
	}
	return resp.StatusCode, m, resp.Header
}

func errCode(m map[string]any) (code, msg string) {
	e, _ := m["error"].(map[string]any)
	code, _ = e["code"].(string)
	msg, _ = e["message"].(string)
	return code, msg
}

var ctx = context.Background()

func TestPutStoresTheRecordAndReturnsPseudonymAndTokens(t *testing.T) {
	e := newEnv(t)
	res, err := e.acme.Put(ctx, "casino-1", "u-1001", alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pseudonym) != vault.PseudonymLen || len(res.Tokens) != 2 {
		t.Fatalf("Put = %+v", res)
	}
	rec, err := e.store.Resolve(ctx, vault.Ref{Tenant: "acme", Brand: "casino-1", User: "u-1001"})
	if err != nil || rec.Email != "alice.canary@example.com" || rec.Pseudonym != res.Pseudonym {
		t.Fatalf("Resolve = %v", err)
	}
	tok, err := e.store.Tokenize(ctx, "acme", vault.KindEmail, alice.Email)
	if err != nil || tok != res.Tokens[vault.KindEmail] {
		t.Fatalf("token %q, store says %q (%v)", res.Tokens[vault.KindEmail], tok, err)
	}
}

func TestPutIsStrict(t *testing.T) {
	e := newEnv(t)
	auth := "Bearer " + acmeToken
	for _, c := range []struct {
		name, path, body string
		status           int
		msg              string
	}{
		{"unknown field", "/v1/subjects/b/u", `{"emial":"alice.canary@example.com"}`, 400, `unknown field "emial"`},
		{"unknown field named like a value", "/v1/subjects/b/u", `{"alice.canary@example.com":1}`, 400, "unknown field"},
		{"wrong type", "/v1/subjects/b/u", `{"email":5550100}`, 400, `field "email" has the wrong type`},
		{"malformed", "/v1/subjects/b/u", `{"email":"alice.canary@example.com"`, 400, "truncated JSON"},
		{"not an object", "/v1/subjects/b/u", `"alice.canary@example.com"`, 400, "want a JSON object"},
		{"null", "/v1/subjects/b/u", `null`, 400, "want a JSON object"},
		{"trailing data", "/v1/subjects/b/u", `{} {"email":"x"}`, 400, "trailing data"},
		{"invalid email", "/v1/subjects/b/u", `{"email":"alice.canary.example.com"}`, 400, `record: field "email": not an email address`},
		{"invalid phone", "/v1/subjects/b/u", `{"phone":"5550100"}`, 400, `record: field "phone"`},
		{"client pseudonym", "/v1/subjects/b/u", `{"pseudonym":"aaaaaaaaaaaaaaaaaaaaaaaaaa"}`, 400, `record: field "pseudonym"`},
		{"control char in brand", "/v1/subjects/b%0A/u", `{}`, 400, "path brand"},
		{"NUL in user", "/v1/subjects/b/u%00", `{}`, 400, "path user"},
		{"long user", "/v1/subjects/b/" + strings.Repeat("u", 129), `{}`, 400, "path user"},
		{"oversized", "/v1/subjects/b/u", `{"first_name":"` + strings.Repeat("a", admin.MaxSubjectBody) + `"}`, 413, "body over"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, m, _ := e.raw(t, "PUT", c.path, auth, c.body)
			code, msg := errCode(m)
			if status != c.status || code != "invalid" || !strings.Contains(msg, c.msg) {
				t.Fatalf("got %d %s %q, want %d invalid %q", status, code, msg, c.status, c.msg)
			}
		})
	}
	if _, err := e.store.Resolve(ctx, vault.Ref{Tenant: "acme", Brand: "b", User: "u"}); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("a rejected PUT stored something: %v", err)
	}
}

func TestEraseRemovesTheSubjectAndCallsOnErase(t *testing.T) {
	e := newEnv(t)
	res, err := e.acme.Put(ctx, "casino-1", "u-1001", alice)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.acme.Erase(ctx, "casino-1", "u-1001"); err != nil {
		t.Fatal(err)
	}
	ref := vault.Ref{Tenant: "acme", Brand: "casino-1", User: "u-1001"}
	if len(e.erased) != 1 || e.erased[0] != ref {
		t.Fatalf("onErase calls: %v", e.erased)
	}
	if _, err := e.store.Resolve(ctx, ref); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Resolve after erase: %v", err)
	}
	if _, err := e.store.Lookup(ctx, "acme", "casino-1", res.Tokens[vault.KindEmail]); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Lookup after erase: %v", err)
	}
	// Erasing again: not found, and onErase runs again so a retried DELETE
	// still cancels queued messages.
	if err := e.acme.Erase(ctx, "casino-1", "u-1001"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("second Erase: %v, want not found", err)
	}
	if len(e.erased) != 2 {
		t.Fatalf("onErase calls: %v", e.erased)
	}
}

func TestAFailedOnEraseAsksForARetry(t *testing.T) {
	e := newEnv(t)
	if _, err := e.acme.Put(ctx, "casino-1", "u-1001", alice); err != nil {
		t.Fatal(err)
	}
	e.eraseErr = errors.New("queue down")
	err := e.acme.Erase(ctx, "casino-1", "u-1001")
	var ae *admin.Error
	if !errors.Is(err, vault.ErrUnavailable) || !errors.As(err, &ae) || ae.Status != 503 {
		t.Fatalf("Erase with a failing onErase: %v", err)
	}
	e.eraseErr = nil
	if err := e.acme.Erase(ctx, "casino-1", "u-1001"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("retried Erase: %v", err)
	}
	if len(e.erased) != 2 {
		t.Fatalf("onErase calls: %d, want 2", len(e.erased))
	}
}

func TestImportReportsBadLinesByNumberAndImportsTheRest(t *testing.T) {
	e := newEnv(t)
	lines := []string{
		`{"brand":"casino-1","user":"u-1","record":{"email":"one.canary@example.com"}}`,
		`{"brand":"casino-1","user":"u-2","record":{"email":"two.canary@example.com"`,
		`{"brand":"casino-1","user":"u-3","record":{"phone":"+1 555 010 0003"}}`,
		`{"brand":"casino-1","user":"u-4","record":{"email":"four.canary.example.com"}}`,
		``,
		`{"brand":"casino-1","user":"u-6","record":{},"extra":"canary"}`,
		`{"brand":"casino-1\n","user":"u-7","record":{}}`,
		`{"brand":"casino-1","user":"u-8"}`,
		`{"brand":"casino-1","user":"u-9","record":{"first_name":"` + strings.Repeat("c", admin.MaxImportLine) + `"}}`,
		`   {"brand":"casino-2","user":"u-10","record":{"telegram_chat_id":"5550100"}}   `,
	}
	res, err := e.acme.Import(ctx, strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	var failed []int
	for _, f := range res.Failed {
		failed = append(failed, f.Line)
	}
	if res.Imported != 3 || res.FailedCount != 6 || fmt.Sprint(failed) != "[2 4 6 7 8 9]" {
		t.Fatalf("Import = %+v", res)
	}
	if !strings.Contains(res.Failed[1].Error, `record: field "email"`) {
		t.Errorf("line 4 error %q does not name the field", res.Failed[1].Error)
	}
	for _, u := range []string{"u-1", "u-3"} {
		if _, err := e.store.Resolve(ctx, vault.Ref{Tenant: "acme", Brand: "casino-1", User: u}); err != nil {
			t.Errorf("%s not imported: %v", u, err)
		}
	}
	if _, err := e.store.Resolve(ctx, vault.Ref{Tenant: "acme", Brand: "casino-2", User: "u-10"}); err != nil {
		t.Errorf("line after an overlong line not imported: %v", err)
	}
}

func TestImportOverTheBodyLimitIsRefusedUpFront(t *testing.T) {
	e := newEnv(t)
	h := admin.NewHandler(e.store, admin.NewTokens(map[string]string{acmeToken: "acme"}), nil, nil)
	req := httptest.NewRequest("POST", "/v1/subjects/import", strings.NewReader(""))
	req.Header.Set("Authorization", "Bearer "+acmeToken)
	req.ContentLength = admin.MaxImportBody + 1
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", rec.Code)
	}
}

func TestTokenizeMatchesThePutTokens(t *testing.T) {
	e := newEnv(t)
	res, err := e.acme.Put(ctx, "casino-1", "u-1001", alice)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.acme.Tokenize(ctx, vault.KindEmail, "  ALICE.CANARY@EXAMPLE.COM ")
	if err != nil || tok != res.Tokens[vault.KindEmail] {
		t.Fatalf("Tokenize = %q, %v; Put gave %q", tok, err, res.Tokens[vault.KindEmail])
	}
	tok, err = e.acme.Tokenize(ctx, vault.KindPhone, "0015550100001")
	if err != nil || tok != res.Tokens[vault.KindPhone] {
		t.Fatalf("Tokenize(phone) = %q, %v", tok, err)
	}
	if _, err := e.acme.Tokenize(ctx, "fax", "5550100"); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("unknown kind: %v", err)
	}
	if _, err := e.acme.Tokenize(ctx, vault.KindEmail, "not-a-canary-address"); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("bad email: %v", err)
	}
}

func TestRequestsWithoutAValidTokenAreUnauthorized(t *testing.T) {
	e := newEnv(t)
	routes := [][2]string{
		{"PUT", "/v1/subjects/b/u"}, {"DELETE", "/v1/subjects/b/u"},
		{"POST", "/v1/subjects/import"}, {"POST", "/v1/tokens"}, {"GET", "/nowhere"},
	}
	for name, auth := range map[string]string{
		"no header":          "",
		"wrong token":        "Bearer wrong-token-canary",
		"token prefix":       "Bearer " + acmeToken[:len(acmeToken)-1],
		"token with suffix":  "Bearer " + acmeToken + "x",
		"basic scheme":       "Basic " + acmeToken,
		"empty bearer":       "Bearer ",
		"scheme only":        "Bearer",
		"token without type": acmeToken,
	} {
		for _, rt := range routes {
			status, m, hdr := e.raw(t, rt[0], rt[1], auth, `{"email":"alice.canary@example.com"}`)
			if code, _ := errCode(m); status != 401 || code != "unauthorized" || hdr.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s %s: %d %s", name, rt[0], rt[1], status, code)
			}
		}
	}
	if _, err := (&admin.Client{BaseURL: e.srv.URL, Token: "nope"}).Tokenize(ctx, vault.KindEmail, "a.canary@example.com"); !errors.Is(err, admin.ErrUnauthorized) {
		t.Fatalf("client error %v does not match ErrUnauthorized", err)
	}
	if _, err := e.store.Resolve(ctx, vault.Ref{Tenant: "acme", Brand: "b", User: "u"}); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("an unauthorized PUT stored something: %v", err)
	}
	if strings.Contains(e.logs.String(), "wrong-token") {
		t.Fatal("the log holds a presented token")
	}
}

func TestATenantsTokenCannotTouchAnotherTenant(t *testing.T) {
	e := newEnv(t)
	acmeRes, err := e.acme.Put(ctx, "casino-1", "u-1001", alice)
	if err != nil {
		t.Fatal(err)
	}
	acmeRef := vault.Ref{Tenant: "acme", Brand: "casino-1", User: "u-1001"}
	// The same path under globex's token names globex's subject.
	if err := e.globex.Erase(ctx, "casino-1", "u-1001"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("globex Erase of acme's subject: %v, want not found", err)
	}
	other := vault.Record{Email: "mallory.canary@example.com"}
	if _, err := e.globex.Put(ctx, "casino-1", "u-1001", other); err != nil {
		t.Fatal(err)
	}
	rec, err := e.store.Resolve(ctx, acmeRef)
	if err != nil || rec.Email != "alice.canary@example.com" {
		t.Fatalf("acme's record after globex's PUT: %q, %v", rec.Email, err)
	}
	tok, err := e.globex.Tokenize(ctx, vault.KindEmail, alice.Email)
	if err != nil || tok == acmeRes.Tokens[vault.KindEmail] {
		t.Fatalf("globex token %q equals acme's (%v)", tok, err)
	}
	res, err := e.globex.Import(ctx, strings.NewReader(`{"brand":"casino-1","user":"u-1001","record":{"first_name":"Eve"}}`))
	if err != nil || res.Imported != 1 {
		t.Fatalf("globex import: %+v, %v", res, err)
	}
	if rec, _ := e.store.Resolve(ctx, acmeRef); rec.FirstName != "Alice" {
		t.Fatal("globex's import changed acme's record")
	}
	if err := e.globex.Erase(ctx, "casino-1", "u-1001"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Resolve(ctx, acmeRef); err != nil {
		t.Fatalf("globex's erase removed acme's record: %v", err)
	}
	for _, ref := range e.erased {
		if ref.Tenant != "globex" {
			t.Fatalf("onErase called for %v", ref)
		}
	}
}

func TestUnknownRoutesAnswerJSON(t *testing.T) {
	e := newEnv(t)
	for _, rt := range [][2]string{{"GET", "/v1/subjects/b/u"}, {"GET", "/"}, {"POST", "/v1/subjects/b"}} {
		status, m, hdr := e.raw(t, rt[0], rt[1], "Bearer "+acmeToken, "")
		if code, _ := errCode(m); status != 404 || code != "not_found" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %q", rt[0], rt[1], status, code)
		}
	}
}

func TestRequestsAreLoggedByPseudonymNotByValue(t *testing.T) {
	e := newEnv(t)
	res, err := e.acme.Put(ctx, "casino-1", "u-1001", alice)
	if err != nil {
		t.Fatal(err)
	}
	log := e.logs.String()
	for _, want := range []string{res.Pseudonym, `"tenant":"acme"`, `"brand":"casino-1"`, `"user":"u-1001"`, `"route":"PUT /v1/subjects/{brand}/{user}"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	// The PII check itself runs in the cleanup of every test.
}
