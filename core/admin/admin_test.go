package admin_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/core/admin"
	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/store"
)

var ctx = context.Background()

type env struct {
	st      *store.Store
	h       http.Handler
	token   string
	changed []string
}

func newToken(t testing.TB) string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newEnv(t testing.TB) *env {
	t.Helper()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "core.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{st: st, token: newToken(t)}
	toks, err := admin.NewTokens([]string{newToken(t), e.token})
	if err != nil {
		t.Fatal(err)
	}
	e.h = admin.NewHandler(admin.New(st, func(l string) { e.changed = append(e.changed, l) }), toks, nil)
	return e
}

// do sends one request with the admin token and decodes the JSON answer
// into out (if not nil).
func (e *env) do(t testing.TB, method, path, body string, out any) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	raw := rec.Body.String()
	if out != nil && rec.Code < 300 {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, rec.Code, raw, err)
		}
	}
	return rec.Code, raw
}

func TestAdminTokenIsRequired(t *testing.T) {
	e := newEnv(t)
	for name, auth := range map[string]string{"none": "", "wrong": "Bearer " + newToken(t), "not bearer": e.token, "basic": "Basic " + e.token} {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v1/labels", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		})
	}
	t.Run("no token configured", func(t *testing.T) {
		h := admin.NewHandler(admin.New(e.st, nil), nil, nil)
		req := httptest.NewRequest(http.MethodGet, "/v1/labels", nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
}

func TestTokens(t *testing.T) {
	if _, err := admin.ParseTokens("short"); err == nil {
		t.Error("a short token was accepted")
	}
	a, b := newToken(t), newToken(t)
	toks, err := admin.ParseTokens(a + ",\n " + b + "\n")
	if err != nil || toks.Len() != 2 {
		t.Fatalf("%v %d", err, toks.Len())
	}
	if toks, _ := admin.ParseTokens(""); toks.Len() != 0 {
		t.Error("empty value gave tokens")
	}
}

func TestLabelLifecycle(t *testing.T) {
	e := newEnv(t)
	var l admin.Label
	if code, raw := e.do(t, "POST", "/v1/labels", `{"id":"acme","name":"Acme Casinos"}`, &l); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, raw)
	}
	if l.ID != "acme" || l.FirewallMode != store.FirewallReject || l.Brands == nil || l.EventTypes == nil {
		t.Errorf("new label %+v", l)
	}
	steps := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/labels", `{"id":"acme"}`, http.StatusConflict},
		{"POST", "/v1/labels", `{"id":"Acme!"}`, http.StatusBadRequest},
		{"POST", "/v1/labels", `{"id":"x","extra":1}`, http.StatusBadRequest},
		{"POST", "/v1/labels", `not json`, http.StatusBadRequest},
		{"GET", "/v1/labels/nope", "", http.StatusNotFound},
		{"POST", "/v1/labels/acme/brands", `{"brand":"acme-casino"}`, http.StatusOK},
		{"POST", "/v1/labels/acme/brands", `{"brand":"has space"}`, http.StatusBadRequest},
		{"POST", "/v1/labels/nope/brands", `{"brand":"b"}`, http.StatusNotFound},
		{"PUT", "/v1/labels/acme/firewall", `{"mode":"strip"}`, http.StatusOK},
		{"PUT", "/v1/labels/acme/firewall", `{"mode":"off"}`, http.StatusBadRequest},
		{"POST", "/v1/labels/acme/event-types", `{"name":"mission_done"}`, http.StatusOK},
		{"POST", "/v1/labels/acme/event-types", `{"name":"deposit"}`, http.StatusBadRequest},
		{"POST", "/v1/labels/acme/event-types", `{"name":"Bad-Type"}`, http.StatusBadRequest},
		{"GET", "/v1/nothing", "", http.StatusNotFound},
	}
	for _, s := range steps {
		if code, raw := e.do(t, s.method, s.path, s.body, nil); code != s.status {
			t.Errorf("%s %s %s: %d %s, want %d", s.method, s.path, s.body, code, raw, s.status)
		}
	}
	if _, raw := e.do(t, "GET", "/v1/labels/acme", "", &l); l.FirewallMode != store.FirewallStrip ||
		!slices.Equal(l.Brands, []string{"acme-casino"}) || !slices.Equal(l.EventTypes, []string{"mission_done"}) {
		t.Errorf("label after changes: %s", raw)
	}
	var ls []admin.Label
	if e.do(t, "GET", "/v1/labels", "", &ls); len(ls) != 1 {
		t.Errorf("labels %+v", ls)
	}
	// Every settings change tells the pipeline to drop its cached label.
	if len(e.changed) < 4 || slices.ContainsFunc(e.changed, func(s string) bool { return s != "acme" }) {
		t.Errorf("onChange calls %v", e.changed)
	}
}

