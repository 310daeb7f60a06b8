package profile_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/core/profile"
)

// decode parses a JSON object as the events API does (UseNumber).
func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func TestApply(t *testing.T) {
	tests := []struct {
		name                string
		props, update, want string
	}{
		{"set new", `{}`, `{"level": 3, "vip": true}`, `{"level": 3, "vip": true}`},
		{"set replaces", `{"level": 2}`, `{"level": 3}`, `{"level": 3}`},
		{"set null keeps the key", `{"level": 2}`, `{"level": null}`, `{"level": null}`},
		{"set object", `{}`, `{"prefs": {"lang": "en"}}`, `{"prefs": {"lang": "en"}}`},
		{"set leaves others", `{"a": 1, "b": 2}`, `{"b": 3}`, `{"a": 1, "b": 3}`},
		{"opt-out flag is a plain property", `{}`, `{"core_is_email_disabled_by_platform": true}`, `{"core_is_email_disabled_by_platform": true}`},

		{"add to missing", `{}`, `{"+tags": "vip"}`, `{"tags": ["vip"]}`},
		{"add array to missing", `{}`, `{"+tags": ["vip", "new"]}`, `{"tags": ["vip", "new"]}`},
		{"add appends", `{"tags": ["a"]}`, `{"+tags": ["b", "c"]}`, `{"tags": ["a", "b", "c"]}`},
		{"add skips held", `{"tags": ["a", "b"]}`, `{"+tags": ["b", "c", "a"]}`, `{"tags": ["a", "b", "c"]}`},
		{"add skips repeats in value", `{}`, `{"+tags": ["x", "x", "y", "x"]}`, `{"tags": ["x", "y"]}`},
		{"add number by value", `{"ids": [1, 2]}`, `{"+ids": [1.0, 10e-1, 2e0, 3]}`, `{"ids": [1, 2, 3]}`},
		{"add zero and minus zero", `{"n": [0]}`, `{"+n": [-0, 0.0, -0e5]}`, `{"n": [0]}`},
		{"add big integers stay distinct", `{"n": [9007199254740992]}`, `{"+n": 9007199254740993}`, `{"n": [9007199254740992, 9007199254740993]}`},
		{"add object by value", `{"o": [{"a": 1, "b": 2}]}`, `{"+o": [{"b": 2, "a": 1}, {"a": 2}]}`, `{"o": [{"a": 1, "b": 2}, {"a": 2}]}`},
		{"add nested array element", `{}`, `{"+m": [[1, 2]]}`, `{"m": [[1, 2]]}`},
		{"add to null", `{"tags": null}`, `{"+tags": "a"}`, `{"tags": ["a"]}`},
		{"add to scalar", `{"tags": "a"}`, `{"+tags": ["a", "b"]}`, `{"tags": ["a", "b"]}`},
		{"add null value makes array", `{}`, `{"+tags": null}`, `{"tags": []}`},
		{"add empty array", `{}`, `{"+tags": []}`, `{"tags": []}`},
		{"add null element", `{}`, `{"+tags": [null]}`, `{"tags": [null]}`},
		{"add type-distinct", `{"t": ["1"]}`, `{"+t": [1, true, "true"]}`, `{"t": ["1", 1, true, "true"]}`},

		{"remove one", `{"tags": ["a", "b", "c"]}`, `{"-tags": "b"}`, `{"tags": ["a", "c"]}`},
		{"remove several", `{"tags": ["a", "b", "c"]}`, `{"-tags": ["a", "c", "zz"]}`, `{"tags": ["b"]}`},
		{"remove every copy", `{"tags": ["a", "b", "a"]}`, `{"-tags": "a"}`, `{"tags": ["b"]}`},
		{"remove to empty", `{"tags": ["a"]}`, `{"-tags": "a"}`, `{"tags": []}`},
		{"remove number by value", `{"ids": [1, 2]}`, `{"-ids": 1.00}`, `{"ids": [2]}`},
		{"remove from missing", `{}`, `{"-tags": "a"}`, `{}`},
		{"remove from scalar", `{"tags": "a"}`, `{"-tags": "a"}`, `{"tags": "a"}`},
		{"remove null", `{"tags": ["a"]}`, `{"-tags": null}`, `{"tags": ["a"]}`},

		{"glob", `{"tags": ["promo_1", "promo_2", "vip"]}`, `{"^tags": "promo_*"}`, `{"tags": ["vip"]}`},
		{"glob several", `{"tags": ["a1", "b1", "c1"]}`, `{"^tags": ["a*", "c?"]}`, `{"tags": ["b1"]}`},
		{"glob class", `{"tags": ["x1", "x2", "x9"]}`, `{"^tags": "x[1-2]"}`, `{"tags": ["x9"]}`},
		{"glob exact", `{"tags": ["a", "ab"]}`, `{"^tags": "a"}`, `{"tags": ["ab"]}`},
		{"glob star stops at slash", `{"tags": ["a/b", "ab"]}`, `{"^tags": "a*"}`, `{"tags": ["a/b"]}`},
		{"glob skips non-strings", `{"tags": [1, "1", true]}`, `{"^tags": "*"}`, `{"tags": [1, true]}`},
		{"glob malformed matches nothing", `{"tags": ["[", "a"]}`, `{"^tags": "["}`, `{"tags": ["[", "a"]}`},
		{"glob non-string ignored", `{"tags": ["1"]}`, `{"^tags": 1}`, `{"tags": ["1"]}`},
		{"glob on missing", `{}`, `{"^tags": "*"}`, `{}`},
		{"glob on scalar", `{"tags": "abc"}`, `{"^tags": "*"}`, `{"tags": "abc"}`},

		{"delete", `{"a": 1, "b": 2}`, `{"!a": null}`, `{"b": 2}`},
		{"delete missing", `{"b": 2}`, `{"!a": null}`, `{"b": 2}`},
		{"delete whatever the value", `{"a": 1}`, `{"!a": true}`, `{}`},

		{"clear then add", `{"tags": ["old"]}`, `{"!tags": null, "+tags": ["new"]}`, `{"tags": ["new"]}`},
		{"set then add", `{"tags": ["old"]}`, `{"tags": ["a"], "+tags": ["b"]}`, `{"tags": ["a", "b"]}`},
		{"delete then set", `{"a": 1}`, `{"a": 2, "!a": null}`, `{"a": 2}`},
		{"add then remove", `{"tags": ["a"]}`, `{"-tags": "b", "+tags": ["b", "c"]}`, `{"tags": ["a", "c"]}`},
		{"add then glob", `{}`, `{"^tags": "tmp_*", "+tags": ["tmp_1", "keep"]}`, `{"tags": ["keep"]}`},
		{"operators on different keys", `{"a": [1], "b": [2]}`, `{"+a": 2, "-b": 2, "c": 3}`, `{"a": [1, 2], "b": [], "c": 3}`},

		{"lone operator names nothing", `{"a": 1}`, `{"+": 1, "!": null, "-": 1, "^": "*"}`, `{"a": 1}`},
		{"doubled operator is part of the name", `{}`, `{"++a": 1}`, `{"+a": [1]}`},
		{"empty key is a property", `{}`, `{"": 1}`, `{"": 1}`},
		{"empty update", `{"a": 1}`, `{}`, `{"a": 1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			props, update := decode(t, tt.props), decode(t, tt.update)
			propsBefore, updateBefore := decode(t, tt.props), decode(t, tt.update)
			got, err := profile.Apply(props, update)
			if err != nil {
				t.Fatal(err)
			}
			if want := decode(t, tt.want); !reflect.DeepEqual(got, want) {
				t.Errorf("Apply(%s, %s) = %s, want %s", tt.props, tt.update, mustJSON(t, got), tt.want)
			}
			if !reflect.DeepEqual(props, propsBefore) || !reflect.DeepEqual(update, updateBefore) {
				t.Errorf("Apply modified its arguments")
			}
			// Every update_profile is idempotent: a redelivered event that
			// slipped past de-duplication changes nothing more.
			again, err := profile.Apply(got, update)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again, got) {
				t.Errorf("applied twice = %s, once = %s", mustJSON(t, again), mustJSON(t, got))
			}
		})
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

// The result shares nothing with the arguments: changing it later, as the
// store's next update does, must not reach back into either.
func TestApplyResultIsACopy(t *testing.T) {
	inner := []any{"a"}
	props := map[string]any{"tags": inner, "o": map[string]any{"k": "v"}}
	val := []any{"b"}
	update := map[string]any{"+tags": val, "x": val}
	got, err := profile.Apply(props, update)
	if err != nil {
		t.Fatal(err)
	}
	got["tags"].([]any)[0] = "changed"
	got["x"].([]any)[0] = "changed"
	got["o"].(map[string]any)["k"] = "changed"
	if inner[0] != "a" || val[0] != "b" || props["o"].(map[string]any)["k"] != "v" {
		t.Fatalf("the result aliases the arguments: props %v, value %v", props, val)
	}
}

// Payloads built in Go rather than decoded hold Go's own numbers; they
// come out as json.Number, so that stored and compared values have one
// form.
func TestApplyNormalizesGoValues(t *testing.T) {
	type pref struct {
		Lang string `json:"lang"`
	}
	got, err := profile.Apply(nil, map[string]any{
		"i": 42, "u8": uint8(7), "f": 1.5, "f32": float32(0.25), "s": []string{"a", "b"},
		"p": pref{"en"}, "nilptr": (*pref)(nil), "+ids": []any{1, 1.0, int64(1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"i": json.Number("42"), "u8": json.Number("7"), "f": json.Number("1.5"), "f32": json.Number("0.25"),
		"s": []any{"a", "b"}, "p": map[string]any{"lang": "en"}, "nilptr": nil, "ids": []any{json.Number("1")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
}

func TestApplyRefusesWhatJSONCannotHold(t *testing.T) {
	for name, v := range map[string]any{
		"NaN":             math.NaN(),
		"infinity":        math.Inf(-1),
		"nested NaN":      []any{map[string]any{"x": math.NaN()}},
		"bad json.Number": json.Number("12abc"),
		"channel":         make(chan int),
		"func":            func() {},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := profile.Apply(nil, map[string]any{"k": v}); !errors.Is(err, profile.ErrInvalid) {
				t.Errorf("update: err = %v, want ErrInvalid", err)
			}
			if _, err := profile.Apply(map[string]any{"k": v}, nil); !errors.Is(err, profile.ErrInvalid) {
				t.Errorf("props: err = %v, want ErrInvalid", err)
			}
			if err := profile.Check(map[string]any{"k": v}); !errors.Is(err, profile.ErrInvalid) {
				t.Errorf("Check: err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		update string
		bad    string // the key the error names; "" when valid
	}{
		{`{"a": 1, "+b": [1], "-c": 2, "^d": "x*", "!e": null}`, ""},
		{`{"^d": ["x*", "y?"]}`, ""},
		{`{"!e": true}`, `"!e"`},
		{`{"!e": 0}`, `"!e"`},
		{`{"^d": 1}`, `"^d"`},
		{`{"^d": ["ok*", 2]}`, `"^d"`},
		{`{"^d": "["}`, `"^d"`},
		{`{"+": 1}`, `"+"`},
		{`{"!": null}`, `"!"`},
	}
	for _, tt := range tests {
		err := profile.Check(decode(t, tt.update))
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("Check(%s) = %v, want nil", tt.update, err)
		case tt.bad != "" && !errors.Is(err, profile.ErrInvalid):
			t.Errorf("Check(%s) = %v, want ErrInvalid", tt.update, err)
		case tt.bad != "" && !strings.Contains(err.Error(), tt.bad):
			t.Errorf("Check(%s) = %v, want it to name the key %s", tt.update, err, tt.bad)
		}
	}
}

// Errors name keys, never values: a value may be PII the firewall missed.
func TestErrorsNameNoValue(t *testing.T) {
	const canary = "canary@example.com"
	for _, update := range []map[string]any{
		{"!k": canary},
		{"^k": canary + "["},
	} {
		err := profile.Check(update)
		if err == nil {
			t.Fatalf("Check(%v) = nil", update)
		}
		if strings.Contains(err.Error(), canary) {
			t.Errorf("error %q holds the value", err)
		}
	}
}

func TestEqual(t *testing.T) {
	n := func(s string) json.Number { return json.Number(s) }
	tests := []struct {
		a, b any
		want bool
	}{
		{n("1"), n("1.0"), true},
		{n("100"), n("1e2"), true},
		{n("100"), n("1E+2"), true},
		{n("0.5"), n("5e-1"), true},
		{n("-0"), n("0"), true},
		{n("0.000"), n("0e10"), true},
		{n("-1"), n("1"), false},
		{n("1"), n("10"), false},
		{n("123456789012345678901234567890"), n("123456789012345678901234567891"), false},
		{n("1e9999999999999999999"), n("1e9999999999999999999"), true},
		{n("1"), "1", false},
		{nil, nil, true},
		{nil, false, false},
		{[]any{n("1")}, []any{n("1.0")}, true},
		{[]any{n("1")}, []any{n("1"), n("1")}, false},
		{map[string]any{"a": n("1")}, map[string]any{"a": n("1.0")}, true},
		{map[string]any{"a": nil}, map[string]any{"b": nil}, false},
		{1, 1, false}, // not a decoded JSON value
	}
	for _, tt := range tests {
		if got := profile.Equal(tt.a, tt.b); got != tt.want {
			t.Errorf("Equal(%#v, %#v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := profile.Equal(tt.b, tt.a); got != tt.want {
			t.Errorf("Equal(%#v, %#v) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestTags(t *testing.T) {
	tests := []struct {
		props string
		want  []string
	}{
		{`{"tags": ["vip", 1, "new", null]}`, []string{"vip", "new"}},
		{`{"tags": "vip"}`, nil},
		{`{}`, nil},
	}
	for _, tt := range tests {
		if got := profile.Tags(decode(t, tt.props)); !slices.Equal(got, tt.want) {
			t.Errorf("Tags(%s) = %q, want %q", tt.props, got, tt.want)
		}
	}
}

func TestOptOuts(t *testing.T) {
	got := profile.OptOuts(decode(t, `{
		"core_is_email_disabled": true,
		"core_is_sms_disabled": false,
		"core_is_push_disabled_by_platform": 1,
		"core_is_email_disabled_by_platform": "true",
		"core_is_sms_disabled_by_platform": "no",
		"core_is_im_disabled": 0.0,
		"is_vip": true
	}`))
	want := map[string]bool{
		"core_is_email_disabled":             true,
		"core_is_sms_disabled":               false,
		"core_is_push_disabled_by_platform":  true,
		"core_is_email_disabled_by_platform": true,
		"core_is_sms_disabled_by_platform":   false,
		"core_is_im_disabled":                false,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("OptOuts = %v, want %v", got, want)
	}
	if got := profile.OptOuts(map[string]any{"x": true}); got != nil {
		t.Fatalf("OptOuts without flags = %v, want nil", got)
	}
}

// FuzzApply holds Apply to its promises on any JSON: it never panics,
// never modifies its arguments, its result always marshals to JSON and
// reads back as itself, and applying the same update twice changes
// nothing more than once.
func FuzzApply(f *testing.F) {
	f.Add(`{"tags": ["a", "b"], "n": 1}`, `{"+tags": ["c", "a"], "-tags": "b", "^tags": "x*", "!n": null, "m": {"k": [1, 1.0]}}`)
	f.Add(`{}`, `{"+": 1, "!": null, "": [], "+x": null, "-x": null}`)
	f.Add(`{"tags": "s"}`, `{"+tags": [[1], [1.0], {"a": 1e2}], "^tags": ["[", "*"]}`)
	f.Add(`{"a": [0, -0, 0e5]}`, `{"-a": 0.0, "+a": [1e9999999999999999999, 1E9999999999999999999]}`)
	f.Fuzz(func(t *testing.T, propsJSON, updateJSON string) {
		props, ok := decodeObject(propsJSON)
		if !ok {
			return
		}
		update, ok := decodeObject(updateJSON)
		if !ok {
			return
		}
		propsCopy, _ := decodeObject(propsJSON)
		updateCopy, _ := decodeObject(updateJSON)
		got, err := profile.Apply(props, update)
		if err != nil {
			t.Fatalf("Apply of decoded JSON: %v", err)
		}
		if !reflect.DeepEqual(props, propsCopy) || !reflect.DeepEqual(update, updateCopy) {
			t.Fatal("Apply modified its arguments")
		}
		b, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("result does not marshal: %v", err)
		}
		back, ok := decodeObject(string(b))
		if !ok || !reflect.DeepEqual(back, got) {
			t.Fatalf("result does not round-trip: %s", b)
		}
		again, err := profile.Apply(got, update)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("not idempotent: once %s, twice %s", b, mustJSON(t, again))
		}
		_ = profile.Check(update)
		_ = profile.Tags(got)
		_ = profile.OptOuts(got)
	})
}

func decodeObject(s string) (map[string]any, bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil || dec.More() {
		return nil, false
	}
	return m, true
}
