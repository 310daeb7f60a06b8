package render_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/gateway/render"
)

// A case file in testdata/cases is a comment (what the case proves) followed
// by sections, each opened by a line "-- name --":
//
//	subject, html, text      the template (a missing part is empty)
//	NAME quoted              section NAME as one Go-quoted string (for CR, NUL, …)
//	values                   lines `field = "Go-quoted value"`
//	allowed                  allowed fields, space separated; absent: all of values
//	want subject|html|text   the rendered parts (checked when present)
//	want error               the sentinel Render returns: ErrSyntax, ErrPosition, …
//	want placeholders        the fields Placeholders returns, space separated
//	want placeholders error  the sentinel Placeholders returns
//
// A section's content is its lines without the final newline. When "want
// error" is ErrSyntax or ErrPosition, Placeholders must fail the same way
// unless the case says otherwise.
type renderCase struct {
	name     string
	sections map[string]string
}

func (c renderCase) has(name string) bool { _, ok := c.sections[name]; return ok }

func loadCases(t *testing.T) []renderCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "cases", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no cases in testdata/cases")
	}
	var cases []renderCase
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c := renderCase{name: strings.TrimSuffix(filepath.Base(f), ".txt"), sections: parseSections(string(data))}
		cases = append(cases, c)
	}
	return cases
}

func parseSections(s string) map[string]string {
	sections := make(map[string]string)
	var name string
	var body []string
	flush := func() {
		if name != "" {
			sections[name] = strings.Join(body, "\n")
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		trimmed := line
		if strings.HasPrefix(trimmed, "-- ") && strings.HasSuffix(trimmed, " --") {
			flush()
			name, body = strings.TrimSuffix(strings.TrimPrefix(trimmed, "-- "), " --"), nil
			continue
		}
		if name != "" {
			body = append(body, trimmed)
		}
	}
	flush()
	for name, body := range sections {
		if base, ok := strings.CutSuffix(name, " quoted"); ok {
			u, err := strconv.Unquote(body)
			if err != nil {
				panic(fmt.Sprintf("section %q: %v", name, err))
			}
			sections[base] = u
			delete(sections, name)
		}
	}
	return sections
}

var sentinels = map[string]error{
	"ErrSyntax":          render.ErrSyntax,
	"ErrPosition":        render.ErrPosition,
	"ErrForbiddenField":  render.ErrForbiddenField,
	"ErrUnknownField":    render.ErrUnknownField,
	"ErrHeaderInjection": render.ErrHeaderInjection,
}

func mustSentinel(t *testing.T, name string) error {
	t.Helper()
	err, ok := sentinels[strings.TrimSpace(name)]
	if !ok {
		t.Fatalf("unknown sentinel %q", name)
	}
	return err
}

func parseValues(t *testing.T, s string) map[string]string {
	t.Helper()
	values := make(map[string]string)
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad values line %q", line)
		}
		u, err := strconv.Unquote(strings.TrimSpace(v))
		if err != nil {
			t.Fatalf("values line %q: %v", line, err)
		}
		values[strings.TrimSpace(k)] = u
	}
	return values
}

