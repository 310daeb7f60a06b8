package eventsapi_test

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
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/eventsapi"
	"github.com/blindpost/blindpost/core/firewall"
	"github.com/blindpost/blindpost/core/ingest"
	"github.com/blindpost/blindpost/core/store"
)

var ctx = context.Background()

const (
	label  = "acme"
	brand  = "acme-casino"
	canary = "canary.player@example.com" // must never come back
)

type env struct {
	st  *store.Store
	h   http.Handler
	key string
	log *bytes.Buffer
}

// newEnv serves the events API over a fresh SQLite store with one label,
// one brand and one API key.
func newEnv(t testing.TB, mode string, wrap func(ingest.Store) ingest.Store) *env {
	t.Helper()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "core.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, err := range []error{st.CreateLabel(ctx, label, "Acme"), st.AddBrand(ctx, label, brand), st.SetFirewallMode(ctx, label, mode)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	key, _, err := st.CreateAPIKey(ctx, label)
	if err != nil {
		t.Fatal(err)
	}
	var is ingest.Store = st
	if wrap != nil {
		is = wrap(st)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	p := ingest.New(is, firewall.New(firewall.Options{}), ingest.Options{Logger: log})
	return &env{st: st, h: eventsapi.NewHandler(p, eventsapi.Options{Logger: log}), key: key, log: &logs}
}

type answer struct {
	status int
	raw    string
	body   eventsapi.Response
	header http.Header
}

func (e *env) post(t testing.TB, auth string, body io.Reader) answer {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, eventsapi.Path, body)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	a := answer{status: rec.Code, raw: rec.Body.String(), header: rec.Header()}
	if err := json.Unmarshal(rec.Body.Bytes(), &a.body); err != nil {
		t.Fatalf("answer %d is not JSON: %q", rec.Code, a.raw)
	}
	if strings.Contains(a.raw, canary) || strings.Contains(e.log.String(), canary) {
		t.Fatalf("a value came back or was logged: %s\nlog: %s", a.raw, e.log.String())
	}
	return a
}

func batch(evs ...map[string]any) io.Reader {
	b, err := json.Marshal(evs)
	if err != nil {
		panic(err)
	}
	return bytes.NewReader(b)
}

func ev(eid, user, typ string, payload map[string]any) map[string]any {
	m := map[string]any{"eid": eid, "event_date": 1700000000123, "ext_brand_id": brand, "user_ext_id": user, "event_type": typ}
	if payload != nil {
		m["payload"] = payload
	}
	return m
}

func TestAPIKeyIsRequired(t *testing.T) {
	e := newEnv(t, store.FirewallReject, nil)
	revoked, info, err := e.st.CreateAPIKey(ctx, label)
	if err != nil || e.st.RevokeAPIKey(ctx, label, info.ID) != nil {
		t.Fatal(err)
	}
	for name, auth := range map[string]string{"none": "", "unknown": "bpk_x_y", "revoked": revoked, "bearer of nothing": "Bearer "} {
		t.Run(name, func(t *testing.T) {
			// The body is never read: a reader that fails would show.
			a := e.post(t, auth, iotest.ErrReader(errors.New("body read before authentication")))
			if a.status != http.StatusUnauthorized || a.body.ErrCode != event.CodeWrongAPIKey {
				t.Fatalf("%d %s", a.status, a.raw)
			}
		})
	}
	for name, auth := range map[string]string{"plain": e.key, "bearer": "Bearer " + e.key} {
		t.Run(name, func(t *testing.T) {
			if a := e.post(t, auth, strings.NewReader("[]")); a.status != http.StatusOK || a.body.ErrCode != 0 {
				t.Fatalf("%d %s", a.status, a.raw)
			}
		})
	}
}

