// Package jcs writes the RFC 8785 (JSON Canonicalization Scheme) form of
// JSON text. Both sides hash it: the envelope's message digests and the
// audit log's entries. It sits on no side of the trust boundary.
package jcs

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Append appends the RFC 8785 (JCS) canonical form of the JSON
// text src to dst: members sorted by the UTF-16 code units of their names,
// numbers as ECMAScript prints them, strings with only the mandatory
// escapes, no whitespace. It refuses what I-JSON (RFC 7493), and so JCS,
// refuses: duplicate names, lone surrogates, invalid UTF-8, numbers beyond
// float64.
//
// It does the same as github.com/gowebpki/jcs (the tests fuzz one against
// the other) at a fraction of the cost: every record's data passes through
// it on the append path, thousands of times a second, and every message of
// every envelope is digested through it.
func Append(dst, src []byte) ([]byte, error) {
	p := canonParser{src: src}
	p.space()
	dst, err := p.value(dst, 0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(src) {
		return nil, errors.New("data after the JSON value")
	}
	return dst, nil
}

// Transform returns the canonical form of src.
func Transform(src []byte) ([]byte, error) { return Append(make([]byte, 0, len(src)), src) }

// maxDepth bounds nesting, so hostile input cannot exhaust the stack.
const maxDepth = 64

type canonParser struct {
	src []byte
	i   int
}

var errSyntax = errors.New("invalid JSON")

func (p *canonParser) space() {
	for p.i < len(p.src) {
		switch p.src[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *canonParser) value(dst []byte, depth int) ([]byte, error) {
	if p.i >= len(p.src) {
		return nil, errSyntax
	}
	if depth > maxDepth {
		return nil, errors.New("JSON nested too deeply")
	}
	switch c := p.src[p.i]; {
	case c == '{':
		return p.object(dst, depth)
	case c == '[':
		return p.array(dst, depth)
	case c == '"':
		s, err := p.string()
		if err != nil {
			return nil, err
		}
		return AppendString(dst, s), nil
	case c == '-' || c >= '0' && c <= '9':
		return p.number(dst)
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if bytes.HasPrefix(p.src[p.i:], []byte(lit)) {
				p.i += len(lit)
				return append(dst, lit...), nil
			}
		}
		return nil, errSyntax
	}
}

// object appends the members straight to dst, in the order given, and
// reorders them in place only if that order is not already canonical.
func (p *canonParser) object(dst []byte, depth int) ([]byte, error) {
	p.i++ // '{'
	type member struct {
		name       []byte
		start, end int // of `"name":value` in dst
	}
	var (
		arr     [16]member
		members = arr[:0]
	)
	dst = append(dst, '{')
	base := len(dst)
	p.space()
	if p.i < len(p.src) && p.src[p.i] == '}' {
		p.i++
		return append(dst, '}'), nil
	}
	for {
		p.space()
		if p.i >= len(p.src) || p.src[p.i] != '"' {
			return nil, errSyntax
		}
		name, err := p.string()
		if err != nil {
			return nil, err
		}
		p.space()
		if p.i >= len(p.src) || p.src[p.i] != ':' {
			return nil, errSyntax
		}
		p.i++
		p.space()
		if len(members) > 0 {
			dst = append(dst, ',')
		}
		start := len(dst)
		dst = AppendString(dst, name)
		dst = append(dst, ':')
		if dst, err = p.value(dst, depth+1); err != nil {
			return nil, err
		}
		members = append(members, member{name, start, len(dst)})
		p.space()
		if p.i >= len(p.src) {
			return nil, errSyntax
		}
		if p.src[p.i] == ',' {
			p.i++
			continue
		}
		if p.src[p.i] != '}' {
			return nil, errSyntax
		}
		p.i++
		break
	}
	cmp := func(a, b member) int { return compareUTF16(a.name, b.name) }
	if !slices.IsSortedFunc(members, cmp) {
		seg := bytes.Clone(dst[base:])
		slices.SortStableFunc(members, cmp)
		dst = dst[:base]
		for k, m := range members {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, seg[m.start-base:m.end-base]...)
		}
	}
	for k := 1; k < len(members); k++ {
		if bytes.Equal(members[k-1].name, members[k].name) {
			return nil, errors.New("duplicate member name")
		}
	}
	return append(dst, '}'), nil
}

func (p *canonParser) array(dst []byte, depth int) ([]byte, error) {
	p.i++ // '['
	dst = append(dst, '[')
	p.space()
	if p.i < len(p.src) && p.src[p.i] == ']' {
		p.i++
		return append(dst, ']'), nil
	}
	for first := true; ; first = false {
		if !first {
			dst = append(dst, ',')
		}
		p.space()
		var err error
		if dst, err = p.value(dst, depth+1); err != nil {
			return nil, err
		}
		p.space()
		if p.i >= len(p.src) {
			return nil, errSyntax
		}
		if p.src[p.i] == ',' {
			p.i++
			continue
		}
		if p.src[p.i] != ']' {
			return nil, errSyntax
		}
		p.i++
		return append(dst, ']'), nil
	}
}

// string decodes the JSON string at p.i. Without escapes, the result is
// a slice of the input.
func (p *canonParser) string() ([]byte, error) {
	p.i++ // '"'
	start := p.i
	for p.i < len(p.src) {
		c := p.src[p.i]
		if c == '"' {
			s := p.src[start:p.i]
			p.i++
			if !utf8.Valid(s) {
				return nil, errors.New("invalid UTF-8 in a string")
			}
			return s, nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		p.i++
	}
	b := bytes.Clone(p.src[start:p.i])
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == '"':
			p.i++
			if !utf8.Valid(b) {
				return nil, errors.New("invalid UTF-8 in a string")
			}
			return b, nil
		case c < 0x20:
			return nil, errors.New("control character in a string")
		case c != '\\':
			b = append(b, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.src) {
			return nil, errSyntax
		}
		e := p.src[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, errSyntax
			}
			if utf16.IsSurrogate(r) {
				var r2 rune
				if p.i+1 < len(p.src) && p.src[p.i] == '\\' && p.src[p.i+1] == 'u' {
					p.i += 2
					r2, ok = p.hex4()
				}
				if r = utf16.DecodeRune(r, r2); !ok || r == utf8.RuneError {
					return nil, errors.New("lone surrogate in a string")
				}
			}
			b = utf8.AppendRune(b, r)
		default:
			return nil, errSyntax
		}
	}
	return nil, errSyntax
}

