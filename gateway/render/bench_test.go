package render_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/blindpost/blindpost/gateway/render"
)

// BenchmarkRender renders a typical 10 KB HTML email (tables, inline styles,
// a style block, a conditional comment) with three placeholders, plus a short
// Subject and text body.
func BenchmarkRender(b *testing.B) {
	src, err := os.ReadFile(filepath.Join("testdata", "email.html"))
	if err != nil {
		b.Fatal(err)
	}
	tmpl := render.Template{
		Subject: "Your weekly summary, {{pii.first_name}}",
		HTML:    string(src),
		Text:    "Hello {{pii.first_name}},\n\nHere is what happened on your account this week.\n",
	}
	values := map[string]string{"first_name": "Ada", "last_name": "Lovelace", "country": "GB"}
	allowed := func(f string) bool { _, ok := values[f]; return ok }
	value := func(f string) (string, bool) { v, ok := values[f]; return v, ok }
	b.SetBytes(int64(len(tmpl.Subject) + len(tmpl.HTML) + len(tmpl.Text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := render.Render(tmpl, allowed, value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlaceholders is the accept-time check of the same template.
func BenchmarkPlaceholders(b *testing.B) {
	src, err := os.ReadFile(filepath.Join("testdata", "email.html"))
	if err != nil {
		b.Fatal(err)
	}
	tmpl := render.Template{Subject: "Your weekly summary, {{pii.first_name}}", HTML: string(src)}
	b.SetBytes(int64(len(tmpl.HTML)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := render.Placeholders(tmpl); err != nil {
			b.Fatal(err)
		}
	}
}
