package policy_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/bits"
	"math/rand/v2"
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

// with returns in changed by f.
func with(in policy.Input, f func(*policy.Input)) policy.Input {
	if in.Subject != nil {
		s := *in.Subject
		in.Subject = &s
	}
	f(&in)
	return in
}

// purposeFor holds a purpose the shipped settings allow in each category.
var purposeFor = map[string]string{"transactional": "password_reset", "marketing": "promotion"}

func accept(channel, category string, placeholders ...string) policy.Input {
	return policy.Input{
		API: "native", Stage: "accept", Tenant: "t1", Brand: "b1",
		Channel: channel, Category: category, Purpose: purposeFor[category],
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
		Pseudonym: "ps_0123", Country: "MT", LocalHour: 13, Timezone: "Europe/Malta",
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
			accept("email", "promo"), []string{"invalid_request", "purpose_not_allowed"}},
		{"send without subject is an invalid request",
			func() policy.Input { in := accept("email", "transactional"); in.Stage = "send"; return in }(),
			[]string{"invalid_request"}},
		{"unaddressable subject is an unknown recipient",
			send("email", "transactional", unaddressable), []string{"unknown_recipient"}},
		{"every reason is reported, sorted",
			send("email", "marketing", subject(on("core_is_email_disabled"), nil), "phone"),
			[]string{"no_marketing_consent", "opted_out", "pii_field_not_allowed"}},
		{"promotion labelled transactional is denied",
			with(accept("email", "transactional"), func(in *policy.Input) { in.Purpose = "promotion" }), []string{"purpose_not_allowed"}},
		{"self-excluded subject gets only listed transactional purposes",
			with(send("email", "transactional", selfExcluded), func(in *policy.Input) { in.Purpose = "deposit_confirmation" }), []string{"self_excluded"}},
		{"sender outside the brand's domains is denied",
			with(benchInput(), func(in *policy.Input) { in.FromDomain = "example.org" }), []string{"sender_not_allowed"}},
		{"compat preview to the staff domain is allowed",
			with(benchInput(), func(in *policy.Input) {
				in.API, in.ActivityType, in.ToOverrideDomain = "compat", "preview", "staff.example.com"
			}), nil},
		{"compat preview to another domain is denied",
			with(benchInput(), func(in *policy.Input) {
				in.API, in.ActivityType, in.ToOverrideDomain = "compat", "preview", "example.net"
			}),
			[]string{"recipient_override_not_allowed"}},
		{"country outside the brand's list is denied",
			with(benchInput(), func(in *policy.Input) { in.Subject.Country = "FR" }), []string{"country_not_allowed"}},
		{"marketing sms to a restricted country is denied",
			with(benchInput(), func(in *policy.Input) {
				in.Channel, in.Subject.Country, in.Subject.OptOuts, in.FromDomain = "sms", "US", nil, ""
			}), []string{"country_restricted"}},
		{"snoozed channel gets no marketing",
			with(benchInput(), func(in *policy.Input) {
				in.Subject.SnoozedUntil = map[string]time.Time{"email": testTime.Add(time.Hour)}
			}),
			[]string{"snoozed"}},
		{"marketing at the frequency cap is denied at accept",
			with(accept("email", "marketing"), func(in *policy.Input) { in.Counters = map[string]int{"marketing/email": 3} }), []string{"frequency_cap"}},
		{"more than the tenant's rate is held",
			with(accept("email", "transactional"), func(in *policy.Input) { in.TenantRatePerMinute = 6001 }), []string{"volume_guard"}},
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

// benchInput is a realistic decision for the full bundle: a marketing email
// at send time, for a brand with its own settings (the shipped example
// tenant), with a from domain, a placeholder, flags, consents, a country and
// a time zone, at a time of day outside quiet hours. Every concern looks at
// it, and it is allowed.
func benchInput() policy.Input {
	in := send("email", "marketing", subject(on("core_is_sms_disabled"), on("marketing_email", "marketing_sms")), "first_name")
	in.Tenant, in.Brand, in.FromDomain = "example", "example-casino", "example.com"
	return in
}

// benchOptions gives benchmarks a generous time-out: on a loaded machine a
// single decision may stall past the production default, which would fail
// the run rather than measure it.
var benchOptions = policy.Options{Timeout: 10 * time.Second}

func BenchmarkDecide(b *testing.B) {
	e := mustNew(b, policy.BundleFS(), benchOptions)
	benchDecide(b, e, benchInput(), true)
}

func BenchmarkDecideTrivial(b *testing.B) {
	e := mustNew(b, regoFS("decision.rego", trivialPolicy), benchOptions)
	benchDecide(b, e, benchInput(), true)
}

// BenchmarkDecideAccept is the decision when the core's request arrives.
func BenchmarkDecideAccept(b *testing.B) {
	e := mustNew(b, policy.BundleFS(), benchOptions)
	in := benchInput()
	in.Stage, in.Subject = "accept", nil
	in.Counters = map[string]int{"marketing/email": 1}
	in.TenantRatePerMinute = 120
	benchDecide(b, e, in, true)
}

// BenchmarkDecideQuietHours is a marketing email at night: allowed, with
// the end of quiet hours worked out in the player's time zone.
func BenchmarkDecideQuietHours(b *testing.B) {
	e := mustNew(b, policy.BundleFS(), policy.Options{Now: func() time.Time { return testTime.Add(10 * time.Hour) }, Timeout: benchOptions.Timeout})
	benchDecide(b, e, benchInput(), true)
}

// campaign returns the send-time decisions of a marketing email to n
// distinct players, in the order a campaign sends them, one every
// millisecond of the policy's clock (1,000 decisions a second): each player
// has its own pseudonym, and attributes drawn from a plausible mix of
// countries (one not allowed), time zones, consents, opt-outs (some with
// the date they were set), snoozes and self-exclusions.
func campaign(n int) []policy.Input {
	countries := []string{"MT", "DE", "GB", "US", "FR"}
	zones := []string{"Europe/Malta", "Europe/Berlin", "Europe/London", "America/New_York", ""}
	r := rand.New(rand.NewPCG(1, 2))
	ins := make([]policy.Input, n)
	for i := range ins {
		in := benchInput()
		s := *in.Subject
		s.Pseudonym = fmt.Sprintf("ps_%08d", i)
		s.Country = countries[r.IntN(len(countries))]
		s.Timezone = zones[r.IntN(len(zones))]
		s.Consents = on()
		if r.IntN(10) < 8 {
			s.Consents = on("marketing_email")
		}
		s.OptOuts = on()
		if r.IntN(20) == 0 {
			s.OptOuts = on("core_is_email_disabled")
			if r.IntN(2) == 0 {
				s.OptOutSince = map[string]time.Time{"core_is_email_disabled": testTime.Add(-time.Duration(r.IntN(90*24)) * time.Hour)}
			}
		}
		if r.IntN(100) == 0 {
			s.SnoozedUntil = map[string]time.Time{"email": testTime.Add(time.Duration(r.IntN(30*24)) * time.Hour)}
		}
		s.SelfExcluded = r.IntN(100) == 0
		in.Subject = &s
		in.Now = testTime.Add(time.Duration(i) * time.Millisecond)
		ins[i] = in
	}
	return ins
}

// BenchmarkDecideCampaign measures the decisions of a campaign (see
// campaign): players with the same attributes within the same minute share
// a kept decision; the others are worked out.
func BenchmarkDecideCampaign(b *testing.B) {
	e := mustNew(b, policy.BundleFS(), benchOptions)
	ins := campaign(100_000)
	ctx := context.Background()
	b.ReportAllocs()
	var ds []time.Duration
	i := 0
	for b.Loop() {
		in := ins[i%len(ins)]
		t0 := time.Now()
		_, err := e.Decide(ctx, in)
		ds = append(ds, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(median(ds).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(percentile(ds, 99).Nanoseconds()), "p99-ns")
}

// BenchmarkDecideCold measures a decision that is always worked out: the
// same message to the same player, a day later each time, so no kept
// decision applies (the brand's settings and the message's own reasons are
// still reused).
func BenchmarkDecideCold(b *testing.B) {
	e := mustNew(b, policy.BundleFS(), benchOptions)
	in := benchInput()
	ctx := context.Background()
	b.ReportAllocs()
	var ds []time.Duration
	day := 0
	for b.Loop() {
		in.Now = testTime.AddDate(0, 0, day)
		day++
		t0 := time.Now()
		d, err := e.Decide(ctx, in)
		ds = append(ds, time.Since(t0))
		if err != nil || !d.Allow {
			b.Fatalf("allow=%v reasons=%q err=%v", d.Allow, d.Reasons, err)
		}
	}
	b.ReportMetric(float64(median(ds).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(percentile(ds, 99).Nanoseconds()), "p99-ns")
}

// BenchmarkDecideVsTrivial measures, in one loop and alternating so that
// the machine's noise (two shared cores) hits all alike, the full bundle on
// a campaign's decisions (see campaign), the full bundle on a decision that
// is always worked out (see BenchmarkDecideCold), and the trivial policy,
// and reports the median of each and the ratios: the goal is a full-bundle
// median <= 50µs and <= 3x the trivial policy.
func BenchmarkDecideVsTrivial(b *testing.B) {
	full := mustNew(b, policy.BundleFS(), benchOptions)
	cold := mustNew(b, policy.BundleFS(), benchOptions)
	trivial := mustNew(b, regoFS("decision.rego", trivialPolicy), benchOptions)
	ins := campaign(100_000)
	in := benchInput()
	ctx := context.Background()
	var tf, tc, tt []time.Duration
	i := 0
	for b.Loop() {
		cin := in
		cin.Now = testTime.AddDate(0, 0, i)
		t0 := time.Now()
		_, err1 := full.Decide(ctx, ins[i%len(ins)])
		t1 := time.Now()
		d2, err2 := trivial.Decide(ctx, in)
		t2 := time.Now()
		d3, err3 := cold.Decide(ctx, cin)
		t3 := time.Now()
		if err1 != nil || err2 != nil || err3 != nil || !d2.Allow || !d3.Allow {
			b.Fatalf("full %v, trivial %v %v, cold %v %q %v", err1, d2.Allow, err2, d3.Allow, d3.Reasons, err3)
		}
		tf, tt, tc = append(tf, t1.Sub(t0)), append(tt, t2.Sub(t1)), append(tc, t3.Sub(t2))
		i++
	}
	pf, pt, pc := median(tf), median(tt), median(tc)
	b.ReportMetric(float64(pf.Nanoseconds()), "full-p50-ns")
	b.ReportMetric(float64(pt.Nanoseconds()), "trivial-p50-ns")
	b.ReportMetric(float64(pc.Nanoseconds()), "cold-p50-ns")
	b.ReportMetric(float64(pf)/float64(pt), "ratio-p50")
	b.ReportMetric(float64(pc)/float64(pt), "cold-ratio-p50")
}

// benchDecide measures Decide on in, and reports the median and the 99th
// percentile of single decisions next to the mean (ns/op): on a noisy
// machine the mean is pulled up by a few slow decisions.
func benchDecide(b *testing.B, e *policy.Evaluator, in policy.Input, allow bool) {
	ctx := context.Background()
	b.ReportAllocs()
	var ds []time.Duration
	for b.Loop() {
		t0 := time.Now()
		d, err := e.Decide(ctx, in)
		ds = append(ds, time.Since(t0))
		if err != nil || d.Allow != allow {
			b.Fatalf("allow=%v reasons=%q err=%v", d.Allow, d.Reasons, err)
		}
	}
	b.ReportMetric(float64(median(ds).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(percentile(ds, 99).Nanoseconds()), "p99-ns")
}

func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// The policy's clock is the evaluator's: Decide fills input.now from
// Options.Now when the caller leaves it zero, and keeps it otherwise.
func TestDecideFillsTheClock(t *testing.T) {
	night := time.Date(2025, 1, 15, 23, 0, 0, 0, time.UTC)
	e := mustNew(t, policy.BundleFS(), policy.Options{Now: func() time.Time { return night }})
	in := benchInput()
	in.Subject.Timezone = "UTC"
	d, err := e.Decide(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if at, ok, err := d.DeferUntil(); err != nil || !ok || !at.Equal(time.Date(2025, 1, 16, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("DeferUntil = %v %v %v, want 09:00 the next morning", at, ok, err)
	}
	in.Now = night.Add(-10 * time.Hour) // the caller's own clock: 13:00
	if d, _ := e.Decide(context.Background(), in); d.Obligations[policy.ObligationDeferUntil] != nil {
		t.Errorf("obligations %v with an explicit daytime clock", d.Obligations)
	}
}

// Quiet hours end at 09:00 on the player's calendar, on the nights the
// clocks change too (the bundle's own tests cover more cases).
func TestQuietHoursAcrossDaylightSavingChanges(t *testing.T) {
	tests := []struct {
		tz        string
		now, want string
	}{
		{"Europe/London", "2025-03-29T22:00:00Z", "2025-03-30T08:00:00Z"},    // spring forward: 09:00 BST
		{"Europe/London", "2025-10-25T22:00:00Z", "2025-10-26T09:00:00Z"},    // fall back: 09:00 GMT
		{"America/New_York", "2025-03-09T04:00:00Z", "2025-03-09T13:00:00Z"}, // 09:00 EDT
		{"America/New_York", "2025-11-02T03:00:00Z", "2025-11-02T14:00:00Z"}, // 09:00 EST
	}
	for _, tt := range tests {
		t.Run(tt.tz+" "+tt.now, func(t *testing.T) {
			now, _ := time.Parse(time.RFC3339, tt.now)
			want, _ := time.Parse(time.RFC3339, tt.want)
			e := mustNew(t, policy.BundleFS(), policy.Options{Now: func() time.Time { return now }})
			in := benchInput()
			in.Subject.Timezone = tt.tz
			d, err := e.Decide(context.Background(), in)
			if err != nil || !d.Allow {
				t.Fatalf("decision %v %q %v", d.Allow, d.Reasons, err)
			}
			at, ok, err := d.DeferUntil()
			if err != nil || !ok || !at.Equal(want) {
				t.Errorf("DeferUntil = %v %v %v, want %v", at, ok, err, want)
			}
			loc, _ := time.LoadLocation(tt.tz)
			if got := at.In(loc).Format("15:04"); got != "09:00" {
				t.Errorf("deferred to %s local time", got)
			}
		})
	}
}

func TestObligationsForTheGateway(t *testing.T) {
	e := mustNew(t, policy.BundleFS(), benchOptions)
	in := accept("email", "marketing")
	in.Counters = map[string]int{"marketing/email": 2}
	d, err := e.Decide(context.Background(), in)
	if err != nil || !d.Allow {
		t.Fatalf("%v %q %v", d.Allow, d.Reasons, err)
	}
	rs, err := d.Reservations()
	if err != nil || !slices.Equal(rs, []policy.Reservation{{Key: "marketing/email", Window: 7 * 24 * time.Hour, Limit: 3}}) {
		t.Errorf("Reservations = %+v %v", rs, err)
	}
	if d.Hold() {
		t.Error("Hold on an allowed decision")
	}
	if _, ok, _ := d.DeferUntil(); ok {
		t.Error("DeferUntil at accept time")
	}

	in.TenantRatePerMinute = 1_000_000
	d, _ = e.Decide(context.Background(), in)
	if d.Allow || !d.Hold() {
		t.Errorf("over the rate: allow=%v hold=%v reasons %q", d.Allow, d.Hold(), d.Reasons)
	}
	if rs, _ := d.Reservations(); len(rs) != 0 {
		t.Errorf("a held message reserves %v", rs)
	}
	in.Placeholders = []string{"phone"} // a second reason makes the denial final
	if d, _ = e.Decide(context.Background(), in); d.Hold() {
		t.Errorf("held with reasons %q", d.Reasons)
	}

	bad := policy.Decision{Allow: true, Obligations: map[string]any{"reserve": []any{map[string]any{"key": "k", "limit": "3"}}, "defer_until": "tomorrow"}}
	if _, err := bad.Reservations(); err == nil {
		t.Error("malformed reserve accepted")
	}
	if _, _, err := bad.DeferUntil(); err == nil {
		t.Error("malformed defer_until accepted")
	}
}

// A bundle whose settings its rules would misread is refused, at start and
// at reload.
func TestNewRefusesInvalidSettings(t *testing.T) {
	for name, override := range map[string]map[string]any{
		"quiet hours not HH:MM":  {"settings": map[string]any{"quiet_hours": map[string]any{"sms": map[string]any{"start": "9pm", "end": "09:00"}}}},
		"cap of zero":            {"settings": map[string]any{"frequency_caps": map[string]any{"marketing/sms": map[string]any{"limit": 0, "window_seconds": 60}}}},
		"unknown time zone":      {"tenants": map[string]any{"x": map[string]any{"brands": map[string]any{"y": map[string]any{"settings": map[string]any{"default_timezone": "Mars/Base"}}}}}},
		"domain in upper case":   {"tenants": map[string]any{"x": map[string]any{"settings": map[string]any{"sender_domains": []any{"Example.com"}}}}},
		"countries not a list":   {"settings": map[string]any{"allowed_countries": "MT"}},
		"volume guard in prose":  {"settings": map[string]any{"volume_guard": map[string]any{"max_per_minute": "a lot"}}},
		"purposes not a mapping": {"settings": map[string]any{"purposes": []any{"password_reset"}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := policy.New(context.Background(), policy.BundleFS(), policy.Options{Data: map[string]any{"blindpost": override}})
			if !errors.Is(err, policy.ErrSettings) {
				t.Errorf("err = %v, want ErrSettings", err)
			}
		})
	}
}

// An operator need not configure any tenant: all get the defaults.
func TestNoTenantsMeansDefaults(t *testing.T) {
	bundle := copyFS(t, policy.BundleFS())
	data := string(bundle["data.json"].Data)
	bundle["data.json"] = &fstest.MapFile{Data: []byte(data[:strings.Index(data, `,
    "tenants"`)] + "\n  }\n}\n")}
	e := mustNew(t, bundle, benchOptions)
	if d, err := e.Decide(context.Background(), send("email", "marketing", subject(nil, on("marketing_email")), "first_name")); err != nil || !d.Allow {
		t.Errorf("decision %v %q %v, want allowed", d.Allow, d.Reasons, err)
	}
}

// Without settings there is nothing to allow: every allow-list is empty.
func TestMissingSettingsDeny(t *testing.T) {
	bundle := copyFS(t, policy.BundleFS())
	bundle["data.json"] = &fstest.MapFile{Data: []byte(`{}`)}
	e := mustNew(t, bundle, benchOptions)
	d, err := e.Decide(context.Background(), accept("email", "transactional"))
	if err != nil || d.Allow || !slices.Contains(d.Reasons, "purpose_not_allowed") {
		t.Errorf("decision %v %q %v, want denied", d.Allow, d.Reasons, err)
	}
}

func TestDecisionIDsAreUniqueAndOpaque(t *testing.T) {
	e := mustNew(t, regoFS("decision.rego", trivialPolicy), benchOptions)
	seen := map[string]bool{}
	var prev []byte
	for range 2000 {
		d, _ := e.Decide(context.Background(), accept("email", "transactional"))
		b, err := hex.DecodeString(d.ID)
		if err != nil || len(b) != 16 {
			t.Fatalf("ID %q is not 16 bytes in hex", d.ID)
		}
		if seen[d.ID] {
			t.Fatalf("ID %s repeated", d.ID)
		}
		seen[d.ID] = true
		// Consecutive ids share no visible counter: they differ in about
		// half their bits, not in the last few.
		if prev != nil {
			diff := 0
			for i := range b {
				diff += bits.OnesCount8(b[i] ^ prev[i])
			}
			if diff < 24 {
				t.Fatalf("consecutive ids %x and %x differ in %d bits", prev, b, diff)
			}
		}
		prev = b
	}
}
