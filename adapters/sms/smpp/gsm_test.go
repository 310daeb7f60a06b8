package smpp

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

// gsmBasic is the GSM 03.38 default alphabet indexed by septet, written out
// independently of gsmSeptet's switch; 0x1B is the escape.
const gsmBasic = "@£$¥èéùìòÇ\nØø\rÅå" +
	"Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ" +
	" !\"#¤%&'()*+,-./" +
	"0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNO" +
	"PQRSTUVWXYZÄÖÑÜ§" +
	"¿abcdefghijklmno" +
	"pqrstuvwxyzäöñüà"

// gsmExtensionTable is 3GPP TS 23.038's default extension table.
var gsmExtensionTable = map[byte]rune{
	0x0A: '\f', 0x14: '^', 0x28: '{', 0x29: '}', 0x2F: '\\',
	0x3C: '[', 0x3D: '~', 0x3E: ']', 0x40: '|', 0x65: '€',
}

// decodeGSMForTest turns unpacked septets back into text, failing on a
// dangling escape or an unknown extension septet.
func decodeGSMForTest(t *testing.T, septets []byte) string {
	t.Helper()
	basic := []rune(gsmBasic)
	var b strings.Builder
	for i := 0; i < len(septets); i++ {
		c := septets[i]
		if c > 0x7F {
			t.Fatalf("octet 0x%02x at %d is not a septet", c, i)
		}
		if c != 0x1B {
			b.WriteRune(basic[c])
			continue
		}
		i++
		if i == len(septets) {
			t.Fatalf("escape at the end of a part")
		}
		r, ok := gsmExtensionTable[septets[i]]
		if !ok {
			t.Fatalf("escape followed by unknown septet 0x%02x", septets[i])
		}
		b.WriteRune(r)
	}
	return b.String()
}

func decodeUCS2ForTest(t *testing.T, b []byte) string {
	t.Helper()
	if len(b)%2 != 0 {
		t.Fatalf("odd UCS-2 length %d", len(b))
	}
	units := make([]uint16, len(b)/2)
	for i := range units {
		units[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	if n := len(units); n > 0 && units[n-1] >= 0xD800 && units[n-1] < 0xDC00 {
		t.Fatalf("part ends with a high surrogate")
	}
	if n := len(units); n > 0 && units[0] >= 0xDC00 && units[0] < 0xE000 {
		t.Fatalf("part starts with a low surrogate")
	}
	return string(utf16.Decode(units))
}

func TestGSMSeptetMatchesDefaultAlphabet(t *testing.T) {
	i := 0
	for _, r := range gsmBasic {
		if i != 0x1B {
			c, esc, ok := gsmSeptet(r)
			if !ok || esc || c != byte(i) {
				t.Errorf("gsmSeptet(%q) = 0x%02x, escaped %v, ok %v; want 0x%02x", r, c, esc, ok, i)
			}
		}
		i++
	}
	if i != 128 {
		t.Fatalf("default alphabet has %d characters, want 128", i)
	}
	for septet, r := range gsmExtensionTable {
		c, esc, ok := gsmSeptet(r)
		if !ok || !esc || c != septet {
			t.Errorf("gsmSeptet(%q) = 0x%02x, escaped %v, ok %v; want escaped 0x%02x", r, c, esc, ok, septet)
		}
	}
	// Nothing outside the two tables may claim a septet.
	known := map[rune]bool{}
	for _, r := range gsmBasic {
		known[r] = true
	}
	for _, r := range gsmExtensionTable {
		known[r] = true
	}
	for r := rune(0); r < 0x3000; r++ {
		if _, _, ok := gsmSeptet(r); ok != (known[r] && r != 0x1B) {
			t.Errorf("gsmSeptet(%U) ok = %v", r, ok)
		}
	}
}

type gsmCase struct {
	Name   string  `json:"name"`
	Pieces [][]any `json:"pieces"` // [text, count]
	Coding byte    `json:"coding"`
	Sizes  []int   `json:"sizes"` // septets or UTF-16 units per part
	Hex    []string
}

func (c gsmCase) body(t *testing.T) string {
	var b strings.Builder
	for _, p := range c.Pieces {
		s, ok1 := p[0].(string)
		n, ok2 := p[1].(float64)
		if len(p) != 2 || !ok1 || !ok2 {
			t.Fatalf("bad piece %v", p)
		}
		b.WriteString(strings.Repeat(s, int(n)))
	}
	return b.String()
}

func TestSegment(t *testing.T) {
	raw, err := os.ReadFile("testdata/gsm_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []gsmCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			body := tc.body(t)
			seg := segment(body)
			if seg.dataCoding != tc.Coding {
				t.Fatalf("data coding 0x%02x, want 0x%02x", seg.dataCoding, tc.Coding)
			}
			unit := 1
			single, multi := gsmSingle, gsmPart
			if seg.dataCoding == codingUCS2 {
				unit, single, multi = 2, ucs2Single, ucs2Part
			}
			var sizes []int
			var joined strings.Builder
			for i, p := range seg.parts {
				sizes = append(sizes, len(p)/unit)
				limit := single
				if len(seg.parts) > 1 {
					limit = multi
				}
				if len(p)/unit > limit {
					t.Errorf("part %d holds %d units, limit %d", i+1, len(p)/unit, limit)
				}
				if i < len(tc.Hex) {
					if got, want := hex.EncodeToString(p), tc.Hex[i]; got != want {
						t.Errorf("part %d = %s, want %s", i+1, got, want)
					}
				}
				// Each part must decode on its own: no split escape, no split pair.
				if seg.dataCoding == codingUCS2 {
					joined.WriteString(decodeUCS2ForTest(t, p))
				} else {
					joined.WriteString(decodeGSMForTest(t, p))
				}
			}
			if !slices.Equal(sizes, tc.Sizes) {
				t.Errorf("part sizes %v, want %v", sizes, tc.Sizes)
			}
			if joined.String() != body {
				t.Errorf("parts do not decode back to the body")
			}
		})
	}
}

func TestUDH(t *testing.T) {
	if got, want := hex.EncodeToString(udh(0xAB, 3, 2)), "050003ab0302"; got != want {
		t.Fatalf("udh = %s, want %s", got, want)
	}
}

func BenchmarkSegmentGSM(b *testing.B) {
	body := strings.Repeat("Your code is 123456. ", 20)
	b.ReportAllocs()
	for b.Loop() {
		segment(body)
	}
}
