package policy_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/blindpost/blindpost/policy"
)

var testTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func mustNew(t testing.TB, bundle fs.FS, opts policy.Options) *policy.Evaluator {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return testTime }
	}
	e, err := policy.New(context.Background(), bundle, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// regoFS is a bundle of Rego files given as name, source pairs.
func regoFS(nameSrc ...string) fstest.MapFS {
	m := fstest.MapFS{}
	for i := 0; i < len(nameSrc); i += 2 {
		m[nameSrc[i]] = &fstest.MapFile{Data: []byte(nameSrc[i+1])}
	}
	return m
}

// trivialPolicy allows everything; it is the baseline for benchmarks.
const trivialPolicy = `package blindpost.gateway

decision := {"allow": true, "reasons": [], "obligations": {}}
`

func accept(channel, category string, placeholders ...string) policy.Input {
	return policy.Input{
		API: "native", Stage: "accept", Tenant: "t1", Brand: "b1",
		Channel: channel, Category: category, Purpose: "test",
		Placeholders: placeholders,
	}
}

func send(channel, category string, s policy.Subject, placeholders ...string) policy.Input {
	in := accept(channel, category, placeholders...)
	in.Stage = "send"
	in.Subject = &s
	return in
}

func subject(optOuts, consents map[string]bool) policy.Subject {
	return policy.Subject{
		Pseudonym: "ps_0123", Country: "MT", LocalHour: 14,
		OptOuts: optOuts, Consents: consents, Addressable: true,
	}
}

func on(k ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range k {
		m[k] = true
	}
	return m
}

func TestDecideShippedBundle(t *testing.T) {
	e := mustNew(t, policy.BundleFS(), policy.Options{})
	selfExcluded := subject(nil, on("marketing_email"))
	selfExcluded.SelfExcluded = true
	unaddressable := subject(nil, nil)
	unaddressable.Addressable = false

	tests := []struct {
		name    string
		in      policy.Input
		reasons []string // nil: allowed
	}{
		{"transactional email with allowed fields is allowed at accept",
			accept("email", "transactional", "email", "first_name"), nil},
		{"transactional email is allowed at send",
			send("email", "transactional", subject(nil, nil), "first_name"), nil},
		{"marketing with consent is allowed",
			send("sms", "marketing", subject(nil, on("marketing_sms")), "first_name"), nil},
		{"platform opted-out subject is denied",
			send("email", "transactional", subject(on("core_is_email_disabled_by_platform"), nil)), []string{"opted_out"}},
		{"platform push opt-out denies push",
			send("push", "transactional", subject(on("core_is_push_disabled_by_platform"), nil)), []string{"opted_out"}},
		{"player opted-out subject gets no marketing",
			send("email", "marketing", subject(on("core_is_email_disabled"), on("marketing_email"))), []string{"opted_out"}},
		{"transactional to a player-opted-out subject is still allowed",
			send("sms", "transactional", subject(on("core_is_sms_disabled"), nil)), nil},
		{"marketing without consent is denied",
			send("email", "marketing", subject(nil, nil)), []string{"no_marketing_consent"}},
		{"self-excluded subject gets no marketing",
			send("email", "marketing", selfExcluded), []string{"self_excluded"}},
		{"self-excluded subject still gets transactional",
			send("email", "transactional", selfExcluded), nil},
		{"forbidden pii field is denied at accept",
			accept("email", "marketing", "email"), []string{"pii_field_not_allowed"}},
		{"forbidden pii field is denied at send",
			send("sms", "transactional", subject(nil, nil), "phone"), []string{"pii_field_not_allowed"}},
		{"unknown channel is an invalid request",
			accept("fax", "transactional"), []string{"invalid_request"}},
		{"unknown category is an invalid request",
			accept("email", "promo"), []string{"invalid_request"}},
		{"send without subject is an invalid request",
			func() policy.Input { in := accept("email", "transactional"); in.Stage = "send"; return in }(),
			[]string{"invalid_request"}},
		{"unaddressable subject is an unknown recipient",
			send("email", "transactional", unaddressable), []string{"unknown_recipient"}},
		{"every reason is reported, sorted",
			send("email", "marketing", subject(on("core_is_email_disabled"), nil), "phone"),
			[]string{"no_marketing_consent", "opted_out", "pii_field_not_allowed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Decide(context.Background(), tt.in)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if want := tt.reasons == nil; d.Allow != want {
				t.Errorf("Allow = %v, want %v (reasons %q)", d.Allow, want, d.Reasons)
			}
			want := tt.reasons
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(d.Reasons, want) || d.Reasons == nil {
				t.Errorf("Reasons = %#v, want %#v", d.Reasons, want)
			}
			if d.Obligations == nil {
				t.Error("Obligations is nil, want an object")
			}
		})
	}
}

