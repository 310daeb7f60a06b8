package telegram

import (
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestSplitText(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		mode  string
		limit int
		want  []string
	}{
		{"fits: one part, untouched", "hello world", "", 11, []string{"hello world"}},
		{"fits exactly", strings.Repeat("a", 8), "", 8, []string{strings.Repeat("a", 8)}},
		{"no white space: hard cut at the limit", "abcdefghij", "", 4, []string{"abcd", "efgh", "ij"}},
		{"prefers a line break in the second half", "aaaa bb\ncc dd", "", 10, []string{"aaaa bb", "cc dd"}},
		{"prefers a space to an early line break", "a\nbbbbb cccc", "", 9, []string{"a\nbbbbb", "cccc"}},
		{"takes an early line break over a hard cut", "a\nbbbbbbbbbb", "", 9, []string{"a", "bbbbbbbbbb"[:9], "b"}},
		{"a line break that does not fit is the cut", "abcd\nefgh", "", 4, []string{"abcd", "efgh"}},
		{"drops blank parts", "abcd\n\n\n\n\n\nefgh", "", 4, []string{"abcd", "efgh"}},
		// 😀 is U+1F600: one rune, two UTF-16 code units.
		{"counts astral runes as two units", "😀😀😀", "", 4, []string{"😀😀", "😀"}},
		{"never halves a surrogate pair", "a😀b", "", 2, []string{"a", "😀", "b"}},
		// 👍🏽 is U+1F44D U+1F3FD: the skin tone must stay with its hand.
		{"keeps a modifier with its base", "ab👍🏽", "", 5, []string{"ab", "👍🏽"}},
		{"keeps a combining accent with its letter", "abce\u0301", "", 4, []string{"abc", "e\u0301"}},

		{"html: tags cost nothing", "<b>abcd</b>", ParseModeHTML, 4, []string{"<b>abcd</b>"}},
		{"html: entities count once", "&lt;&amp;&gt;&quot;", ParseModeHTML, 4, []string{"&lt;&amp;&gt;&quot;"}},
		{"html: numeric entity of an astral rune counts two", "&#128512;ab", ParseModeHTML, 3, []string{"&#128512;a", "b"}},
		{"html: never cuts an entity", "abc&amp;def", ParseModeHTML, 3, []string{"abc", "&amp;de", "f"}},
		{"html: closes and reopens a tag across the cut", "<b>aaa bbb</b>", ParseModeHTML, 4, []string{"<b>aaa</b>", "<b>bbb</b>"}},
		{
			"html: reopens nested tags with their attributes",
			`<a href="https://example.com/x?a=1&amp;b=2"><i>aaa bbb</i></a> cc`, ParseModeHTML, 6,
			[]string{`<a href="https://example.com/x?a=1&amp;b=2"><i>aaa</i></a>`, `<a href="https://example.com/x?a=1&amp;b=2"><i>bbb</i></a> cc`},
		},
		{"html: a tag opening at the cut moves to the next part", "aaa <b>bbb</b>", ParseModeHTML, 4, []string{"aaa", "<b>bbb</b>"}},
		{"html: a tag closing at the cut stays in its part", "<b>aaaa</b>\nbbbb", ParseModeHTML, 4, []string{"<b>aaaa</b>", "bbbb"}},
		{"html: no cut inside a custom emoji", `ab<tg-emoji emoji-id="1">👍</tg-emoji>`, ParseModeHTML, 3, []string{"ab", `<tg-emoji emoji-id="1">👍</tg-emoji>`}},
		{"markdown is never split", strings.Repeat("*a* ", 10), ParseModeMarkdownV2, 4, []string{strings.Repeat("*a* ", 10)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := splitText(tt.text, tt.mode, tt.limit)
			if !slices.Equal(got, tt.want) {
				t.Errorf("splitText(%q, %d)\n got %q\nwant %q", tt.text, tt.limit, got, tt.want)
			}
		})
	}
}

// telegramUnits counts a part the way Telegram does after parsing.
func telegramUnits(part, mode string) int {
	n := 0
	for _, a := range tokenise(part, mode).atoms {
		n += int(a.units)
	}
	return n
}

func tokenise(s, mode string) *tokens {
	if mode == ParseModeHTML {
		return htmlAtoms(s)
	}
	return textAtoms(s)
}

// visible is what the reader sees, without tags and white space, so that
// the parts can be compared with the whole.
func visible(s, mode string) string {
	t := tokenise(s, mode)
	var b strings.Builder
	for _, a := range t.atoms {
		if a.kind == atomRef || a.kind == atomText && !unicode.IsSpace(a.r) {
			b.WriteString(t.raw(a))
		}
	}
	return b.String()
}

func balanced(part string) bool {
	var stack []int32
	for _, a := range htmlAtoms(part).atoms {
		switch a.kind {
		case atomOpen:
			stack = append(stack, a.tag)
		case atomClose:
			if len(stack) == 0 || stack[len(stack)-1] != a.tag {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0
}

func FuzzSplitText(f *testing.F) {
	f.Add("hello world\nsecond line with more words", false, 7)
	f.Add("<b>bold <i>both</i></b> plain &amp; <a href=\"https://example.com\">link text</a>", true, 5)
	f.Add("😀👍🏽e\u0301 \u200d x", false, 3)
	f.Fuzz(func(t *testing.T, text string, html bool, limit int) {
		if limit < 2 || limit > 64 || !utf8.ValidString(text) || strings.TrimSpace(text) == "" {
			t.Skip()
		}
		mode := ""
		if html {
			mode = ParseModeHTML
			if !validHTML(text) {
				t.Skip()
			}
		}
		if visible(text, mode) == "" {
			t.Skip() // Telegram refuses it whole; nothing to split
		}
		parts := splitText(text, mode, limit)
		var seen strings.Builder
		for i, p := range parts {
			if n := telegramUnits(p, mode); n > limit {
				t.Fatalf("part %d has %d units, limit %d: %q", i, n, limit, p)
			}
			if visible(p, mode) == "" {
				t.Fatalf("part %d is blank: %q", i, p)
			}
			if html && !balanced(p) {
				t.Fatalf("part %d is not balanced: %q", i, p)
			}
			seen.WriteString(visible(p, mode))
		}
		if got, want := seen.String(), visible(text, mode); got != want {
			t.Fatalf("parts lost or reordered text:\n got %q\nwant %q\nparts %q", got, want, parts)
		}
	})
}

// validHTML approximates what Telegram accepts: balanced tags, and no bare
// <, > or & in the text.
func validHTML(s string) bool {
	for _, a := range htmlAtoms(s).atoms {
		if a.kind == atomText && strings.ContainsRune("<>&", a.r) {
			return false
		}
	}
	return balanced(s)
}

func BenchmarkSplitText(b *testing.B) {
	for _, bc := range []struct{ name, text, mode string }{
		{"plain_10k", strings.Repeat("Lorem ipsum dolor sit amet, fake player.\n", 250), ""},
		{"html_10k", strings.Repeat("<b>Lorem</b> ipsum <a href=\"https://example.com/x\">dolor</a> sit &amp; amet.\n", 180), ParseModeHTML},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if parts := splitText(bc.text, bc.mode, MaxTextLen); len(parts) < 2 {
					b.Fatal(len(parts))
				}
			}
		})
	}
}
