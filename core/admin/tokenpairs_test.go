package admin_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/core/admin"
	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/store"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/tokenmap"
)

func testToken(kind string, v int, c byte) string {
	return fmt.Sprintf("tok_%s_v%d_%s", kind, v, strings.Repeat(string(c), 32))
}

var (
	oldEmail, newEmail = testToken("email", 1, 'a'), testToken("email", 2, 'a')
	oldPhone, newPhone = testToken("phone", 1, 'b'), testToken("phone", 2, 'b')
)

// pairsFile writes pairs as the gateway does and signs them with key.
func pairsFile(t testing.TB, key *envelope.SigningKey, pairs ...tokenmap.Pair) (data, sig []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := tokenmap.NewWriter(&buf)
	for _, p := range pairs {
		if err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	sig, err := tokenmap.Sign(key, "pairs.ndjson", w.Sum())
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sig
}

func signingKey(t testing.TB) *envelope.SigningKey {
	t.Helper()
	k, err := envelope.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// multipartBody is the route's body: the named parts, in order.
func multipartBody(t testing.TB, parts ...[2]string) (string, *bytes.Buffer) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		w, err := mw.CreateFormFile(p[0], p[0]+".file")
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, p[1])
	}
	mw.Close()
	return mw.FormDataContentType(), &b
}

type pairsEnv struct {
	st    *store.Store
	srv   *httptest.Server
	token string
	a     *admin.Admin
}