func TestDecisionRecordsWhatTheLogNeeds(t *testing.T) {
	e := mustNew(t, policy.BundleFS(), policy.Options{})
	d1, err := e.Decide(context.Background(), accept("email", "transactional"))
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := e.Decide(context.Background(), accept("email", "transactional"))
	if b, err := hex.DecodeString(d1.ID); err != nil || len(b) != 16 {
		t.Errorf("ID = %q, want 16 bytes hex", d1.ID)
	}
	if d1.ID == d2.ID {
		t.Error("two decisions share an ID")
	}
	if !d1.Time.Equal(testTime) {
		t.Errorf("Time = %v, want the injected clock's %v", d1.Time, testTime)
	}
	if d1.Path != "blindpost/gateway/decision" {
		t.Errorf("Path = %q", d1.Path)
	}
	if d1.Revision != e.Revision() || len(d1.Revision) != 64 {
		t.Errorf("Revision = %q, evaluator %q", d1.Revision, e.Revision())
	}
}

func TestNewFailsClosed(t *testing.T) {
	tests := []struct {
		name   string
		bundle fs.FS
		is     error // nil: any error
	}{
		{"no bundle", nil, policy.ErrNoBundle},
		{"empty bundle", fstest.MapFS{}, policy.ErrNoBundle},
		{"bundle with data only", regoFS("data.json", `{}`), policy.ErrNoBundle},
		{"bundle with tests only", regoFS("a_test.rego", "package a_test\n\ntest_x if true\n"), policy.ErrNoBundle},
		{"syntax error", regoFS("decision.rego", "package blindpost.gateway\n\ndecision := {\n"), nil},
		{"compile error", regoFS("decision.rego", "package blindpost.gateway\n\ndecision := undefined_function(1)\n"), nil},
		{"network builtin refused", regoFS("decision.rego",
			"package blindpost.gateway\n\ndecision := http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1/\"}).body\n"), nil},
		{"clock builtin refused", regoFS("decision.rego",
			"package blindpost.gateway\n\ndecision := {\"allow\": time.now_ns() > 0, \"reasons\": [], \"obligations\": {}}\n"), nil},
		{"malformed data.json", regoFS("decision.rego", trivialPolicy, "data.json", `{"a":`), nil},
		{"data.json not at the root", regoFS("decision.rego", trivialPolicy, "x/data.json", `{}`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := policy.New(context.Background(), tt.bundle, policy.Options{})
			if err == nil {
				t.Fatalf("New succeeded (revision %s), want an error", e.Revision())
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want %v", err, tt.is)
			}
		})
	}
}

// slowPolicy takes seconds to decide; only a time-out stops it.
const slowPolicy = `package blindpost.gateway

decision := {"allow": slow, "reasons": [], "obligations": {}}

slow if {
	every i in numbers.range(1, 10000) {
		every j in numbers.range(1, 10000) {
			i + j > 0
		}
	}
}
`

