// Package profile applies the update_profile events of the reference
// events API (DESIGN.md §1) to a player's properties. It is pure: no I/O,
// no clock, and it never modifies its arguments.
//
// It sits on the vendor side. Properties hold only what passed the PII
// firewall: pseudonymous ids, flags, tokens, counters.
//
// A payload's keys are property names, optionally prefixed by an operator:
//
//	key      sets the property to the value (any JSON value, null included)
//	+key     appends the value, or each element of an array value, to the
//	         array property key, skipping those it already holds
//	-key     removes the value, or each element of an array value, from the
//	         array property key
//	^key     removes from the array property key its string elements that
//	         match the glob (path.Match), or any of an array of globs
//	!key     deletes the property (the reference sends !key: null)
//
// The operators of one payload apply in a fixed order, whatever the order
// of its keys, so that a payload means one thing: every !, then every plain
// key, then +, -, ^; within one operator, in key order. "!tags": null with
// "+tags": ["vip"] therefore clears, then adds.
//
// Array operators on a property that holds no array: + makes it one (a
// missing or null property becomes an empty array, another value becomes
// its first element); - and ^ leave it as it is. A null value given to +
// or - is no element at all. Numbers compare by value: 1, 1.0 and 1e0 are
// one element.
package profile

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalid marks a payload that is not JSON data, or (Check) whose
// operators are malformed.
var ErrInvalid = errors.New("profile: invalid update")

// Operators, as the first byte of a payload key.
const (
	opSet    = 0
	opDelete = '!'
	opAdd    = '+'
	opRemove = '-'
	opGlob   = '^'
)

// phases is the order operators apply in.
var phases = [...]byte{opDelete, opSet, opAdd, opRemove, opGlob}

// split returns the operator of key and the property it names. A key that
// is a lone operator names no property: its op is -1.
func split(key string) (op int, name string) {
	if key == "" {
		return opSet, key
	}
	switch c := key[0]; c {
	case opDelete, opAdd, opRemove, opGlob:
		if len(key) == 1 {
			return -1, ""
		}
		return int(c), key[1:]
	}
	return opSet, key
}

// Apply returns props updated by the update_profile payload update. The
// result shares nothing with props or update, and holds only the types
// encoding/json decodes into (with UseNumber): nil, bool, string,
// json.Number, []any and map[string]any. Apply is lenient with operators,
// as described in the package comment, and fails only on values that are
// not JSON data (NaN, a channel, …), with ErrInvalid.
func Apply(props, update map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(props)+len(update))
	for k, v := range props {
		nv, err := normalize(v)
		if err != nil {
			return nil, fmt.Errorf("%w: property %q: %v", ErrInvalid, k, err)
		}
		out[k] = nv
	}
	keys := make([]string, 0, len(update))
	for k := range update {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, phase := range phases {
		for _, k := range keys {
			op, name := split(k)
			if op != int(phase) {
				continue
			}
			v, err := normalize(update[k])
			if err != nil {
				return nil, fmt.Errorf("%w: key %q: %v", ErrInvalid, k, err)
			}
			switch phase {
			case opDelete:
				delete(out, name)
			case opSet:
				out[name] = v
			case opAdd:
				out[name] = add(out[name], elements(v))
			case opRemove:
				if arr, ok := out[name].([]any); ok {
					vals := elements(v)
					out[name] = slices.DeleteFunc(arr, func(e any) bool {
						return slices.ContainsFunc(vals, func(r any) bool { return Equal(e, r) })
					})
				}
			case opGlob:
				if arr, ok := out[name].([]any); ok {
					globs := elements(v)
					out[name] = slices.DeleteFunc(arr, func(e any) bool { return matchAny(globs, e) })
				}
			}
		}
	}
	return out, nil
}

// elements lists the elements an array operator's value stands for.
func elements(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	}
	return []any{v}
}