func TestOversizedBatchIs413(t *testing.T) {
	e := newEnv(t, store.FirewallReject, nil)
	t.Run("declared", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, eventsapi.Path, iotest.ErrReader(errors.New("body read despite Content-Length")))
		req.ContentLength = eventsapi.MaxBatchBytes + 1
		req.Header.Set("Authorization", e.key)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), `"err_code":10005`) {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
	t.Run("streamed", func(t *testing.T) {
		// A valid-looking array that goes on past 10 MB: refused once the
		// limit is crossed, with nothing stored.
		one, _ := json.Marshal(ev("big-0", "u1", "registration", map[string]any{"pad": strings.Repeat("x", 1000)}))
		var body bytes.Buffer
		body.WriteByte('[')
		for i := 0; body.Len() <= eventsapi.MaxBatchBytes; i++ {
			if i > 0 {
				body.WriteByte(',')
			}
			body.Write(bytes.Replace(one, []byte("big-0"), []byte(fmt.Sprintf("big-%d", i)), 1))
		}
		body.WriteByte(']')
		counted := &countingReader{r: &body}
		a := e.post(t, e.key, struct{ io.Reader }{counted}) // hides the length
		if a.status != http.StatusRequestEntityTooLarge || a.body.ErrCode != eventsapi.CodeTooLarge {
			t.Fatalf("%d %s", a.status, a.raw)
		}
		if counted.n > eventsapi.MaxBatchBytes+64<<10 {
			t.Errorf("read %d bytes of an oversized body", counted.n)
		}
		if _, err := e.st.Player(ctx, label, brand, "u1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("an event of a refused batch was stored: %v", err)
		}
	})
	t.Run("exactly the limit is accepted", func(t *testing.T) {
		one, _ := json.Marshal(ev("fit", "u2", "registration", nil))
		pad := eventsapi.MaxBatchBytes - len(one) - 2
		body := "[" + string(one) + strings.Repeat(" ", pad) + "]"
		if len(body) != eventsapi.MaxBatchBytes {
			t.Fatal(len(body))
		}
		if a := e.post(t, e.key, strings.NewReader(body)); a.status != http.StatusOK {
			t.Fatalf("%d %s", a.status, a.raw)
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestMalformedBodyIs400AndStoresNothing(t *testing.T) {
	e := newEnv(t, store.FirewallReject, nil)
	good, _ := json.Marshal(ev("m-good", "u1", "registration", nil))
	for name, body := range map[string]string{
		"empty":           "",
		"object":          string(good),
		"string":          `"[]"`,
		"truncated":       "[" + string(good),
		"broken element":  "[" + string(good) + `,{"eid":}]`,
		"trailing comma":  "[" + string(good) + ",]",
		"trailing data":   "[" + string(good) + "] []",
		"value after end": "[" + string(good) + `] {"` + canary + `":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			a := e.post(t, e.key, strings.NewReader(body))
			if a.status != http.StatusBadRequest || a.body.ErrCode != eventsapi.CodeMalformed || a.body.ErrMessage == "" {
				t.Fatalf("%d %s", a.status, a.raw)
			}
		})
	}
	if _, err := e.st.Player(ctx, label, brand, "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an event of a malformed batch was stored: %v", err)
	}
}

func TestPerEventCodes(t *testing.T) {
	e := newEnv(t, store.FirewallReject, nil)
	if a := e.post(t, e.key, batch(ev("p-reg", "u1", "registration", nil), ev("p-dup", "u1", "bet", nil))); len(a.body.EventErrors) != 0 {
		t.Fatalf("setup: %s", a.raw)
	}
	wrongBrand := ev("p-brand", "u1", "login", nil)
	wrongBrand["ext_brand_id"] = "other"
	a := e.post(t, e.key, batch(
		ev("p-ok", "u1", "deposit", map[string]any{"amount": 10}),
		ev("p-dup", "u1", "bet", nil),
		ev("p-ghost", "u-ghost", "login", nil),
		wrongBrand,
		ev("p-type", "u1", "tournament_won", nil),
		ev("p-pii", "u1", "update_profile", map[string]any{"contact": canary}),
		map[string]any{"eid": 42},
		map[string]any{"eid": "p-invalid"},
	))
	if a.status != http.StatusOK || a.body.ErrCode != 0 {
		t.Fatalf("%d %s", a.status, a.raw)
	}
	want := map[string]int{"p-dup": 20056, "p-ghost": 10001, "p-brand": 125, "p-type": 10004, "p-pii": 10003, "#6": 10002, "p-invalid": 10002}
	if len(a.body.EventErrors) != len(want) {
		t.Errorf("event_errors %s", a.raw)
	}
	for k, code := range want {
		errs := a.body.EventErrors[k]
		if len(errs) != 1 || errs[0].Code != code || errs[0].Message == "" {
			t.Errorf("event_errors[%s] = %+v, want code %d", k, errs, code)
		}
	}
	if msg := a.body.EventErrors["p-pii"][0].Message; !strings.Contains(msg, "email at payload.contact") {
		t.Errorf("PII message %q does not give reason and path", msg)
	}
}

func TestAnswerHasTheReferenceShape(t *testing.T) {
	e := newEnv(t, store.FirewallReject, nil)
	a := e.post(t, e.key, batch(ev("s-1", "u1", "registration", nil)))
	if a.raw != `{"err_code":0,"event_errors":{}}`+"\n" {
		t.Errorf("all stored: %q", a.raw)
	}
	a = e.post(t, e.key, batch(ev("s-1", "u1", "registration", nil), ev("s-1", "u1", "registration", nil)))
	want := `{"err_code":0,"event_errors":{"s-1":[{"error_code":20056,"error_message":"duplicate eid: stored before, nothing changed"},` +
		`{"error_code":20056,"error_message":"duplicate eid: stored before, nothing changed"}]}}` + "\n"
	if a.raw != want {
		t.Errorf("duplicates: %s", a.raw)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestRetryOfABatchIsAllDuplicates(t *testing.T) {
	e := newEnv(t, store.FirewallReject, nil)
	var evs []map[string]any
	for i := range 100 {
		evs = append(evs, ev(fmt.Sprintf("r-%03d", i), fmt.Sprintf("u%d", i%7), "registration", map[string]any{"n": i}))
	}
	body, _ := json.Marshal(evs)
	if a := e.post(t, e.key, bytes.NewReader(body)); a.status != http.StatusOK || len(a.body.EventErrors) != 0 {
		t.Fatalf("first: %s", a.raw)
	}
	a := e.post(t, e.key, bytes.NewReader(body))
	if a.status != http.StatusOK || len(a.body.EventErrors) != 100 {
		t.Fatalf("retry: %d, %d errors", a.status, len(a.body.EventErrors))
	}
	for eid, errs := range a.body.EventErrors {
		if len(errs) != 1 || errs[0].Code != event.CodeDuplicateEID {
			t.Fatalf("%s: %+v", eid, errs)
		}
	}
}

func TestStoreFailureIs503AndARetryStoresTheBatch(t *testing.T) {
	fs := &flakyStore{}
	e := newEnv(t, store.FirewallReject, func(s ingest.Store) ingest.Store { fs.Store = s; return fs })
	body, _ := json.Marshal([]map[string]any{ev("f-1", "u1", "registration", nil)})
	fs.down = true
	a := e.post(t, e.key, bytes.NewReader(body))
	if a.status != http.StatusServiceUnavailable || a.body.ErrCode != eventsapi.CodeUnavailable || a.header.Get("Retry-After") == "" {
		t.Fatalf("%d %s", a.status, a.raw)
	}
	if strings.Contains(a.raw, "database") {
		t.Errorf("internal error leaked: %s", a.raw)
	}
	fs.down = false
	if a := e.post(t, e.key, bytes.NewReader(body)); a.status != http.StatusOK || len(a.body.EventErrors) != 0 {
		t.Fatalf("retry: %s", a.raw)
	}
}

type flakyStore struct {
	ingest.Store
	down bool
}

func (f *flakyStore) Ingest(ctx context.Context, l string, evs []event.Event, rs []event.Rejection) ([]store.Outcome, error) {
	if f.down {
		return nil, errors.New("database unreachable")
	}
	return f.Store.Ingest(ctx, l, evs, rs)
}

func TestUpdateProfileOperatorsEndToEnd(t *testing.T) {
	e := newEnv(t, store.FirewallReject, nil)
	steps := []map[string]any{
		ev("op-1", "u1", "registration", map[string]any{"level": 1}),
		ev("op-2", "u1", "update_profile", map[string]any{"tags": []any{"new"}, "+tags": []any{"vip", "slots_fan", "slots_pro"}, "core_is_sms_disabled_by_platform": true, "nickname_token": "x"}),
		ev("op-3", "u1", "update_profile", map[string]any{"-tags": "new", "^tags": "slots_*", "+tags": "vip", "!nickname_token": nil, "level": 2}),
	}
	for _, s := range steps {
		if a := e.post(t, e.key, batch(s)); len(a.body.EventErrors) != 0 {
			t.Fatalf("%v: %s", s["eid"], a.raw)
		}
	}
	ps, err := e.st.Player(ctx, label, brand, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ps.Tags, []string{"vip"}) {
		t.Errorf("tags %v, want [vip]", ps.Tags)
	}
	if _, ok := ps.Properties["nickname_token"]; ok {
		t.Errorf("!key did not delete: %v", ps.Properties)
	}
	if fmt.Sprint(ps.Properties["level"]) != "2" || !ps.OptOuts["core_is_sms_disabled_by_platform"] {
		t.Errorf("properties %v opt-outs %v", ps.Properties, ps.OptOuts)
	}
	// skip_cjm is accepted and the state still changes.
	s := ev("op-4", "u1", "update_profile", map[string]any{"level": 3})
	s["skip_cjm"] = true
	if a := e.post(t, e.key, batch(s)); len(a.body.EventErrors) != 0 {
		t.Fatal(a.raw)
	}
	if ps, _ := e.st.Player(ctx, label, brand, "u1"); fmt.Sprint(ps.Properties["level"]) != "3" {
		t.Errorf("skip_cjm update not applied: %v", ps.Properties)
	}
}

func TestStripAndRejectModes(t *testing.T) {
	for _, mode := range []string{store.FirewallReject, store.FirewallStrip} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, mode, nil)
			a := e.post(t, e.key, batch(
				ev("x-reg", "u1", "registration", nil),
				ev("x-up", "u1", "update_profile", map[string]any{"vip": true, "personal": map[string]any{"email": canary}}),
			))
			ps, err := e.st.Player(ctx, label, brand, "u1")
			if err != nil {
				t.Fatal(err)
			}
			if mode == store.FirewallReject {
				if errs := a.body.EventErrors["x-up"]; len(errs) != 1 || errs[0].Code != event.CodePII {
					t.Fatalf("reject: %s", a.raw)
				}
				if _, ok := ps.Properties["vip"]; ok {
					t.Errorf("a refused event changed the player: %v", ps.Properties)
				}
				return
			}
			if len(a.body.EventErrors) != 0 {
				t.Fatalf("strip: %s", a.raw)
			}
			if ps.Properties["vip"] != true || strings.Contains(fmt.Sprint(ps.Properties), canary) {
				t.Errorf("strip: properties %v", ps.Properties)
			}
		})
	}
}

func TestOnlyPOSTOnThePath(t *testing.T) {
	e := newEnv(t, store.FirewallReject, nil)
	for _, tc := range []struct{ method, path string }{{http.MethodGet, eventsapi.Path}, {http.MethodPost, "/api/external/events/v1"}} {
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader("[]")))
		if rec.Code != http.StatusMethodNotAllowed && rec.Code != http.StatusNotFound {
			t.Errorf("%s %s: %d", tc.method, tc.path, rec.Code)
		}
	}
}
