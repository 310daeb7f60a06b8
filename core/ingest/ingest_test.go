package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/firewall"
	"github.com/blindpost/blindpost/core/ingest"
	"github.com/blindpost/blindpost/core/store"
)

var ctx = context.Background()

const (
	label = "acme"
	brand = "acme-casino"
	known = "u-known" // a player registered by setup
)

// openStore opens a fresh SQLite store with label acme: one brand, one
// custom event type, the given firewall mode and a registered player.
func openStore(t testing.TB, mode string) *store.Store {
	t.Helper()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "core.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	must(t, st.CreateLabel(ctx, label, "Acme"))
	must(t, st.AddBrand(ctx, label, brand))
	must(t, st.RegisterEventType(ctx, label, "mission_done"))
	must(t, st.SetFirewallMode(ctx, label, mode))
	outs, err := st.Ingest(ctx, label, []event.Event{{EID: "setup-reg", EventDate: 1700000000000, Brand: brand, User: known, Type: event.TypeRegistration}}, nil)
	if err != nil || len(outs) != 1 || outs[0] != (store.Outcome{}) {
		t.Fatalf("registering the known player: %v %+v", err, outs)
	}
	return st
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newPipeline(st ingest.Store, reg prometheus.Registerer) *ingest.Pipeline {
	return ingest.New(st, firewall.New(firewall.Options{}), ingest.Options{Registerer: reg})
}

// ev builds one event's JSON.
func ev(eid, user, typ string, payload map[string]any) json.RawMessage {
	m := map[string]any{"eid": eid, "event_date": 1700000000123, "ext_brand_id": brand, "user_ext_id": user, "event_type": typ}
	if payload != nil {
		m["payload"] = payload
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func TestEachEventGetsItsCode(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	p := newPipeline(st, nil)
	const canary = "canary.player@example.com"
	tests := []struct {
		name    string
		raw     string
		code    int    // 0: stored without error
		eid     string // the key the error is under
		mention string // the message names this
	}{
		{"registration of a new player", string(ev("e-reg", "u-new", "registration", map[string]any{"vip": true})), 0, "", ""},
		{"deposit of a known player", string(ev("e-dep", known, "deposit", map[string]any{"amount": 10.5, "currency": "EUR"})), 0, "", ""},
		{"registered custom type", string(ev("e-custom", known, "mission_done", nil)), 0, "", ""},
		{"login of an unknown player is stored, flagged", string(ev("e-login", "u-ghost", "login", nil)), event.CodeUserNotFound, "e-login", "user not found"},
		{"missing eid", `{"event_date":1700000000123,"ext_brand_id":"acme-casino","user_ext_id":"u1","event_type":"login"}`, event.CodeInvalid, "", "eid"},
		{"missing user", `{"eid":"e-nouser","event_date":1700000000123,"ext_brand_id":"acme-casino","event_type":"login"}`, event.CodeInvalid, "e-nouser", "user_ext_id"},
		{"wrong type of a field", `{"eid":"e-type","event_date":"yesterday","ext_brand_id":"acme-casino","user_ext_id":"u1","event_type":"login"}`, event.CodeInvalid, "e-type", "event_date"},
		{"unknown top-level field", `{"eid":"e-unknown","event_date":1,"ext_brand_id":"b","user_ext_id":"u","event_type":"login","email":"` + canary + `"}`, event.CodeInvalid, "e-unknown", "invalid event"},
		{"not an object", `[1,2]`, event.CodeInvalid, "", "invalid event"},
		{"brand of another label", strings.Replace(string(ev("e-brand", known, "login", nil)), brand, "other-brand", 1), event.CodeBrandNotFound, "e-brand", "ext_brand_id"},
		{"unregistered type", string(ev("e-unreg", known, "tournament_won", nil)), event.CodeUnknownType, "e-unreg", "event_type"},
		{"email in the payload", string(ev("e-pii", known, "update_profile", map[string]any{"contact": map[string]any{"email": canary}})), event.CodePII, "e-pii", "email at payload.contact.email"},
		{"phone in the payload", string(ev("e-phone", known, "deposit", map[string]any{"note": "+15555550123"})), event.CodePII, "e-phone", "phone at payload.note"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := p.Ingest(ctx, label, []json.RawMessage{json.RawMessage(tc.raw)})
			if err != nil {
				t.Fatal(err)
			}
			if tc.code == 0 {
				if len(res.Errors) != 0 || res.Stored != 1 {
					t.Fatalf("want stored without error, got %+v", res)
				}
				return
			}
			if len(res.Errors) != 1 {
				t.Fatalf("want one error, got %+v", res)
			}
			e := res.Errors[0]
			if e.Code != tc.code || e.EID != tc.eid || e.Index != 0 {
				t.Errorf("error %+v, want code %d under eid %q", e, tc.code, tc.eid)
			}
			if !strings.Contains(e.Message, tc.mention) {
				t.Errorf("message %q does not mention %q", e.Message, tc.mention)
			}
			if strings.Contains(e.Message, canary) || strings.Contains(e.Message, "5550123") {
				t.Errorf("message %q echoes a value", e.Message)
			}
			wantStored := tc.code == event.CodeUserNotFound
			if (res.Stored == 1) != wantStored || (res.Refused == 1) == wantStored {
				t.Errorf("stored %d refused %d (case %d)", res.Stored, res.Refused, i)
			}
		})
	}
}

func TestRetriedBatchIsAllDuplicates(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	p := newPipeline(st, nil)
	var batch []json.RawMessage
	for i := range 50 {
		batch = append(batch, ev(fmt.Sprintf("retry-%d", i), known, "bet", map[string]any{"amount": i}))
	}
	first, err := p.Ingest(ctx, label, batch)
	if err != nil || first.Stored != 50 || len(first.Errors) != 0 {
		t.Fatalf("first: %v %+v", err, first)
	}
	second, err := p.Ingest(ctx, label, batch)
	if err != nil {
		t.Fatal(err)
	}
	if second.Duplicates != 50 || second.Stored != 0 || len(second.Errors) != 50 {
		t.Fatalf("second: %+v", second)
	}
	for i, e := range second.Errors {
		if e.Code != event.CodeDuplicateEID || e.Index != i || e.EID != fmt.Sprintf("retry-%d", i) {
			t.Fatalf("error %d: %+v", i, e)
		}
	}
}

func TestErrorsComeInBatchOrder(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	p := newPipeline(st, nil)
	if _, err := p.Ingest(ctx, label, []json.RawMessage{ev("dup", known, "bet", nil)}); err != nil {
		t.Fatal(err)
	}
	batch := []json.RawMessage{
		ev("dup", known, "bet", nil),          // 0: duplicate
		ev("bad-type", known, "nope", nil),    // 1: unknown type
		ev("ghost", "u-ghost", "login", nil),  // 2: user not found
		ev("fine", known, "win", nil),         // 3: stored
		json.RawMessage(`{"eid":5}`),          // 4: invalid, no usable eid
		ev("dup-in-batch", known, "bet", nil), // 5: stored
		ev("dup-in-batch", known, "bet", nil), // 6: duplicate of 5
	}
	res, err := p.Ingest(ctx, label, batch)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		index, code int
		eid         string
	}{{0, 20056, "dup"}, {1, 10004, "bad-type"}, {2, 10001, "ghost"}, {4, 10002, ""}, {6, 20056, "dup-in-batch"}}
	if len(res.Errors) != len(want) {
		t.Fatalf("errors %+v", res.Errors)
	}
	for i, w := range want {
		if e := res.Errors[i]; e.Index != w.index || e.Code != w.code || e.EID != w.eid {
			t.Errorf("error %d = %+v, want %+v", i, e, w)
		}
	}
	if res.Stored != 3 || res.Duplicates != 2 || res.Refused != 2 {
		t.Errorf("counts %+v", res)
	}
}

func TestRejectModeRecordsReasonAndPathOnly(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	p := newPipeline(st, nil)
	const canary = "4111111111111111"
	res, err := p.Ingest(ctx, label, []json.RawMessage{ev("e-card", known, "deposit", map[string]any{"card_number": canary})})
	if err != nil || res.Refused != 1 {
		t.Fatalf("%v %+v", err, res)
	}
	rs, err := st.Rejections(ctx, label, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) == 0 || rs[0].EID != "e-card" || rs[0].Path != "payload.card_number" {
		t.Fatalf("rejections %+v", rs)
	}
	for _, r := range rs {
		if strings.Contains(fmt.Sprint(r), canary) {
			t.Errorf("rejection %+v holds the value", r)
		}
	}
	if _, err := st.Player(ctx, label, brand, known); err != nil {
		t.Fatal(err)
	}
}

func TestStripModeKeepsTheEventWithoutThePII(t *testing.T) {
	st := openStore(t, store.FirewallStrip)
	reg := prometheus.NewRegistry()
	p := newPipeline(st, reg)
	res, err := p.Ingest(ctx, label, []json.RawMessage{ev("e-strip", known, "update_profile", map[string]any{
		"vip": true, "contact_email": "canary.player@example.com", "core_is_email_disabled": true,
	})})
	if err != nil || res.Stored != 1 || len(res.Errors) != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	ps, err := st.Player(ctx, label, brand, known)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Properties["vip"] != true || !ps.OptOuts["core_is_email_disabled"] {
		t.Errorf("kept properties lost: %+v", ps.Properties)
	}
	if _, ok := ps.Properties["contact_email"]; ok {
		t.Errorf("stripped property stored: %+v", ps.Properties)
	}
	if got := value(t, reg, "blindpost_core_firewall_stripped_total", map[string]string{"label": label, "reason": "email"}); got != 1 {
		t.Errorf("stripped counter = %v, want 1", got)
	}
	// An id that is PII cannot be stripped: the event is refused even here.
	res, err = p.Ingest(ctx, label, []json.RawMessage{ev("e-strip-user", "canary.player@example.com", "login", nil)})
	if err != nil || res.Refused != 1 || res.Errors[0].Code != event.CodePII {
		t.Fatalf("%v %+v", err, res)
	}
}

func TestEIDThatIsPIIIsNeverEchoedNorRecorded(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	p := newPipeline(st, nil)
	const canary = "canary.player@example.com"
	res, err := p.Ingest(ctx, label, []json.RawMessage{
		ev(canary, known, "login", nil),                   // caught by the firewall
		json.RawMessage(`{"eid":"` + canary + `","x":1}`), // invalid: the firewall never saw it
		ev(canary, known, "nope", nil),                    // unknown type, but the eid is PII first
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != 3 {
		t.Fatalf("%+v", res)
	}
	for _, e := range res.Errors {
		if e.EID != "" || strings.Contains(e.Message, canary) {
			t.Errorf("error %+v echoes the eid", e)
		}
	}
	rs, err := st.Rejections(ctx, label, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) == 0 {
		t.Fatal("no rejection recorded")
	}
	for _, r := range rs {
		if strings.Contains(r.EID, "example.com") {
			t.Errorf("rejection records the PII eid: %+v", r)
		}
	}
}

// failingStore refuses every batch, as an unreachable database would.
type failingStore struct{ ingest.Store }

var errDown = errors.New("database down")

func (failingStore) Ingest(context.Context, string, []event.Event, []event.Rejection) ([]store.Outcome, error) {
	return nil, errDown
}

func TestStoreFailureAcknowledgesNothing(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	reg := prometheus.NewRegistry()
	p := newPipeline(failingStore{st}, reg)
	batch := []json.RawMessage{ev("e1", known, "bet", nil), json.RawMessage(`{}`)}
	res, err := p.Ingest(ctx, label, batch)
	if !errors.Is(err, errDown) {
		t.Fatalf("err = %v, want the store's", err)
	}
	if res.Stored != 0 || len(res.Errors) != 0 {
		t.Errorf("result %+v on failure", res)
	}
	if err := p.SinkFor(label).Ingest(ctx, batch); !errors.Is(err, errDown) {
		t.Errorf("sink: %v, want the store's error so nothing is acked", err)
	}
	if got := value(t, reg, "blindpost_core_ingest_failures_total", map[string]string{"label": label}); got != 2 {
		t.Errorf("failures = %v, want 2", got)
	}
	// Nothing of a failed batch is counted as ingested: it comes again.
	mfs, err := reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "blindpost_core_events_total" {
			t.Errorf("%d event series after failures only", len(mf.GetMetric()))
		}
	}
}

func TestSinkAcknowledgesRefusedEvents(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	var logs bytes.Buffer
	p := ingest.New(st, firewall.New(firewall.Options{}), ingest.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	const canary = "canary.player@example.com"
	err := p.SinkFor(label).Ingest(ctx, []json.RawMessage{
		ev("s-ok", known, "bet", nil),
		json.RawMessage(`{"eid":"s-bad"}`),
		ev("s-pii", known, "update_profile", map[string]any{"mail": canary}),
	})
	if err != nil {
		t.Fatalf("refusals must be acknowledged: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "s-bad:10002") || !strings.Contains(out, "s-pii:10003") {
		t.Errorf("log does not name the refused events: %s", out)
	}
	if strings.Contains(out, canary) {
		t.Errorf("log holds a value: %s", out)
	}
	if err := p.SinkFor("no-such-label").Ingest(ctx, []json.RawMessage{ev("x", known, "bet", nil)}); !errors.Is(err, ingest.ErrUnknownLabel) {
		t.Errorf("unknown label: %v", err)
	}
}

func TestAuthenticate(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	p := newPipeline(st, nil)
	key, _, err := st.CreateAPIKey(ctx, label)
	must(t, err)
	if got, err := p.Authenticate(ctx, key); err != nil || got != label {
		t.Errorf("good key: %q %v", got, err)
	}
	for _, bad := range []string{"", "bpk_nope", key + "x"} {
		if _, err := p.Authenticate(ctx, bad); !errors.Is(err, ingest.ErrUnauthorized) {
			t.Errorf("key %q: %v, want ErrUnauthorized", bad, err)
		}
	}
}

func TestInvalidateAppliesAdminChangesAtOnce(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	now := time.Unix(1700000000, 0)
	p := ingest.New(st, firewall.New(firewall.Options{}), ingest.Options{Now: func() time.Time { return now }, LabelTTL: time.Hour})
	other := strings.Replace(string(ev("c1", known, "login", nil)), brand, "new-brand", 1)
	res, err := p.Ingest(ctx, label, []json.RawMessage{json.RawMessage(other)})
	if err != nil || res.Errors[0].Code != event.CodeBrandNotFound {
		t.Fatalf("%v %+v", err, res)
	}
	must(t, st.AddBrand(ctx, label, "new-brand"))
	if res, _ := p.Ingest(ctx, label, []json.RawMessage{json.RawMessage(other)}); res.Errors[0].Code != event.CodeBrandNotFound {
		t.Fatalf("cached label should still refuse: %+v", res)
	}
	p.Invalidate(label)
	res, err = p.Ingest(ctx, label, []json.RawMessage{json.RawMessage(other)})
	if err != nil || res.Refused != 0 {
		t.Fatalf("after Invalidate: %v %+v", err, res)
	}
}

func TestMetricsNameLabelsAndResultsOnly(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	reg := prometheus.NewRegistry()
	p := newPipeline(st, reg)
	const canary = "canary.player@example.com"
	_, err := p.Ingest(ctx, label, []json.RawMessage{
		ev("m1", known, "bet", nil), ev("m1", known, "bet", nil), ev("m2", "u-ghost", "bet", nil),
		ev("m3", known, "update_profile", map[string]any{"email": canary}), json.RawMessage(`{}`),
	})
	must(t, err)
	for result, want := range map[string]float64{"stored": 1, "duplicate": 1, "user_not_found": 1, "pii_rejected": 1, "invalid": 1} {
		if got := value(t, reg, "blindpost_core_events_total", map[string]string{"label": label, "result": result}); got != want {
			t.Errorf("events{result=%s} = %v, want %v", result, got, want)
		}
	}
	if got := value(t, reg, "blindpost_core_firewall_rejections_total", map[string]string{"label": label, "reason": "email"}); got != 1 {
		t.Errorf("rejections = %v", got)
	}
	mfs, err := reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if strings.Contains(mf.String(), canary) || strings.Contains(mf.String(), "u-ghost") {
			t.Errorf("metric %s holds an event value", mf.GetName())
		}
	}
}

// value returns the counter with exactly these labels, 0 if absent.
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestLargeBatchKeepsItsOrder goes through the workers: errors keep their
// batch index across chunks.
func TestLargeBatchKeepsItsOrder(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	p := newPipeline(st, nil)
	const n = 1000
	var batch []json.RawMessage
	want := map[int]int{} // index → code
	for i := range n {
		switch {
		case i%7 == 0:
			batch = append(batch, json.RawMessage(fmt.Sprintf(`{"eid":"big-%d"}`, i)))
			want[i] = event.CodeInvalid
		case i%11 == 0:
			batch = append(batch, ev(fmt.Sprintf("big-%d", i), known, "deposit", map[string]any{"iban": "DE89370400440532013000"}))
			want[i] = event.CodePII
		default:
			batch = append(batch, ev(fmt.Sprintf("big-%d", i), known, "bet", map[string]any{"n": i}))
		}
	}
	res, err := p.Ingest(ctx, label, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != len(want) || res.Stored != n-len(want) {
		t.Fatalf("%d errors, %d stored", len(res.Errors), res.Stored)
	}
	last := -1
	for _, e := range res.Errors {
		if e.Index <= last || want[e.Index] != e.Code || e.EID != fmt.Sprintf("big-%d", e.Index) {
			t.Fatalf("error %+v out of order or wrong (want code %d)", e, want[e.Index])
		}
		last = e.Index
	}
}

func TestRequireJSONRefusesTheWholeBatch(t *testing.T) {
	st := openStore(t, store.FirewallReject)
	p := newPipeline(st, nil)
	for _, require := range []bool{true, false} {
		b, err := p.Begin(ctx, label)
		must(t, err)
		if require {
			b.RequireJSON()
		}
		for i := range 300 {
			if i == 250 {
				b.Add(json.RawMessage(`{"eid":`))
				continue
			}
			b.Add(ev(fmt.Sprintf("rj-%v-%d", require, i), known, "bet", nil))
		}
		res, err := b.Commit(ctx)
		var me *ingest.MalformedError
		switch {
		case require && (!errors.As(err, &me) || me.Index != 250):
			t.Fatalf("RequireJSON: %v", err)
		case !require && (err != nil || res.Stored != 299 || res.Errors[0].Index != 250 || res.Errors[0].Code != event.CodeInvalid):
			t.Fatalf("without RequireJSON: %v %+v", err, res)
		}
	}
	// Nothing of the refused batch was stored: sent again, it is new.
	res, err := p.Ingest(ctx, label, []json.RawMessage{ev("rj-true-0", known, "bet", nil)})
	if err != nil || res.Stored != 1 {
		t.Fatalf("%v %+v", err, res)
	}
	b, err := p.Begin(ctx, label)
	must(t, err)
	for i := range 500 {
		b.Add(ev(fmt.Sprintf("abort-%d", i), known, "bet", nil))
	}
	b.Abort()
	res, err = p.Ingest(ctx, label, []json.RawMessage{ev("abort-1", known, "bet", nil)})
	if err != nil || res.Stored != 1 {
		t.Fatalf("aborted batch stored something: %v %+v", err, res)
	}
}