// add appends to the property cur the values it does not hold yet.
func add(cur any, vals []any) []any {
	var arr []any
	switch c := cur.(type) {
	case nil:
		arr = []any{}
	case []any:
		arr = c
	default:
		arr = []any{c}
	}
	for _, v := range vals {
		if !slices.ContainsFunc(arr, func(e any) bool { return Equal(e, v) }) {
			arr = append(arr, v)
		}
	}
	return arr
}

// matchAny reports whether e is a string that one of the globs matches. A
// glob that is no string or no valid pattern matches nothing.
func matchAny(globs []any, e any) bool {
	s, ok := e.(string)
	if !ok {
		return false
	}
	for _, g := range globs {
		if p, ok := g.(string); ok {
			if m, err := path.Match(p, s); err == nil && m {
				return true
			}
		}
	}
	return false
}

// Check reports, with ErrInvalid, the first malformed operator of update,
// in key order: a key that is a lone operator, !key with a value other
// than null, ^key with a glob that is not a string or not a valid pattern,
// or a value that is not JSON data. Apply gives each of these a meaning;
// Check is for callers that would rather refuse them. Errors name the key,
// never a value.
func Check(update map[string]any) error {
	keys := make([]string, 0, len(update))
	for k := range update {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, err := normalize(update[k])
		if err != nil {
			return fmt.Errorf("%w: key %q: %v", ErrInvalid, k, err)
		}
		op, _ := split(k)
		switch op {
		case -1:
			return fmt.Errorf("%w: key %q names no property", ErrInvalid, k)
		case opDelete:
			if v != nil {
				return fmt.Errorf("%w: key %q: want null", ErrInvalid, k)
			}
		case opGlob:
			for _, g := range elements(v) {
				p, ok := g.(string)
				if !ok {
					return fmt.Errorf("%w: key %q: a glob must be a string", ErrInvalid, k)
				}
				if _, err := path.Match(p, ""); err != nil {
					return fmt.Errorf("%w: key %q: malformed glob", ErrInvalid, k)
				}
			}
		}
	}
	return nil
}

// Normalize returns a deep copy of v made of the types encoding/json
// decodes into with UseNumber: nil, bool, string, json.Number, []any and
// map[string]any. Other numbers become json.Number; anything else is
// converted through encoding/json. It fails, with ErrInvalid, on what JSON
// cannot hold: NaN, infinities, malformed json.Number, channels, funcs.
func Normalize(v any) (any, error) {
	nv, err := normalize(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nv, nil
}

func normalize(v any) (any, error) {
	switch v := v.(type) {
	case nil, bool, string:
		return v, nil
	case json.Number:
		if !isNumber(string(v)) {
			return nil, errors.New("malformed number")
		}
		return v, nil
	case float64:
		return floatNumber(v, 64)
	case float32:
		return floatNumber(float64(v), 32)
	case int:
		return json.Number(strconv.FormatInt(int64(v), 10)), nil
	case int8:
		return json.Number(strconv.FormatInt(int64(v), 10)), nil
	case int16:
		return json.Number(strconv.FormatInt(int64(v), 10)), nil
	case int32:
		return json.Number(strconv.FormatInt(int64(v), 10)), nil
	case int64:
		return json.Number(strconv.FormatInt(v, 10)), nil
	case uint:
		return json.Number(strconv.FormatUint(uint64(v), 10)), nil
	case uint8:
		return json.Number(strconv.FormatUint(uint64(v), 10)), nil
	case uint16:
		return json.Number(strconv.FormatUint(uint64(v), 10)), nil
	case uint32:
		return json.Number(strconv.FormatUint(uint64(v), 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(v, 10)), nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			ne, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[i] = ne
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			ne, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[k] = ne
		}
		return out, nil
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = e
		}
		return out, nil
	}
	// Anything else (a struct, a typed slice or map) goes through
	// encoding/json, as it would when stored.
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("not JSON data: %T", v)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("not JSON data: %T", v)
	}
	return out, nil
}

