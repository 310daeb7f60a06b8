package httpsms

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// pointer is a parsed JSON Pointer (RFC 6901): the reference tokens,
// unescaped.
type pointer []string

// parsePointer parses s. The empty string is the whole document.
func parsePointer(s string) (pointer, error) {
	if s == "" {
		return pointer{}, nil
	}
	if s[0] != '/' {
		return nil, fmt.Errorf("JSON pointer %q must be empty or start with /", s)
	}
	toks := strings.Split(s[1:], "/")
	for i, tok := range toks {
		for j := 0; j < len(tok); j++ {
			if tok[j] == '~' && (j+1 == len(tok) || (tok[j+1] != '0' && tok[j+1] != '1')) {
				return nil, fmt.Errorf("JSON pointer %q: ~ must be followed by 0 or 1", s)
			}
		}
		// ~1 first, then ~0, so that "~01" becomes "~1", not "/".
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
	}
	return pointer(toks), nil
}

// lookup evaluates p against doc, a value decoded by encoding/json with
// UseNumber. It reports false when p names nothing.
func (p pointer) lookup(doc any) (any, bool) {
	v := doc
	for _, tok := range p {
		switch x := v.(type) {
		case map[string]any:
			next, ok := x[tok]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, ok := arrayIndex(tok)
			if !ok || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// scalar evaluates p against doc and returns a string or number there as
// text; objects, arrays, booleans and null give false.
func (p pointer) scalar(doc any) (string, bool) {
	v, ok := p.lookup(doc)
	if !ok {
		return "", false
	}
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

// arrayIndex reads an RFC 6901 array index: "0" or digits without a
// leading zero. "-" (past the end) names nothing to read.
func arrayIndex(tok string) (int, bool) {
	if tok == "" || len(tok) > 9 || (len(tok) > 1 && tok[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(tok)
	return i, err == nil
}
