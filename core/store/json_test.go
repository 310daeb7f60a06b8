package store

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// encodingJSON is what encoding/json writes for v, without HTML escaping.
func encodingJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func TestAppendJSONIsEncodingJSON(t *testing.T) {
	for _, v := range []any{
		map[string]any{"b": json.Number("12.50"), "a": []any{nil, true, false, "x<y&z"}, "": map[string]any{}},
		"quote \" backslash \\ nl \n cr \r tab \t nul \x00 bell \x07 del \x7f",
		"bad utf-8 \xff\xfe end", "line sep \u2028 para sep \u2029", "é 日本 😀",
		json.Number("-0.5e-7"), 1.5, 42, []string{"a"}, map[string]int{"z": 1, "a": 2},
		[]any{}, map[string]any{"k": []any{map[string]any{"n": nil}}},
	} {
		want, err := encodingJSON(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendJSON(nil, v)
		if err != nil {
			t.Fatalf("appendJSON(%#v): %v", v, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("appendJSON(%#v) = %s, encoding/json %s", v, got, want)
		}
	}
	for _, v := range []any{json.Number("1."), json.Number("01"), json.Number(""), json.Number("1e"), math.NaN(),
		map[string]any{"x": []any{math.Inf(1)}}, func() {}} {
		if b, err := appendJSON(nil, v); err == nil {
			t.Errorf("appendJSON(%#v) = %s, want an error", v, b)
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add(`{"a": [1, 2.50, -0e1, "x\u0000\u2028\ud800"], "b": {"c": null, "d": true}}`)
	f.Add(`"\xff\xfe"`)
	f.Fuzz(func(t *testing.T, s string) {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		want, err := encodingJSON(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendJSON(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("appendJSON = %s, encoding/json %s", got, want)
		}
		// Strings are also keys: invalid UTF-8 in them comes out alike.
		if str, ok := v.(string); ok {
			m := map[string]any{str: str}
			want, _ := encodingJSON(m)
			got, _ := appendJSON(nil, m)
			if !bytes.Equal(got, want) {
				t.Fatalf("appendJSON = %s, encoding/json %s", got, want)
			}
		}
	})
}
