package telegram

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// splitText cuts text into parts of at most limit UTF-16 code units, as
// Telegram counts them. Plain text is cut between runes, HTML between tags
// and entities with its open tags closed and reopened around each cut.
// MarkdownV2 is never cut (see ParseModeMarkdownV2). Parts that would hold
// only white space are dropped: Telegram refuses an empty message.
func splitText(text, mode string, limit int) []string {
	// Tags and entities only ever shrink a text when Telegram parses it,
	// so a raw length within the limit needs no further look.
	if mode == ParseModeMarkdownV2 || rawUnits(text) <= limit {
		return []string{text}
	}
	if mode == ParseModeHTML {
		return htmlAtoms(text).split(limit)
	}
	return textAtoms(text).split(limit)
}

func rawUnits(s string) int {
	n := 0
	for _, r := range s {
		n += runeUnits(r)
	}
	return n
}

func runeUnits(r rune) int {
	if n := utf16.RuneLen(r); n > 0 {
		return n
	}
	return 1
}

type atomKind uint8

const (
	atomText  atomKind = iota // one rune of text
	atomRef                   // an HTML entity, &amp; or &#128512;
	atomOpen                  // an opening tag
	atomClose                 // a closing tag
)

// atom is the smallest piece splitting never cuts through: the text's
// bytes [start, end). It holds no pointer, so a slice of ten thousand is
// one allocation the garbage collector need not scan.
type atom struct {
	start, end int32
	r          rune  // atomText: the rune
	tag        int32 // tags: index into tokens.names
	units      uint8 // UTF-16 code units Telegram counts: 0 for a tag
	kind       atomKind
}

// tokens is a text cut into atoms.
type tokens struct {
	s     string
	atoms []atom
	names []string // lower-case element names, by atom.tag
	emoji int32    // tag of tg-emoji, or -1
}

func (t *tokens) raw(a atom) string { return t.s[a.start:a.end] }

func textAtoms(s string) *tokens {
	atoms := make([]atom, 0, len(s))
	for i, r := range s {
		atoms = append(atoms, atom{start: int32(i), end: int32(i + utf8.RuneLen(r)), units: uint8(runeUnits(r)), r: r})
	}
	return &tokens{s: s, atoms: atoms, emoji: -1}
}