func (p *canonParser) hex4() (rune, bool) {
	if p.i+4 > len(p.src) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.src[p.i:p.i+4]), 16, 16)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(v), true
}

// number appends the number at p.i as ECMAScript's Number.prototype.toString
// prints it, which is what RFC 8785 §3.2.2.3 requires.
func (p *canonParser) number(dst []byte) ([]byte, error) {
	start := p.i
	if p.src[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.src) && p.src[p.i] >= '0' && p.src[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	intStart := p.i
	n := digits()
	if n == 0 || n > 1 && p.src[intStart] == '0' {
		return nil, errSyntax
	}
	integer := true
	if p.i < len(p.src) && p.src[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, errSyntax
		}
		integer = false
	}
	if p.i < len(p.src) && (p.src[p.i] == 'e' || p.src[p.i] == 'E') {
		p.i++
		if p.i < len(p.src) && (p.src[p.i] == '+' || p.src[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, errSyntax
		}
		integer = false
	}
	lit := p.src[start:p.i]
	// Small integers print as written (but -0 is 0).
	if integer && n <= 15 {
		if n == 1 && p.src[intStart] == '0' {
			return append(dst, '0'), nil
		}
		return append(dst, lit...), nil
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, errors.New("number out of range")
	}
	return appendES6Number(dst, f), nil
}

// appendES6Number formats f as ECMAScript does: the shortest decimal that
// reads back as f, in exponent form below 1e-6 and from 1e21 on, with no
// leading zero in the exponent. (This is also encoding/json's float
// format.)
func appendES6Number(b []byte, f float64) []byte {
	if f == 0 {
		return append(b, '0')
	}
	format := byte('f')
	if abs := math.Abs(f); abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-07 → e-7, e+07 → e+7
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// compareUTF16 orders member names as RFC 8785 §3.2.3 requires: by their
// UTF-16 code units. That is byte order unless a name holds characters
// from U+E000 up, where UTF-16's surrogates sort differently.
func compareUTF16(a, b []byte) int {
	if !hasHighRunes(a) && !hasHighRunes(b) {
		return bytes.Compare(a, b)
	}
	return slices.Compare(utf16.Encode([]rune(string(a))), utf16.Encode([]rune(string(b))))
}

func hasHighRunes(s []byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0xee { // lead byte of U+E000 and above
			return true
		}
	}
	return false
}

// AppendString appends s as an RFC 8785 string: only '"', '\\' and control
// characters are escaped, the short forms where JSON has them. (Go's
// encoding/json also escapes <, >, &, U+2028 and U+2029, which JCS does
// not, so it cannot be used here.)
func AppendString[S string | []byte](b []byte, s S) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	done := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[done:i]...)
		done = i + 1
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
	}
	b = append(b, s[done:]...)
	return append(b, '"')
}
