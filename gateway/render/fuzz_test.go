package render_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	xhtml "golang.org/x/net/html"

	"github.com/blindpost/blindpost/gateway/render"
)

// FuzzRender checks, for any template and value:
//   - Render never panics;
//   - Placeholders and Render agree on syntax and positions;
//   - a rendered message holds no unresolved {{pii. placeholder;
//   - the HTML markup (every token but text) is exactly the template's;
//   - a value reaches the HTML only escaped;
//   - the Subject holds no control character.
//
// The seed corpus is in testdata/fuzz/FuzzRender and runs with every go test.
func FuzzRender(f *testing.F) {
	f.Fuzz(func(t *testing.T, subject, html, text, v string) {
		tmpl := render.Template{Subject: subject, HTML: html, Text: text}
		// The canary marks the value: "<canary" can only reach the output
		// unescaped if the renderer let a value through as markup.
		value := v + `<canary"'&>`
		got, err := render.Render(tmpl, func(string) bool { return true }, func(string) (string, bool) { return value, true })

		// Render may stop at a bad value before it reaches a bad position, so
		// only this much must agree: a template Placeholders refuses never
		// renders, and a syntax or position error from Render is one
		// Placeholders reports too.
		_, perr := render.Placeholders(tmpl)
		if perr != nil && err == nil {
			t.Fatalf("Placeholders: %v, but Render succeeded", perr)
		}
		for _, kind := range []error{render.ErrSyntax, render.ErrPosition} {
			if errors.Is(err, kind) && !errors.Is(perr, kind) {
				t.Fatalf("Render error %v, Placeholders error %v", err, perr)
			}
		}
		if err != nil {
			if got != (render.Template{}) {
				t.Fatalf("partial template with error %v", err)
			}
			if strings.Contains(err.Error(), "canary") {
				t.Fatalf("error holds the value: %v", err)
			}
			return
		}

		escaped := strings.Contains(subject+html+text, `\{{`)
		if !escaped && !strings.Contains(v, "{") {
			for _, s := range []string{got.Subject, got.HTML, got.Text} {
				if strings.Contains(s, "{{pii.") {
					t.Fatalf("unresolved placeholder in %q", s)
				}
			}
		}

		want := strings.ReplaceAll(html, `\{{`, `{{`)
		if a, b := markup(want), markup(got.HTML); !slices.Equal(a, b) {
			t.Fatalf("markup changed:\n template: %q\n rendered: %q", a, b)
		}
		if strings.Count(got.HTML, "<canary") != strings.Count(want, "<canary") {
			t.Fatalf("value reached the HTML unescaped: %q", got.HTML)
		}
		for _, c := range got.Subject {
			if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
				t.Fatalf("control character %U in Subject %q", c, got.Subject)
			}
		}
	})
}

// markup returns every token of s but text, as the tokenizer sees it.
func markup(s string) []string {
	z := xhtml.NewTokenizer(strings.NewReader(s))
	var toks []string
	for {
		tt := z.Next()
		switch tt {
		case xhtml.ErrorToken:
			return toks
		case xhtml.TextToken:
			continue
		}
		toks = append(toks, tt.String()+":"+string(z.Raw()))
	}
}