// TestRenderCases runs every case in testdata/cases through Render and
// Placeholders.
func TestRenderCases(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.name, func(t *testing.T) {
			tmpl := render.Template{Subject: c.sections["subject"], HTML: c.sections["html"], Text: c.sections["text"]}
			values := parseValues(t, c.sections["values"])
			allowed := func(f string) bool { _, ok := values[f]; return ok }
			if c.has("allowed") {
				fields := strings.Fields(c.sections["allowed"])
				allowed = func(f string) bool { return slices.Contains(fields, f) }
			}
			value := func(f string) (string, bool) { v, ok := values[f]; return v, ok }

			got, err := render.Render(tmpl, allowed, value)
			var wantErr error
			if c.has("want error") {
				wantErr = mustSentinel(t, c.sections["want error"])
			}
			switch {
			case wantErr != nil && !errors.Is(err, wantErr):
				t.Fatalf("Render error = %v, want %v", err, wantErr)
			case wantErr == nil && err != nil:
				t.Fatalf("Render: %v", err)
			}
			if err != nil {
				assertNoValue(t, err, values)
				if got != (render.Template{}) {
					t.Errorf("Render returned a partial template with its error: %+v", got)
				}
			} else {
				for _, part := range []struct {
					section, got string
				}{{"want subject", got.Subject}, {"want html", got.HTML}, {"want text", got.Text}} {
					if want, ok := c.sections[part.section]; ok && part.got != want {
						t.Errorf("%s:\n got: %q\nwant: %q", part.section, part.got, want)
					}
				}
			}

			fields, perr := render.Placeholders(tmpl)
			var wantPErr error
			switch {
			case c.has("want placeholders error"):
				wantPErr = mustSentinel(t, c.sections["want placeholders error"])
			case wantErr == render.ErrSyntax || wantErr == render.ErrPosition:
				wantPErr = wantErr
			}
			switch {
			case wantPErr != nil && !errors.Is(perr, wantPErr):
				t.Fatalf("Placeholders error = %v, want %v", perr, wantPErr)
			case wantPErr == nil && perr != nil:
				t.Fatalf("Placeholders: %v", perr)
			}
			if want, ok := c.sections["want placeholders"]; ok && perr == nil {
				if w := strings.Fields(want); !slices.Equal(fields, w) && !(len(fields) == 0 && len(w) == 0) {
					t.Errorf("Placeholders = %q, want %q", fields, w)
				}
			}
		})
	}
}

// assertNoValue fails if err mentions any value: errors travel to logs and to
// the core, and must never carry personal data.
func assertNoValue(t *testing.T, err error, values map[string]string) {
	t.Helper()
	for f, v := range values {
		if len(strings.TrimSpace(v)) >= 3 && strings.Contains(err.Error(), v) {
			t.Errorf("error %q contains the value of %s", err, f)
		}
	}
}

func TestRenderLooksUpEachFieldOnce(t *testing.T) {
	calls := 0
	tmpl := render.Template{
		Subject: "Hi {{pii.first_name}}",
		HTML:    "<p>{{pii.first_name}}</p><p>{{ pii.first_name }}</p>",
		Text:    "{{pii.first_name}}",
	}
	got, err := render.Render(tmpl, func(string) bool { return true }, func(f string) (string, bool) {
		calls++
		return "Ada", true
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("value called %d times, want 1", calls)
	}
	if got.HTML != "<p>Ada</p><p>Ada</p>" {
		t.Errorf("HTML = %q", got.HTML)
	}
}

func TestRenderNilAllowedAllowsNothing(t *testing.T) {
	_, err := render.Render(render.Template{Text: "{{pii.first_name}}"}, nil, func(string) (string, bool) { return "Ada", true })
	if !errors.Is(err, render.ErrForbiddenField) {
		t.Fatalf("err = %v, want ErrForbiddenField", err)
	}
}

func TestRenderWithoutPlaceholdersCopiesMarkupExactly(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "email.html"))
	if err != nil {
		t.Fatal(err)
	}
	// Drop the placeholders: what is left must come back byte for byte.
	plain := strings.NewReplacer("{{pii.first_name}}", "Ada", "{{ pii.last_name }}", "Lovelace", "{{pii.country}}", "GB").Replace(string(src))
	got, err := render.Render(render.Template{HTML: plain}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.HTML != plain {
		t.Error("markup changed although the template had no placeholder")
	}
}

func TestErrorsNameFieldAndOffset(t *testing.T) {
	_, err := render.Placeholders(render.Template{HTML: `<a href="https://x.example/?e={{pii.email}}">x</a>`})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"html offset 30", "pii.email", "inside a tag"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