// newPairsEnv serves the admin API over HTTP, pinning keys, with label
// acme whose player u1 holds an old email and phone token, and label beta.
func newPairsEnv(t *testing.T, keys ...*envelope.VerifyingKey) *pairsEnv {
	t.Helper()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "core.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &pairsEnv{st: st, token: newToken(t), a: admin.New(st, nil)}
	e.a.SetGatewayKeys(keys)
	toks, err := admin.NewTokens([]string{e.token})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(admin.NewHandler(e.a, toks, nil))
	t.Cleanup(e.srv.Close)
	for _, l := range []string{"acme", "beta"} {
		if _, err := e.a.CreateLabel(ctx, l, ""); err != nil {
			t.Fatal(err)
		}
	}
	_, err = st.Ingest(ctx, "acme", []event.Event{{EID: "e1", EventDate: 1700000000000, Brand: "b1", User: "u1", Type: event.TypeUpdateProfile,
		Payload: map[string]any{"email_token": oldEmail, "phones": []any{oldPhone}, "vip": true}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *pairsEnv) post(t *testing.T, label, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/labels/"+label+"/token-pairs", body)
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", contentType)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *pairsEnv) player(t *testing.T) map[string]any {
	t.Helper()
	p, err := e.st.Player(ctx, "acme", "b1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	return p.Properties
}

func TestTokenPairsRouteAppliesASignedFile(t *testing.T) {
	gw, other := signingKey(t), signingKey(t)
	e := newPairsEnv(t, other.Public(), gw.Public()) // the second pinned key signs
	data, sig := pairsFile(t, gw,
		tokenmap.Pair{Tenant: "acme", Kind: "email", Old: oldEmail, New: newEmail},
		tokenmap.Pair{Tenant: "acme", Kind: "phone", Old: oldPhone, New: newPhone},
		tokenmap.Pair{Tenant: "acme", Kind: "tg", Old: testToken("tg", 1, 'c'), New: testToken("tg", 2, 'c')})
	ct, body := multipartBody(t, [2]string{"sig", string(sig)}, [2]string{"pairs", string(data)})
	code, raw := e.post(t, "acme", ct, body)
	if code != http.StatusOK {
		t.Fatalf("POST token-pairs: %d %s", code, raw)
	}
	var res admin.TokenPairs
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	want := admin.TokenPairs{Label: "acme", KeyID: string(gw.ID), SHA256: fmt.Sprintf("%x", sum), Pairs: 3, Players: 1, Values: 2}
	if res != want {
		t.Errorf("answer %+v, want %+v", res, want)
	}
	p := e.player(t)
	if p["email_token"] != newEmail || fmt.Sprint(p["phones"]) != fmt.Sprint([]any{newPhone}) || p["vip"] != true {
		t.Errorf("player after: %v", p)
	}
	// The same file again: accepted, nothing left to change.
	ct, body = multipartBody(t, [2]string{"pairs", string(data)}, [2]string{"sig", string(sig)})
	if code, raw := e.post(t, "acme", ct, body); code != http.StatusOK || !strings.Contains(string(raw), `"players":0`) {
		t.Errorf("applied again: %d %s", code, raw)
	}
}

// The whole file is refused, and nothing changes, on anything but a
// well-formed file of this label signed by a pinned gateway key.
func TestTokenPairsRouteRefuses(t *testing.T) {
	gw, stranger := signingKey(t), signingKey(t)
	e := newPairsEnv(t, gw.Public())
	good := tokenmap.Pair{Tenant: "acme", Kind: "email", Old: oldEmail, New: newEmail}
	data, sig := pairsFile(t, gw, good)
	_, strangerSig := pairsFile(t, stranger, good)
	betaData, betaSig := pairsFile(t, gw, tokenmap.Pair{Tenant: "beta", Kind: "email", Old: oldEmail, New: newEmail})
	bothData, bothSig := pairsFile(t, gw, good, tokenmap.Pair{Tenant: "beta", Kind: "email", Old: oldEmail, New: newEmail})
	// A malformed file the gateway's key signed all the same.
	bad := []byte(`{"tenant":"acme","kind":"email","old":"` + oldEmail + `","new":"` + oldEmail + `"}` + "\n")
	badSum := sha256.Sum256(bad)
	badSig, err := tokenmap.Sign(gw, "pairs.ndjson", badSum[:])
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(data, []byte(newEmail), []byte(testToken("email", 2, 'q')), 1)

	multi := func(parts ...[2]string) (string, io.Reader) { return multipartBody(t, parts...) }
	for _, tc := range []struct {
		name  string
		label string
		body  func() (string, io.Reader)
		code  int
		want  string // in the answer
	}{
		{"a changed file", "acme", func() (string, io.Reader) {
			return multi([2]string{"pairs", string(tampered)}, [2]string{"sig", string(sig)})
		}, 400, "SHA-256"},
		{"signed by a key not pinned", "acme", func() (string, io.Reader) {
			return multi([2]string{"pairs", string(data)}, [2]string{"sig", string(strangerSig)})
		}, 400, "not among the pinned gateway keys"},
		{"another tenant's file", "acme", func() (string, io.Reader) {
			return multi([2]string{"pairs", string(betaData)}, [2]string{"sig", string(betaSig)})
		}, 400, "another tenant"},
		{"a file of two tenants", "acme", func() (string, io.Reader) {
			return multi([2]string{"pairs", string(bothData)}, [2]string{"sig", string(bothSig)})
		}, 400, "another tenant"},
		{"this label's file on another label", "beta", func() (string, io.Reader) {
			return multi([2]string{"pairs", string(data)}, [2]string{"sig", string(sig)})
		}, 400, "another tenant"},
		{"a malformed pair", "acme", func() (string, io.Reader) {
			return multi([2]string{"pairs", string(bad)}, [2]string{"sig", string(badSig)})
		}, 400, "key version"},
		{"no such label", "nope", func() (string, io.Reader) {
			return multi([2]string{"pairs", string(data)}, [2]string{"sig", string(sig)})
		}, 404, "not_found"},
		{"no signature", "acme", func() (string, io.Reader) { return multi([2]string{"pairs", string(data)}) }, 400, "each once"},
		{"the pairs twice", "acme", func() (string, io.Reader) {
			return multi([2]string{"pairs", string(data)}, [2]string{"pairs", string(data)}, [2]string{"sig", string(sig)})
		}, 400, "each once"},
		{"an unknown part", "acme", func() (string, io.Reader) {
			return multi([2]string{"pairs", string(data)}, [2]string{"sig", string(sig)}, [2]string{"key", "x"})
		}, 400, "each once"},
		{"not multipart", "acme", func() (string, io.Reader) { return "application/x-ndjson", bytes.NewReader(data) }, 400, "multipart"},
		{"a signature too large", "acme", func() (string, io.Reader) {
			return multi([2]string{"pairs", string(data)}, [2]string{"sig", strings.Repeat(" ", 65<<10)})
		}, 413, "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := tc.body()
			code, raw := e.post(t, tc.label, ct, body)
			if code != tc.code || !strings.Contains(string(raw), tc.want) {
				t.Fatalf("%d %s; want %d with %q", code, raw, tc.code, tc.want)
			}
			if p := e.player(t); p["email_token"] != oldEmail {
				t.Fatalf("a refused file changed the player: %v", p)
			}
			if strings.Contains(string(raw), "tok_") {
				t.Errorf("the answer quotes a token: %s", raw)
			}
		})
	}
}

// A core that pins no gateway key verifies nothing, so it applies nothing.
func TestTokenPairsNeedGatewayKeys(t *testing.T) {
	gw := signingKey(t)
	e := newPairsEnv(t)
	data, sig := pairsFile(t, gw, tokenmap.Pair{Tenant: "acme", Kind: "email", Old: oldEmail, New: newEmail})
	ct, body := multipartBody(t, [2]string{"pairs", string(data)}, [2]string{"sig", string(sig)})
	if code, raw := e.post(t, "acme", ct, body); code != http.StatusServiceUnavailable || !strings.Contains(string(raw), "gateway_keys") {
		t.Fatalf("%d %s; want 503 naming gateway_keys", code, raw)
	}
	if _, err := e.a.ApplyTokenPairs(ctx, "acme", data, sig); !errors.Is(err, admin.ErrNoGatewayKeys) {
		t.Fatalf("ApplyTokenPairs = %v, want ErrNoGatewayKeys", err)
	}
	if p := e.player(t); p["email_token"] != oldEmail {
		t.Fatalf("the player changed: %v", p)
	}
}
