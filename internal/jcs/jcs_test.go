package jcs

import (
	"bytes"
	"encoding/json"
	"testing"

	gojcs "github.com/gowebpki/jcs"
)

var canonSeeds = []string{
	`{}`, `[]`, `{"b":1,"a":2}`, `{"a":{"d":[1,2,{"z":null,"y":true}],"c":false}}`,
	`[0, -0, 1.0, 1e2, 1E-7, 1e21, 1e+21, 123456789012345678901, 0.1, 5e-324, 1.7976931348623157e308, -1.5e-7, 100, 1e-6]`,
	`["\u00e9", "\ud83d\ude00", "\u2028", "\/", "\"\\\b\f\n\r\t\u0001\u001f", "\u007f", "é"]`,
	`{"\u20ac":1,"\ud83d\ude00":2,"\ufb33":3,"a":4,"":5}`,
	` { "a" : [ 1 , 2 ] } `, `{"a":1,"a":2}`, `["\ud800"]`, `["\udc00\ud800"]`, `[01]`, `[1.]`, `[.5]`, `[+1]`,
	`{"a":1}x`, `[1e400]`, `"\x"`, "[\"a\x01\"]", "[\"\xff\"]", `[tru]`, `[nul]`, `{"a"}`, `[1,]`,
}

func TestCanonicalMatchesJCS(t *testing.T) {
	for _, s := range canonSeeds {
		checkCanonical(t, []byte(s))
	}
}

func FuzzCanonicalMatchesJCS(f *testing.F) {
	for _, s := range canonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkCanonical)
}

// checkCanonical holds Append to gowebpki/jcs on valid JSON: the same
// output, or both refuse. On invalid JSON it must refuse.
func checkCanonical(t *testing.T, in []byte) {
	got, err := Append(nil, in)
	if !json.Valid(in) {
		if err == nil {
			t.Fatalf("accepted invalid JSON %q", in)
		}
		return
	}
	want, jerr := gojcs.Transform(in)
	switch {
	case err != nil && jerr != nil:
	case err != nil:
		// Stricter than jcs is allowed only where I-JSON is: lone
		// surrogates.
		if !bytes.Contains(in, []byte(`\u`)) {
			t.Fatalf("refused %q (%v), jcs gives %q", in, err, want)
		}
	case jerr != nil:
		t.Fatalf("accepted %q as %q, jcs refuses: %v", in, got, jerr)
	case !bytes.Equal(got, want):
		t.Fatalf("%q:\n got %q\nwant %q", in, got, want)
	}
}
