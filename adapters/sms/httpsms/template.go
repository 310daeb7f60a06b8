package httpsms

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// field is a placeholder a body template may use.
type field int

const (
	fieldTo field = iota
	fieldFrom
	fieldBody
	fieldRef
	numFields
)

var fieldNames = map[string]field{"to": fieldTo, "from": fieldFrom, "body": fieldBody, "ref": fieldRef}

// bodyMode says how values are escaped into the template.
type bodyMode int

const (
	modeJSON bodyMode = iota // inside JSON string literals
	modeForm                 // application/x-www-form-urlencoded
)

// part is a literal run of the template, a placeholder (isField), or a
// resolved ${VAR} (isVar), whose lit is already escaped for the body.
type part struct {
	lit     string
	isField bool
	isVar   bool
	field   field
}

// bodyTemplate is a parsed BodyTemplate.
type bodyTemplate struct {
	parts  []part
	mode   bodyMode
	litLen int
}

// sampleValues fill a template at New to prove it renders valid JSON or
// form data. The body holds every character JSON must escape, and some
// it need not but that break JavaScript (U+2028) or naive escapers.
var sampleValues = [numFields]string{
	fieldTo:   "+15550100001",
	fieldFrom: "BRAND",
	fieldBody: "\"quoted\" \\back\\slash\x00\x01\x1f\x7f\n\r\t\u2028\u2029 &=+%? 🎰 \xff",
	fieldRef:  "ref/1?a=b&c",
}

// parseTemplate splits s into literals and placeholders ({{to}}, {{from}},
// {{body}}, {{ref}}, with optional spaces inside the braces), resolves
// ${VAR} references with lookup (for providers that want a key in the
// body), and checks that every value that could be filled in leaves the
// body well-formed.
//
// For JSON, every placeholder and every ${VAR} must sit inside a string
// literal, where its value goes escaped; anywhere else a value could add
// keys or break the document.
func parseTemplate(s string, mode bodyMode, lookup func(string) (string, bool)) (*bodyTemplate, error) {
	if s == "" {
		return nil, fmt.Errorf("body_template is empty")
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("body_template is not valid UTF-8")
	}
	t := &bodyTemplate{mode: mode}
	rest := s
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if err := t.addLit(rest, lookup); err != nil {
				return nil, err
			}
			break
		}
		if err := t.addLit(rest[:i], lookup); err != nil {
			return nil, err
		}
		end := strings.Index(rest[i+2:], "}}")
		if end < 0 {
			return nil, fmt.Errorf("body_template: unterminated placeholder at offset %d", len(s)-len(rest)+i)
		}
		name := strings.TrimSpace(rest[i+2 : i+2+end])
		f, ok := fieldNames[name]
		if !ok {
			if len(name) > 32 {
				name = name[:32] + "…"
			}
			return nil, fmt.Errorf("body_template: unknown placeholder {{%s}}; use {{to}}, {{from}}, {{body}} or {{ref}}", name)
		}
		t.parts = append(t.parts, part{isField: true, field: f})
		rest = rest[i+2+end+2:]
	}

	switch mode {
	case modeJSON:
		if err := t.checkJSONPositions(); err != nil {
			return nil, err
		}
		if out := t.render(nil, sampleValues); !json.Valid(out) {
			return nil, fmt.Errorf("body_template does not render valid JSON")
		}
	case modeForm:
		if _, err := url.ParseQuery(string(t.render(nil, sampleValues))); err != nil {
			return nil, fmt.Errorf("body_template does not render a valid form body")
		}
	}
	return t, nil
}

// addLit adds literal text, with its ${VAR} references resolved into
// parts of their own.
func (t *bodyTemplate) addLit(s string, lookup func(string) (string, bool)) error {
	for s != "" {
		i := strings.Index(s, "${")
		if i < 0 {
			t.addPart(part{lit: s})
			return nil
		}
		t.addPart(part{lit: s[:i]})
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return fmt.Errorf("body_template: unterminated ${")
		}
		v, err := expand(s[i:i+end+1], lookup)
		if err != nil {
			return fmt.Errorf("body_template: %v", err)
		}
		t.addPart(part{lit: string(t.escape(nil, v)), isVar: true})
		s = s[i+end+1:]
	}
	return nil
}

func (t *bodyTemplate) addPart(p part) {
	if p.lit == "" && !p.isVar {
		return
	}
	t.parts = append(t.parts, p)
	t.litLen += len(p.lit)
}

// checkJSONPositions walks the template's JSON lexically and requires each
// placeholder to fall inside a string, not right after a backslash.
func (t *bodyTemplate) checkJSONPositions() error {
	inString, escaped := false, false
	for _, p := range t.parts {
		if p.isField || p.isVar {
			what := "${…}"
			if p.isField {
				what = "{{" + nameOf(p.field) + "}}"
			}
			if !inString {
				return fmt.Errorf("body_template: %s must be inside a JSON string, e.g. \"%[1]s\"", what)
			}
			if escaped {
				return fmt.Errorf("body_template: %s follows a backslash", what)
			}
			continue
		}
		for i := 0; i < len(p.lit); i++ {
			c := p.lit[i]
			switch {
			case escaped:
				escaped = false
			case inString && c == '\\':
				escaped = true
			case c == '"':
				inString = !inString
			}
		}
	}
	return nil
}

func nameOf(f field) string {
	for n, g := range fieldNames {
		if g == f {
			return n
		}
	}
	return "?"
}

// render appends the template filled with vals to dst.
func (t *bodyTemplate) render(dst []byte, vals [numFields]string) []byte {
	for _, p := range t.parts {
		if !p.isField {
			dst = append(dst, p.lit...)
			continue
		}
		dst = t.escape(dst, vals[p.field])
	}
	return dst
}

// escape appends v escaped for the body's content type.
func (t *bodyTemplate) escape(dst []byte, v string) []byte {
	if t.mode == modeJSON {
		return appendJSONStringContent(dst, v)
	}
	return append(dst, url.QueryEscape(v)...)
}

// size estimates the rendered length, for one allocation.
func (t *bodyTemplate) size(vals [numFields]string) int {
	n := t.litLen
	for _, p := range t.parts {
		if p.isField {
			n += len(vals[p.field]) + len(vals[p.field])/8
		}
	}
	return n
}

const hexDigits = "0123456789abcdef"

// appendJSONStringContent appends s escaped for the inside of a JSON
// string literal: quote, backslash and control characters as escapes,
// U+2028 and U+2029 escaped too (valid JSON, but line breaks to
// JavaScript), and invalid UTF-8 replaced by U+FFFD, since JSON text must
// be UTF-8.
func appendJSONStringContent(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(dst, s[start:]...)
}