// htmlAtoms tokenises Telegram's HTML subset. Telegram requires every <, >
// and & outside a tag or entity to be escaped, so in a text it accepts a <
// always starts a tag and an & always starts an entity. Input it would
// refuse anyway is tokenised leniently and counted conservatively.
func htmlAtoms(s string) *tokens {
	t := &tokens{s: s, atoms: make([]atom, 0, len(s)), emoji: -1}
	ids := map[string]int32{}
	for i := 0; i < len(s); {
		switch s[i] {
		case '<':
			if end := strings.IndexByte(s[i:], '>'); end > 0 {
				kind, name := parseTag(s[i : i+end+1])
				id, ok := ids[name]
				if !ok {
					id = int32(len(t.names))
					ids[name] = id
					t.names = append(t.names, name)
					if name == emojiTag {
						t.emoji = id
					}
				}
				t.atoms = append(t.atoms, atom{start: int32(i), end: int32(i + end + 1), kind: kind, tag: id})
				i += end + 1
				continue
			}
		case '&':
			if end := strings.IndexByte(s[i:], ';'); end > 1 && end <= 12 {
				if units, ok := entityUnits(s[i : i+end+1]); ok {
					t.atoms = append(t.atoms, atom{start: int32(i), end: int32(i + end + 1), units: uint8(units), kind: atomRef})
					i += end + 1
					continue
				}
			}
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		t.atoms = append(t.atoms, atom{start: int32(i), end: int32(i + size), units: uint8(runeUnits(r)), r: r})
		i += size
	}
	return t
}

// emojiTag is a custom emoji, whose alternative text is one emoji: a cut
// inside it would break the entity.
const emojiTag = "tg-emoji"

func parseTag(raw string) (atomKind, string) {
	body := raw[1 : len(raw)-1]
	kind := atomOpen
	if strings.HasPrefix(body, "/") {
		kind = atomClose
		body = body[1:]
	}
	end := strings.IndexFunc(body, func(r rune) bool {
		return !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
	if end < 0 {
		end = len(body)
	}
	return kind, strings.ToLower(body[:end])
}

// entityUnits says how many code units an entity becomes: Telegram knows
// &lt; &gt; &amp; &quot; and numeric references.
func entityUnits(raw string) (int, bool) {
	name := raw[1 : len(raw)-1]
	switch name {
	case "lt", "gt", "amp", "quot":
		return 1, true
	}
	if !strings.HasPrefix(name, "#") {
		return 0, false
	}
	num, base := name[1:], 10
	if strings.HasPrefix(num, "x") || strings.HasPrefix(num, "X") {
		num, base = num[1:], 16
	}
	n, err := strconv.ParseUint(num, base, 32)
	if err != nil || !utf8.ValidRune(rune(n)) {
		return 0, false
	}
	return runeUnits(rune(n)), true
}

// cut is a place a part may end: before atoms[at]; skip atoms (a line break
// or a space) are dropped there.
type cut struct {
	at, skip int
}

// split fills each part greedily and ends it at the best cut seen: the
// last line break in the part's second half, else the last space there,
// else the last line break or space anywhere, else the last atom boundary
// that does not break a grapheme. Open tags are closed at the cut and
// reopened in the next part; tags cost nothing against the limit.
func (t *tokens) split(limit int) []string {
	atoms := t.atoms
	var (
		parts []string
		open  []atom // tags open at the start of the current part
	)
	for start := 0; start < len(atoms); {
		if start > 0 {
			// Tags that close right at a cut close in the previous part
			// (an empty <b></b> here would be an empty entity).
			for start < len(atoms) && atoms[start].kind == atomClose {
				open = applyTag(open, atoms[start])
				start++
			}
			if start == len(atoms) {
				break
			}
		}
		n, end := 0, len(atoms)
		var nl, sp, nlHalf, spHalf, hard cut
		stack := append([]atom(nil), open...)
		emoji := t.emojiDepth(stack)
		for j := start; j < len(atoms); j++ {
			a := atoms[j]
			// A cut before atoms[j], with the tags open at this point;
			// recorded before the limit check, since a line break that
			// does not fit is the best place to cut.
			if j > start && emoji == 0 {
				if a.kind == atomText && a.r == '\n' {
					nl = cut{j, 1}
					if n >= limit/2 {
						nlHalf = nl
					}
				} else if a.kind == atomText && unicode.IsSpace(a.r) {
					sp = cut{j, 1}
					if n >= limit/2 {
						spHalf = sp
					}
				}
				if graphemeBoundary(atoms[j-1], a) {
					hard = cut{j, 0}
				}
			}
			if n+int(a.units) > limit {
				end = j
				break
			}
			n += int(a.units)
			switch a.kind {
			case atomClose:
				emoji -= t.emojiDepth(stack[popTo(stack, a):])
			case atomOpen:
				if a.tag == t.emoji {
					emoji++
				}
			}
			stack = applyTag(stack, a)
		}
		if end == len(atoms) {
			parts = t.appendPart(parts, open, atoms[start:], stack)
			break
		}
		c := hard
		for _, cand := range []cut{nlHalf, spHalf, nl, sp} {
			if cand.at > start {
				c = cand
				break
			}
		}
		if c.at <= start {
			// Nothing better than cutting right before the atom that
			// does not fit (a grapheme longer than a message).
			c = cut{end, 0}
		}
		closeAt := append([]atom(nil), open...)
		for _, a := range atoms[start:c.at] {
			closeAt = applyTag(closeAt, a)
		}
		// Tags that open right at a cut open in the next part instead.
		body, closing := atoms[start:c.at], closeAt
		for len(body) > 0 && body[len(body)-1].kind == atomOpen {
			body, closing = body[:len(body)-1], closing[:len(closing)-1]
		}
		parts = t.appendPart(parts, open, body, closing)
		start = c.at + c.skip
		open = closeAt
	}
	return parts
}

// appendPart renders reopen + body + close, unless the part has no visible
// text.
func (t *tokens) appendPart(parts []string, reopen, body, stack []atom) []string {
	visible := false
	for _, a := range body {
		if a.kind == atomRef || a.kind == atomText && !unicode.IsSpace(a.r) {
			visible = true
			break
		}
	}
	if !visible {
		return parts
	}
	var b strings.Builder
	for _, a := range reopen {
		b.WriteString(t.raw(a))
	}
	// body is contiguous in the text.
	b.WriteString(t.s[body[0].start:body[len(body)-1].end])
	for i := len(stack) - 1; i >= 0; i-- {
		b.WriteString("</" + t.names[stack[i].tag] + ">")
	}
	return append(parts, b.String())
}

// applyTag returns the stack of open tags after a. A closing tag pops up to
// its opening one; an unmatched one is ignored (Telegram would refuse it).
func applyTag(stack []atom, a atom) []atom {
	switch a.kind {
	case atomOpen:
		return append(stack, a)
	case atomClose:
		return stack[:popTo(stack, a)]
	}
	return stack
}

// popTo returns the stack's length after the closing tag a.
func popTo(stack []atom, a atom) int {
	for i := len(stack) - 1; i >= 0; i-- {
		if stack[i].tag == a.tag {
			return i
		}
	}
	return len(stack)
}

func (t *tokens) emojiDepth(stack []atom) int {
	n := 0
	for _, a := range stack {
		if a.tag == t.emoji {
			n++
		}
	}
	return n
}

// graphemeBoundary approximates "not inside a user-perceived character":
// no cut before a combining mark, a variation selector, a zero-width joiner
// or a skin-tone modifier, nor right after a joiner.
func graphemeBoundary(prev, next atom) bool {
	if prev.kind == atomText && prev.r == '\u200d' {
		return false
	}
	if next.kind != atomText {
		return true
	}
	r := next.r
	if r < 0x300 {
		return true // below the combining diacritics: the common case
	}
	switch {
	case r == '\u200d', r >= '\ufe00' && r <= '\ufe0f', r >= 0x1f3fb && r <= 0x1f3ff, r >= 0xe0020 && r <= 0xe007f:
		return false
	case unicode.In(r, unicode.Mn, unicode.Me, unicode.Mc):
		return false
	}
	return true
}
