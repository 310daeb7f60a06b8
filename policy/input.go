package policy

import (
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// value builds the policy input as an AST value directly, which is several
// times cheaper than OPA's JSON round trip of the struct. It must equal the
// struct's JSON (nil slices and maps are null, omitempty fields are absent,
// times are RFC 3339 with nanoseconds), which is what a decision log
// records, so that any logged decision can be replayed; a test holds it to
// that.
func (in Input) value() ast.Value {
	obj := ast.NewObjectWithCapacity(16)
	obj.Insert(keyAPI, str(in.API))
	obj.Insert(keyStage, str(in.Stage))
	obj.Insert(keyTenant, ast.StringTerm(in.Tenant))
	obj.Insert(keyBrand, ast.StringTerm(in.Brand))
	obj.Insert(keyChannel, str(in.Channel))
	obj.Insert(keyCategory, str(in.Category))
	obj.Insert(keyPurpose, ast.StringTerm(in.Purpose))
	obj.Insert(keyPlaceholders, stringsTerm(in.Placeholders))
	if s := in.Subject; s != nil {
		obj.Insert(keySubject, s.term())
	}
	if !in.Now.IsZero() {
		obj.Insert(keyNow, timeTerm(in.Now))
	}
	if in.FromDomain != "" {
		obj.Insert(keyFromDomain, ast.StringTerm(in.FromDomain))
	}
	if in.ToOverrideDomain != "" {
		obj.Insert(keyToOverrideDomain, ast.StringTerm(in.ToOverrideDomain))
	}
	if in.ActivityType != "" {
		obj.Insert(keyActivityType, ast.StringTerm(in.ActivityType))
	}
	if len(in.Counters) > 0 {
		c := ast.NewObjectWithCapacity(len(in.Counters))
		for k, v := range in.Counters {
			c.Insert(ast.StringTerm(k), ast.InternedTerm(v))
		}
		obj.Insert(keyCounters, ast.NewTerm(c))
	}
	if in.TenantRatePerMinute != 0 {
		obj.Insert(keyTenantRate, ast.InternedTerm(in.TenantRatePerMinute))
	}
	return obj
}

func (s *Subject) term() *ast.Term {
	obj := ast.NewObjectWithCapacity(10)
	obj.Insert(keyPseudonym, ast.StringTerm(s.Pseudonym))
	if s.Country != "" {
		obj.Insert(keyCountry, ast.StringTerm(s.Country))
	}
	obj.Insert(keyLocalHour, ast.InternedTerm(s.LocalHour))
	obj.Insert(keyOptOuts, flags(s.OptOuts))
	obj.Insert(keyConsents, flags(s.Consents))
	obj.Insert(keySelfExcluded, ast.InternedTerm(s.SelfExcluded))
	obj.Insert(keyAddressable, ast.InternedTerm(s.Addressable))
	if s.Timezone != "" {
		obj.Insert(keyTimezone, ast.StringTerm(s.Timezone))
	}
	if len(s.OptOutSince) > 0 {
		obj.Insert(keyOptOutSince, times(s.OptOutSince))
	}
	if len(s.SnoozedUntil) > 0 {
		obj.Insert(keySnoozedUntil, times(s.SnoozedUntil))
	}
	return ast.NewTerm(obj)
}

// The input's keys, built once: terms are values, and the evaluator never
// changes them.
var (
	keyAPI              = ast.StringTerm("api")
	keyStage            = ast.StringTerm("stage")
	keyTenant           = ast.StringTerm("tenant")
	keyBrand            = ast.StringTerm("brand")
	keyChannel          = ast.StringTerm("channel")
	keyCategory         = ast.StringTerm("category")
	keyPurpose          = ast.StringTerm("purpose")
	keyPlaceholders     = ast.StringTerm("placeholders")
	keySubject          = ast.StringTerm("subject")
	keyNow              = ast.StringTerm("now")
	keyFromDomain       = ast.StringTerm("from_domain")
	keyToOverrideDomain = ast.StringTerm("to_override_domain")
	keyActivityType     = ast.StringTerm("activity_type")
	keyCounters         = ast.StringTerm("counters")
	keyTenantRate       = ast.StringTerm("tenant_rate_per_minute")

	keyPseudonym    = ast.StringTerm("pseudonym")
	keyCountry      = ast.StringTerm("country")
	keyLocalHour    = ast.StringTerm("local_hour")
	keyOptOuts      = ast.StringTerm("opt_outs")
	keyConsents     = ast.StringTerm("consents")
	keySelfExcluded = ast.StringTerm("self_excluded")
	keyAddressable  = ast.StringTerm("addressable")
	keyTimezone     = ast.StringTerm("timezone")
	keyOptOutSince  = ast.StringTerm("opt_out_since")
	keySnoozedUntil = ast.StringTerm("snoozed_until")
)

// vocabulary holds the values most inputs repeat (API, stage, channel,
// category), so building an input does not allocate them.
var vocabulary = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{"native", "compat", "accept", "send", "email", "sms", "im", "push", "transactional", "marketing"} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

func str(s string) *ast.Term {
	if t, ok := vocabulary[s]; ok {
		return t
	}
	return ast.StringTerm(s)
}

func stringsTerm(ss []string) *ast.Term {
	if ss == nil {
		return ast.InternedNullTerm // as encoding/json writes a nil slice
	}
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}

func flags(m map[string]bool) *ast.Term {
	if m == nil {
		return ast.InternedNullTerm // as encoding/json writes a nil map
	}
	obj := ast.NewObjectWithCapacity(len(m))
	for k, v := range m {
		obj.Insert(ast.StringTerm(k), ast.InternedTerm(v))
	}
	return ast.NewTerm(obj)
}

func times(m map[string]time.Time) *ast.Term {
	obj := ast.NewObjectWithCapacity(len(m))
	for k, v := range m {
		obj.Insert(ast.StringTerm(k), timeTerm(v))
	}
	return ast.NewTerm(obj)
}

// timeTerm writes t as encoding/json does (time.Time.MarshalJSON).
func timeTerm(t time.Time) *ast.Term {
	return ast.StringTerm(t.Format(time.RFC3339Nano))
}