func floatNumber(f float64, bits int) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, errors.New("not a finite number")
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, bits)), nil
}

// isNumber reports whether s is a JSON number.
func isNumber(s string) bool {
	_, _, _, _, ok := parseNumber(s)
	return ok
}

// parseNumber splits the JSON number s into its sign, integer digits,
// fraction digits and exponent (with its sign, "" when there is none).
func parseNumber(s string) (neg bool, intPart, frac, exp string, ok bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		neg = true
		i++
	}
	start := i
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false, "", "", "", false
	}
	intPart = s[start:i]
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == fs {
			return false, "", "", "", false
		}
		frac = s[fs:i]
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		es := i
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		ds := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == ds {
			return false, "", "", "", false
		}
		exp = s[es:i]
	}
	if i != len(s) {
		return false, "", "", "", false
	}
	return neg, intPart, frac, exp, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// canonical returns a form of the JSON number n that equal numbers share:
// sign, significant digits, and the exponent of the last one. 1, 1.0,
// 10e-1 and 1e0 all become "1e0"; 0 and -0 become "0". A number whose
// exponent is beyond any sense (over 2^62) keeps its text.
func canonical(n json.Number) string {
	neg, intPart, frac, exp, ok := parseNumber(string(n))
	if !ok {
		return string(n)
	}
	e := int64(0)
	if exp != "" {
		var err error
		e, err = strconv.ParseInt(strings.TrimPrefix(exp, "+"), 10, 64)
		if err != nil || e > math.MaxInt64/2 || e < math.MinInt64/2 {
			return string(n)
		}
	}
	d := strings.TrimLeft(intPart+frac, "0")
	t := strings.TrimRight(d, "0")
	if t == "" {
		return "0"
	}
	e += int64(len(d)-len(t)) - int64(len(frac))
	sign := ""
	if neg {
		sign = "-"
	}
	return sign + t + "e" + strconv.FormatInt(e, 10)
}

// Equal reports whether a and b are the same JSON value: numbers by
// value, objects whatever the order of their keys. Values of other types
// than Apply's results are unequal to everything.
func Equal(a, b any) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case bool:
		bb, ok := b.(bool)
		return ok && a == bb
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case json.Number:
		bn, ok := b.(json.Number)
		return ok && (a == bn || canonical(a) == canonical(bn))
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			return false
		}
		for i := range a {
			if !Equal(a[i], bs[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, av := range a {
			bv, ok := bm[k]
			if !ok || !Equal(av, bv) {
				return false
			}
		}
		return true
	}
	return false
}

// TagsProperty is the property holding a player's tags.
const TagsProperty = "tags"

// Tags returns the player's tags: the string elements of the array
// property "tags", in order.
func Tags(props map[string]any) []string {
	arr, _ := props[TagsProperty].([]any)
	var tags []string
	for _, e := range arr {
		if s, ok := e.(string); ok {
			tags = append(tags, s)
		}
	}
	return tags
}

// OptOutPrefix begins the names of the opt-out flags, such as
// core_is_email_disabled and core_is_sms_disabled_by_platform. They are
// plain properties.
const OptOutPrefix = "core_is_"

// OptOuts returns the opt-out flags among props, each as set or not: true,
// a non-zero number and the strings "true" and "1" set a flag; anything
// else clears it.
func OptOuts(props map[string]any) map[string]bool {
	var flags map[string]bool
	for k, v := range props {
		if !strings.HasPrefix(k, OptOutPrefix) {
			continue
		}
		if flags == nil {
			flags = make(map[string]bool)
		}
		flags[k] = truthy(v)
	}
	return flags
}

func truthy(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case json.Number:
		return canonical(v) != "0"
	case float64:
		return v != 0
	case string:
		return strings.EqualFold(v, "true") || v == "1"
	}
	return false
}