func TestAPIKeysShownOnceRotatedAndRevoked(t *testing.T) {
	e := newEnv(t)
	e.do(t, "POST", "/v1/labels", `{"id":"acme"}`, nil)
	var first admin.NewKey
	if code, raw := e.do(t, "POST", "/v1/labels/acme/keys", "", &first); code != http.StatusCreated || first.Key == "" {
		t.Fatalf("create: %d %s", code, raw)
	}
	secret := first.Key[strings.LastIndex(first.Key, "_")+1:]
	var rotated admin.NewKey
	if code, raw := e.do(t, "POST", "/v1/labels/acme/keys/rotate", "", &rotated); code != http.StatusCreated {
		t.Fatalf("rotate: %d %s", code, raw)
	}
	if len(rotated.Previous) != 1 || rotated.Previous[0].ID != first.Info.ID {
		t.Errorf("rotation lists %+v as still valid, want the first key", rotated.Previous)
	}
	for _, k := range []string{first.Key, rotated.Key} {
		if l, err := e.st.Authenticate(ctx, k); err != nil || l != "acme" {
			t.Errorf("key valid after rotation? %q %v", l, err)
		}
	}
	_, raw := e.do(t, "GET", "/v1/labels/acme/keys", "", nil)
	if strings.Contains(raw, secret) || strings.Contains(raw, rotated.Key) {
		t.Fatalf("key list shows a secret: %s", raw)
	}
	if code, raw := e.do(t, "DELETE", "/v1/labels/acme/keys/"+first.Info.ID, "", nil); code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", code, raw)
	}
	if _, err := e.st.Authenticate(ctx, first.Key); !errors.Is(err, store.ErrUnauthorized) {
		t.Errorf("revoked key still valid: %v", err)
	}
	if l, err := e.st.Authenticate(ctx, rotated.Key); err != nil || l != "acme" {
		t.Errorf("new key lost: %v", err)
	}
	var ks []admin.KeyInfo
	e.do(t, "GET", "/v1/labels/acme/keys", "", &ks)
	if len(ks) != 2 {
		t.Fatalf("keys %+v", ks)
	}
	for _, k := range ks {
		if (k.ID == first.Info.ID) != (k.Revoked != nil) {
			t.Errorf("key %+v: only the first should be revoked", k)
		}
	}
	for _, p := range []string{"/v1/labels/acme/keys/nope", "/v1/labels/other/keys/" + rotated.Info.ID} {
		if code, _ := e.do(t, "DELETE", p, "", nil); code != http.StatusNotFound {
			t.Errorf("DELETE %s: %d", p, code)
		}
	}
}

func TestPlayerAndRejections(t *testing.T) {
	e := newEnv(t)
	e.do(t, "POST", "/v1/labels", `{"id":"acme"}`, nil)
	e.do(t, "POST", "/v1/labels/acme/brands", `{"brand":"b1"}`, nil)
	_, err := e.st.Ingest(ctx, "acme", []event.Event{
		{EID: "e1", EventDate: 1700000000000, Brand: "b1", User: "u1", Type: "registration", Payload: map[string]any{"vip": true}},
		{EID: "e2", EventDate: 1700000000500, Brand: "b1", User: "u1", Type: "update_profile", Payload: map[string]any{"+tags": "gold", "core_is_sms_disabled": true, "vip": true}},
		{EID: "e3", EventDate: 1700000001000, Brand: "b1", User: "u1", Type: "login"},
	}, []event.Rejection{{EID: "e4", Reason: "email", Path: "payload.contact"}})
	if err != nil {
		t.Fatal(err)
	}
	var p admin.Player
	if code, raw := e.do(t, "GET", "/api/players/b1/u1?label=acme", "", &p); code != http.StatusOK {
		t.Fatalf("%d %s", code, raw)
	}
	if p.Properties["vip"] != true || !p.OptOuts["core_is_sms_disabled"] || !slices.Equal(p.Tags, []string{"gold"}) ||
		p.LastOnline == nil || p.LastOnline.UnixMilli() != 1700000001000 || p.FirstSeen == nil {
		t.Errorf("player %+v", p)
	}
	for path, want := range map[string]int{
		"/api/players/b1/u1":             http.StatusBadRequest,
		"/api/players/b1/u2?label=acme":  http.StatusNotFound,
		"/api/players/b1/u1?label=other": http.StatusNotFound,
		"/api/players/b1/u1?label=B@D":   http.StatusBadRequest,
	} {
		if code, raw := e.do(t, "GET", path, "", nil); code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, raw, want)
		}
	}
	var rs []admin.Rejection
	if code, raw := e.do(t, "GET", "/v1/labels/acme/rejections?limit=5", "", &rs); code != http.StatusOK || len(rs) != 1 ||
		rs[0] != (admin.Rejection{EID: "e4", Reason: "email", Path: "payload.contact", Time: rs[0].Time}) {
		t.Errorf("rejections %d %s", code, raw)
	}
	if code, _ := e.do(t, "GET", "/v1/labels/acme/rejections?limit=0", "", nil); code != http.StatusBadRequest {
		t.Errorf("limit=0: %d", code)
	}
}

func TestBodiesAreBounded(t *testing.T) {
	e := newEnv(t)
	req := httptest.NewRequest("POST", "/v1/labels", io.MultiReader(strings.NewReader(`{"id":"`), strings.NewReader(strings.Repeat("a", 1<<20)), strings.NewReader(`"}`)))
	req.Header.Set("Authorization", "Bearer "+e.token)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}
