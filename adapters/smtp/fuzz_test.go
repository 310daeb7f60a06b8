package smtp_test

import (
	"bytes"
	"errors"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/adapters/smtp"
)

// FuzzBuildMIME checks, for any Subject, From, To and extra header value:
// BuildMIME never panics, fails only with ErrHeaderInjection or
// ErrInvalidMessage, and what it builds reads back with exactly the header
// fields it meant to write (no injected field), the Subject decoding to the
// input, CRLF line endings and lines of at most 998 bytes. The seed corpus is
// in testdata/fuzz/FuzzBuildMIME and runs with every go test.
func FuzzBuildMIME(f *testing.F) {
	f.Fuzz(func(t *testing.T, subject, from, to, extra string) {
		m := testMessage()
		m.Subject, m.From, m.To = subject, from, to
		m.Headers = [][2]string{{"X-Campaign", extra}}
		raw, err := smtp.BuildMIME(m)
		if err != nil {
			if !errors.Is(err, smtp.ErrHeaderInjection) && !errors.Is(err, smtp.ErrInvalidMessage) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		p := mustParse(t, raw)
		var keys []string
		for k := range p.header {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := []string{"Content-Type", "Date", "From", "List-Unsubscribe", "Message-Id", "Mime-Version", "Reply-To", "Subject", "To", "X-Campaign"}
		if !slices.Equal(keys, want) {
			t.Fatalf("header fields %q, want %q", keys, want)
		}
		for _, k := range want {
			if len(p.header[k]) != 1 {
				t.Fatalf("%d %s fields", len(p.header[k]), k)
			}
		}
		got, err := new(mime.WordDecoder).DecodeHeader(unfolded(raw, "Subject"))
		if err != nil || got != subject {
			t.Fatalf("Subject reads back as %q (%v), want %q", got, err, subject)
		}
		if got := unfolded(raw, "X-Campaign"); got != extra {
			t.Fatalf("X-Campaign reads back as %q, want %q", got, extra)
		}
		for _, field := range []string{"From", "To"} {
			list, err := mail.ParseAddressList(p.header.Get(field))
			if err != nil || len(list) != 1 {
				t.Fatalf("%s reads back as %d addresses (%v)", field, len(list), err)
			}
		}
	})
}

// unfolded returns the value of the header field name in raw, unfolded as
// RFC 5322 §2.2.3 says (CRLF removed, nothing else), without the one space
// BuildMIME writes after the colon. net/mail trims and joins white space, so
// it cannot show whether a value came back exactly.
func unfolded(raw []byte, name string) string {
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	for i, line := range lines {
		v, ok := strings.CutPrefix(line, name+": ")
		if !ok {
			continue
		}
		for _, cont := range lines[i+1:] {
			if !strings.HasPrefix(cont, " ") {
				break
			}
			v += cont
		}
		return v
	}
	return ""
}
