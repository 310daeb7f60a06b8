package render

import (
	"fmt"
	"strings"
)

// maxField is the longest field name a placeholder may use.
const maxField = 32

// scan splits s into literal runs and placeholders, in order. lit receives
// literal text with every \{{ already turned into {{; ph receives each
// placeholder's field and its byte offset, base being the offset of s in its
// part. Any other "{{" is ErrSyntax. part names the part in errors.
func scan(part, s string, base int, lit func(string) error, ph func(field string, at int) error) error {
	pos := 0
	for {
		i := strings.Index(s[pos:], "{{")
		if i < 0 {
			return emit(lit, s[pos:])
		}
		i += pos
		if i > 0 && s[i-1] == '\\' {
			if err := emit(lit, s[pos:i-1]); err != nil {
				return err
			}
			if err := lit("{{"); err != nil {
				return err
			}
			pos = i + 2
			continue
		}
		field, n := parsePlaceholder(s[i:])
		if n == 0 {
			return syntaxError(part, base+i)
		}
		if err := emit(lit, s[pos:i]); err != nil {
			return err
		}
		if err := ph(field, base+i); err != nil {
			return err
		}
		pos = i + n
	}
}

func emit(lit func(string) error, s string) error {
	if s == "" {
		return nil
	}
	return lit(s)
}

func syntaxError(part string, at int) error {
	return fmt.Errorf("render: %s offset %d: %w", part, at, ErrSyntax)
}

// parsePlaceholder parses the placeholder at the start of s, which begins
// with "{{". It returns the field and the placeholder's length, or n == 0 if s
// does not start with a valid placeholder.
func parsePlaceholder(s string) (field string, n int) {
	i := len("{{")
	i = skipSpaces(s, i)
	if !strings.HasPrefix(s[i:], "pii.") {
		return "", 0
	}
	i += len("pii.")
	start := i
	for i < len(s) && i-start < maxField && isFieldByte(s[i], i == start) {
		i++
	}
	if i == start {
		return "", 0
	}
	field = s[start:i]
	i = skipSpaces(s, i)
	if !strings.HasPrefix(s[i:], "}}") {
		return "", 0
	}
	return field, i + len("}}")
}

func skipSpaces(s string, i int) int {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	return i
}

func isFieldByte(c byte, first bool) bool {
	switch {
	case 'a' <= c && c <= 'z':
		return true
	case '0' <= c && c <= '9', c == '_':
		return !first
	}
	return false
}