func TestDecideFailsClosed(t *testing.T) {
	const pkg = "package blindpost.gateway\n\n"
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		bundle  fs.FS
		ctx     context.Context
		timeout time.Duration
	}{
		{"undefined decision", regoFS("d.rego", pkg+"decision := x if { x := input.nothing }\n"), nil, 0},
		{"decision of the wrong type", regoFS("d.rego", pkg+"decision := \"allow\"\n"), nil, 0},
		{"allow of the wrong type", regoFS("d.rego", pkg+`decision := {"allow": "yes", "reasons": [], "obligations": {}}`+"\n"), nil, 0},
		{"reasons of the wrong type", regoFS("d.rego", pkg+`decision := {"allow": false, "reasons": [1], "obligations": {}}`+"\n"), nil, 0},
		{"obligations missing", regoFS("d.rego", pkg+`decision := {"allow": true, "reasons": []}`+"\n"), nil, 0},
		{"allow with reasons", regoFS("d.rego", pkg+`decision := {"allow": true, "reasons": ["opted_out"], "obligations": {}}`+"\n"), nil, 0},
		{"deny without reason", regoFS("d.rego", pkg+`decision := {"allow": false, "reasons": [], "obligations": {}}`+"\n"), nil, 0},
		{"conflicting values", regoFS("d.rego", pkg+"decision := 1 if input.stage\ndecision := 2 if input.api\n"), nil, 0},
		{"builtin error", regoFS("d.rego", pkg+`decision := {"allow": to_number(input.stage) > 0, "reasons": [], "obligations": {}}`+"\n"), nil, 0},
		{"evaluation time-out", regoFS("d.rego", slowPolicy), nil, 20 * time.Millisecond},
		{"caller cancelled", regoFS("d.rego", slowPolicy), cancelled, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustNew(t, tt.bundle, policy.Options{Timeout: tt.timeout})
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			start := time.Now()
			d, err := e.Decide(ctx, accept("email", "transactional"))
			if !errors.Is(err, policy.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if d.Allow || !slices.Equal(d.Reasons, []string{"policy_unavailable"}) {
				t.Errorf("decision = %v %q, want denied with policy_unavailable", d.Allow, d.Reasons)
			}
			if d.ID == "" || d.Revision != e.Revision() || d.Time.IsZero() {
				t.Errorf("denied decision lacks log fields: %+v", d)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("Decide took %v", el)
			}
		})
	}
}

