package render

import (
	"fmt"
	"strings"
)

// wordGuard refuses a placeholder that is part of a URL-like word.
//
// A text node is text to an HTML parser, but mail clients turn text that
// looks like a link into one: "https://vendor.example/?e={{pii.email}}" in a
// paragraph or in the plain-text body becomes a link that would hand the
// player's address to the vendor on a click, and so would
// "{{pii.first_name}}.vendor.example". The guard sees the visible text as a
// run of words (split on ASCII white space, and in HTML also at block-level
// tags) and refuses a word holding a placeholder if it also holds a character
// that builds URLs.
//
// It errs on the side of refusing: "Email:{{pii.email}}" is refused (write
// "Email: {{pii.email}}"), "Hi {{pii.first_name}}," is fine.
type wordGuard struct {
	part  string
	word  []byte // the current word, each placeholder written as 'x'
	field string // the first placeholder in the word, "" if none
	at    int    // its offset in the part
	ph    int    // its index in word
}

// text adds visible text.
func (g *wordGuard) text(s string) error {
	for {
		i := strings.IndexAny(s, " \t\n\r\f")
		if i < 0 {
			g.word = append(g.word, s...)
			return nil
		}
		g.word = append(g.word, s[:i]...)
		if err := g.end(); err != nil {
			return err
		}
		s = s[i+1:]
	}
}

// placeholder adds a placeholder for field at offset at.
func (g *wordGuard) placeholder(field string, at int) {
	if g.field == "" {
		g.field, g.at, g.ph = field, at, len(g.word)
	}
	g.word = append(g.word, 'x')
}

// end ends the current word, refusing it if it holds a placeholder and looks
// like part of a URL.
func (g *wordGuard) end() error {
	defer func() { g.word, g.field = g.word[:0], "" }()
	if g.field == "" || !urlLike(g.word, g.ph) {
		return nil
	}
	return fmt.Errorf("render: %s offset %d: pii.%s is part of a URL-like word: %w", g.part, g.at, g.field, ErrPosition)
}

// urlLike reports whether w, holding a placeholder at index ph, could be or
// become a link: it contains a character that builds paths, queries,
// fragments, user info or escapes, a scheme ("mailto:x", "https://"), a
// "www." prefix, or a domain label after the placeholder ("x.vendor.example").
// A dot before the placeholder ("Mr.x") and a trailing colon or dot ("x:",
// "x.") are fine.
func urlLike(w []byte, ph int) bool {
	for i, c := range w {
		switch c {
		case '/', '\\', '?', '=', '&', '#', '%', '@':
			return true
		case ':':
			if i+1 < len(w) && isAlnum(w[i+1]) {
				return true
			}
		case '.':
			if i > ph && i+1 < len(w) && isAlnum(w[i+1]) {
				return true
			}
		}
	}
	for i := 0; i+4 <= len(w); i++ {
		if w[i]|0x20 == 'w' && w[i+1]|0x20 == 'w' && w[i+2]|0x20 == 'w' && w[i+3] == '.' {
			return true
		}
	}
	return false
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c >= 0x80
}
