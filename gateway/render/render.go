// Package render substitutes a player's personal data into a message the core
// wrote, at send time, inside the operator's gateway.
//
// It sits exactly on the trust boundary: the template (Subject, HTML and text
// body) comes from the vendor's core, which must never see personal data, and
// the values come from the operator's vault. A template names the data it
// wants with placeholders such as {{pii.first_name}}; the gateway fills them in
// only where the data is shown to the player and cannot travel anywhere else:
//
//   - HTML text nodes (the value is HTML-escaped),
//   - the plain-text body (the value is inserted as is),
//   - the Subject header (a value with a control character is refused).
//
// A placeholder anywhere else — in a tag or attribute (href, src, style), a
// comment, a doctype, the content of script, style or another raw-text
// element, a form field's submitted text, or a URL-like word that a mail
// client could turn into a link — is refused with ErrPosition, so a template
// cannot carry a player's address back to the vendor, as in
// <img src="https://vendor.example/p?e={{pii.email}}">.
//
// Syntax: {{pii.FIELD}}, FIELD matching [a-z][a-z0-9_]{0,31}, with optional
// ASCII spaces inside the braces ({{ pii.first_name }}). The core writes \{{
// for a literal "{{" in anything it substituted itself; render turns it back
// into "{{" everywhere, and never substitutes it. Any other "{{" is ErrSyntax,
// so a mistyped placeholder fails loudly instead of reaching the player.
//
// Errors name the part, the byte offset and the field, never a value.
package render

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Template is a message as the core wrote it, or as Render filled it in.
type Template struct {
	Subject string
	HTML    string
	Text    string
}

var (
	// ErrSyntax reports a "{{" that is neither a valid placeholder nor escaped.
	ErrSyntax = errors.New("malformed placeholder")
	// ErrPosition reports a placeholder outside the places data may be shown.
	ErrPosition = errors.New("placeholder in a forbidden position")
	// ErrForbiddenField reports a field the caller's policy does not allow.
	ErrForbiddenField = errors.New("field not allowed")
	// ErrUnknownField reports a field the recipient's record lacks or has empty.
	ErrUnknownField = errors.New("unknown field")
	// ErrHeaderInjection reports a control character in the Subject.
	ErrHeaderInjection = errors.New("control character in header")
)

// Placeholders returns the sorted, distinct fields the template uses. It
// checks syntax and positions as Render does, without any value, so the
// gateway can refuse a bad template when it accepts the message and give the
// policy the list of fields at once.
func Placeholders(t Template) ([]string, error) {
	r := &renderer{fields: make(map[string]bool)}
	if _, err := r.render(t); err != nil {
		return nil, err
	}
	fields := make([]string, 0, len(r.fields))
	for f := range r.fields {
		fields = append(fields, f)
	}
	slices.Sort(fields)
	return fields, nil
}

// Render fills in every placeholder of t. Each field must pass allowed
// (ErrForbiddenField) and have a non-empty value (ErrUnknownField); a nil
// allowed allows nothing. Render returns all of the message or an error, never
// a half-rendered message.
func Render(t Template, allowed func(field string) bool, value func(field string) (string, bool)) (Template, error) {
	r := &renderer{allowed: allowed, value: value, values: make(map[string]string)}
	return r.render(t)
}

// renderer walks the three parts of a template. Without a value function it
// only validates and records the fields it meets.
type renderer struct {
	allowed func(string) bool
	value   func(string) (string, bool)
	values  map[string]string // resolved values, so each field is looked up once
	fields  map[string]bool   // fields seen, when only validating
}

func (r *renderer) render(t Template) (Template, error) {
	var out Template
	var err error
	if out.Subject, err = r.subject(t.Subject); err != nil {
		return Template{}, err
	}
	if out.HTML, err = r.html(t.HTML); err != nil {
		return Template{}, err
	}
	if out.Text, err = r.text(t.Text); err != nil {
		return Template{}, err
	}
	return out, nil
}

// resolve returns the value of field, or "" when only validating.
func (r *renderer) resolve(part string, at int, field string) (string, error) {
	if r.fields != nil {
		r.fields[field] = true
		return "", nil
	}
	if v, ok := r.values[field]; ok {
		return v, nil
	}
	if r.allowed == nil || !r.allowed(field) {
		return "", fmt.Errorf("render: %s offset %d: pii.%s: %w", part, at, field, ErrForbiddenField)
	}
	var v string
	var ok bool
	if r.value != nil {
		v, ok = r.value(field)
	}
	if !ok || v == "" {
		return "", fmt.Errorf("render: %s offset %d: pii.%s: %w", part, at, field, ErrUnknownField)
	}
	r.values[field] = v
	return v, nil
}

func (r *renderer) subject(s string) (string, error) {
	var b strings.Builder
	w := wordGuard{part: "subject"}
	err := scan("subject", s, 0, func(lit string) error {
		b.WriteString(lit)
		return w.text(lit)
	}, func(field string, at int) error {
		v, err := r.resolve("subject", at, field)
		if err != nil {
			return err
		}
		if hasControl(v) {
			return fmt.Errorf("render: subject offset %d: value of pii.%s: %w", at, field, ErrHeaderInjection)
		}
		b.WriteString(v)
		w.placeholder(field, at)
		return nil
	})
	if err == nil {
		err = w.end()
	}
	if err != nil {
		return "", err
	}
	// The template's own text is checked too: the Subject is a header
	// whatever put the control character there.
	if hasControl(b.String()) {
		return "", fmt.Errorf("render: subject: %w", ErrHeaderInjection)
	}
	return b.String(), nil
}

func (r *renderer) text(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s) + 64)
	w := wordGuard{part: "text"}
	err := scan("text", s, 0, func(lit string) error {
		b.WriteString(lit)
		return w.text(lit)
	}, func(field string, at int) error {
		v, err := r.resolve("text", at, field)
		if err != nil {
			return err
		}
		b.WriteString(v)
		w.placeholder(field, at)
		return nil
	})
	if err == nil {
		err = w.end()
	}
	if err != nil {
		return "", err
	}
	return b.String(), nil
}

// hasControl reports whether s holds a C0 or C1 control character, DEL, or a
// Unicode line or paragraph separator: anything that could end or fold a
// header line in some reader.
func hasControl(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == '\u2028' || c == '\u2029' {
			return true
		}
	}
	return false
}
