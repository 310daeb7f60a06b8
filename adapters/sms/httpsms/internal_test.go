package httpsms

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestPointerRFC6901 evaluates the examples of RFC 6901 section 5 against
// its example document.
func TestPointerRFC6901(t *testing.T) {
	raw, err := os.ReadFile("testdata/rfc6901.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ptr  string
		want string // JSON of the value; "" means no value
	}{
		{"", ""}, // the whole document: checked below
		{"/foo", `["bar","baz"]`},
		{"/foo/0", `"bar"`},
		{"/", `0`},
		{"/a~1b", `1`},
		{"/c%d", `2`},
		{"/e^f", `3`},
		{"/g|h", `4`},
		{"/i\\j", `5`},
		{"/k\"l", `6`},
		{"/ ", `7`},
		{"/m~0n", `8`},
		{"/foo/2", ""},
		{"/foo/-", ""},
		{"/foo/01", ""},
		{"/foo/bar", ""},
		{"/nope", ""},
		{"/foo/0/x", ""},
	}
	for _, tt := range tests {
		p, err := parsePointer(tt.ptr)
		if err != nil {
			t.Errorf("parsePointer(%q): %v", tt.ptr, err)
			continue
		}
		v, ok := p.lookup(doc)
		if tt.ptr == "" {
			if m, isMap := v.(map[string]any); !ok || !isMap || len(m) != 10 {
				t.Errorf("%q: got %v, want the whole document", tt.ptr, v)
			}
			continue
		}
		if tt.want == "" {
			if ok {
				t.Errorf("%q: got %v, want nothing", tt.ptr, v)
			}
			continue
		}
		got, _ := json.Marshal(v)
		if !ok || string(got) != tt.want {
			t.Errorf("%q: got %s (%v), want %s", tt.ptr, got, ok, tt.want)
		}
	}
	if p, _ := parsePointer("/~01"); len(p) != 1 || p[0] != "~1" {
		t.Errorf(`"/~01" unescapes to %q, want "~1"`, p)
	}
	for _, bad := range []string{"foo", "/~", "/~2", "/a~"} {
		if _, err := parsePointer(bad); err == nil {
			t.Errorf("parsePointer(%q) succeeded", bad)
		}
	}
}

// TestJSONEscapingMatchesDecoder checks appendJSONStringContent against
// encoding/json's decoder for every byte and some runes.
func TestJSONEscapingMatchesDecoder(t *testing.T) {
	var inputs []string
	for b := 0; b < 256; b++ {
		inputs = append(inputs, string([]byte{byte(b)}), "a"+string([]byte{byte(b)})+"z")
	}
	inputs = append(inputs, "\u2028\u2029", "🎰", "é", "\ufffd", "\xed\xa0\x80", "\xf4\x90\x80\x80", `\"\\`, "")
	for _, in := range inputs {
		out := append([]byte{'"'}, appendJSONStringContent(nil, in)...)
		out = append(out, '"')
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Errorf("%q escapes to invalid JSON %s: %v", in, out, err)
			continue
		}
		// Invalid UTF-8 becomes one U+FFFD per byte.
		if want := perByteReplacement(in); got != want {
			t.Errorf("%q decodes to %q, want %q", in, got, want)
		}
		if bytes.ContainsAny(out, "\u2028\u2029") {
			t.Errorf("%q: U+2028/2029 left raw", in)
		}
	}
}

func perByteReplacement(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // RuneError for an invalid byte
		i += size
	}
	return b.String()
}

func TestExpand(t *testing.T) {
	lookup := func(n string) (string, bool) {
		v, ok := map[string]string{"A": "1", "B_2": "two", "EMPTY": ""}[n]
		return v, ok
	}
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"${A}", "1"},
		{"x${A}y${B_2}z", "x1ytwoz"},
		{"$A ${EMPTY}$", "$A $"},
		{"{A}", "{A}"},
	}
	for _, tt := range tests {
		if got, err := expand(tt.in, lookup); err != nil || got != tt.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"${", "${A", "${}", "${A-B}", "${NOPE}"} {
		if _, err := expand(bad, lookup); err == nil {
			t.Errorf("expand(%q) succeeded", bad)
		}
	}
	if _, err := expand("${A}", nil); err == nil {
		t.Error("expand with a nil lookup succeeded")
	}
}

// FuzzRenderJSON checks that any values, rendered into a template that New
// accepted, give valid JSON that decodes back to the values.
func FuzzRenderJSON(f *testing.F) {
	f.Add("+15550100001", "BRAND", "hello", "ref-1")
	f.Add(`"`, `\`, "\x00\u2028\u2029", "🎰\xff")
	f.Add(`", "x": "`, "{{to}}", "${SMS_API_KEY}", "\"}]")
	tmpl, err := parseTemplate(`{"to":"{{to}}","from":["{{from}}"],"text":"<{{body}}>","ref":"{{ref}}{{ref}}"}`, modeJSON, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, to, from, body, ref string) {
		out := tmpl.render(nil, [numFields]string{to, from, body, ref})
		var doc struct {
			To   string   `json:"to"`
			From []string `json:"from"`
			Text string   `json:"text"`
			Ref  string   `json:"ref"`
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("invalid JSON %q: %v", out, err)
		}
		fix := perByteReplacement
		if doc.To != fix(to) || len(doc.From) != 1 || doc.From[0] != fix(from) || doc.Text != "<"+fix(body)+">" || doc.Ref != fix(ref)+fix(ref) {
			t.Fatalf("values changed: %+v", doc)
		}
	})
}