func TestDefaultTimeoutStopsSlowPolicy(t *testing.T) {
	e := mustNew(t, regoFS("d.rego", slowPolicy), policy.Options{})
	start := time.Now()
	_, err := e.Decide(context.Background(), accept("email", "transactional"))
	if !errors.Is(err, policy.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if el := time.Since(start); el < policy.DefaultTimeout || el > 10*policy.DefaultTimeout {
		t.Errorf("Decide took %v, want about %v", el, policy.DefaultTimeout)
	}
}

func TestRevisionChangesWhenFileChanges(t *testing.T) {
	base := regoFS("decision.rego", trivialPolicy, "data.json", `{"a": 1}`)
	rev := func(b fs.FS, opts policy.Options) string { return mustNew(t, b, opts).Revision() }
	r0 := rev(base, policy.Options{})
	if r0 != rev(maps.Clone(base), policy.Options{}) {
		t.Fatal("the same bundle gives two revisions")
	}

	edited := maps.Clone(base)
	edited["decision.rego"] = &fstest.MapFile{Data: []byte(trivialPolicy + "\n# reviewed\n")}
	renamed := regoFS("other.rego", trivialPolicy, "data.json", `{"a": 1}`)
	data := maps.Clone(base)
	data["data.json"] = &fstest.MapFile{Data: []byte(`{"a": 2}`)}
	added := maps.Clone(base)
	added["more.rego"] = &fstest.MapFile{Data: []byte("package blindpost.other\n\nx := 1\n")}
	for name, b := range map[string]fs.FS{"rule edited": edited, "file renamed": renamed, "data edited": data, "file added": added} {
		if rev(b, policy.Options{}) == r0 {
			t.Errorf("%s: revision unchanged", name)
		}
	}
	if rev(base, policy.Options{Data: map[string]any{"a": 2}}) == r0 {
		t.Error("Options.Data: revision unchanged")
	}

	// Tests and other files are not part of the production policy.
	withTests := maps.Clone(base)
	withTests["decision_test.rego"] = &fstest.MapFile{Data: []byte("package x_test\n\ntest_x if true\n")}
	withTests["README.md"] = &fstest.MapFile{Data: []byte("notes")}
	if rev(withTests, policy.Options{}) != r0 {
		t.Error("adding a test file or a README changed the revision")
	}
}

func TestOptionsDataOverridesSettings(t *testing.T) {
	in := accept("email", "marketing", "first_name", "last_name")
	d, _ := mustNew(t, policy.BundleFS(), policy.Options{}).Decide(context.Background(), in)
	if d.Allow {
		t.Fatal("shipped settings allow last_name in marketing; test premise broken")
	}
	override := map[string]any{"blindpost": map[string]any{"settings": map[string]any{"pii_fields": map[string]any{
		"marketing": map[string]any{"email": []string{"first_name", "last_name"}},
	}}}}
	e := mustNew(t, policy.BundleFS(), policy.Options{Data: override})
	if d, err := e.Decide(context.Background(), in); err != nil || !d.Allow {
		t.Errorf("with override: allow=%v reasons=%q err=%v, want allowed", d.Allow, d.Reasons, err)
	}
	// Settings not overridden are kept from data.json.
	if d, _ := e.Decide(context.Background(), accept("sms", "marketing", "first_name")); !d.Allow {
		t.Errorf("marketing sms lost its shipped settings: %q", d.Reasons)
	}
}

func TestDecideConcurrently(t *testing.T) {
	e := mustNew(t, policy.BundleFS(), policy.Options{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				in := send("email", "marketing", subject(nil, on("marketing_email")))
				if i%2 == 1 {
					in.Subject.Consents = nil
				}
				d, err := e.Decide(context.Background(), in)
				if err != nil || d.Allow != (i%2 == 0) {
					t.Errorf("goroutine %d: allow=%v reasons=%q err=%v", i, d.Allow, d.Reasons, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A denied decision's error names no input values: policy input is derived
// attributes only, and errors do not echo it.
func TestErrorsCarryNoInput(t *testing.T) {
	// to_number's error message quotes its operand.
	e := mustNew(t, regoFS("d.rego", "package blindpost.gateway\n\ndecision := to_number(input.subject.pseudonym)\n"), policy.Options{})
	in := send("email", "transactional", subject(nil, nil))
	in.Subject.Pseudonym = "ps_canary_4711"
	_, err := e.Decide(context.Background(), in)
	if err == nil || strings.Contains(err.Error(), "canary") {
		t.Errorf("err = %v", err)
	}
}

func BenchmarkDecide(b *testing.B) {
	e := mustNew(b, policy.BundleFS(), policy.Options{})
	in := send("email", "marketing", subject(on("core_is_sms_disabled"), on("marketing_email")), "first_name")
	benchDecide(b, e, in, true)
}

func BenchmarkDecideTrivial(b *testing.B) {
	e := mustNew(b, regoFS("decision.rego", trivialPolicy), policy.Options{})
	in := send("email", "marketing", subject(on("core_is_sms_disabled"), on("marketing_email")), "first_name")
	benchDecide(b, e, in, true)
}

func benchDecide(b *testing.B, e *policy.Evaluator, in policy.Input, allow bool) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.Decide(ctx, in)
		if err != nil || d.Allow != allow {
			b.Fatalf("allow=%v reasons=%q err=%v", d.Allow, d.Reasons, err)
		}
	}
}
