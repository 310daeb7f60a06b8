package smtp_test

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/smtp"
)

func testMessage() smtp.Message {
	return smtp.Message{
		From:      "Brand <news@brand.example>",
		To:        "ada@example.com",
		ReplyTo:   "support@brand.example",
		Subject:   "Your weekly summary",
		HTML:      "<p>Hello Ada,</p>\n<p>Here is your week.</p>\n",
		Text:      "Hello Ada,\nHere is your week.\n",
		MessageID: "<01HZX3K9QW.42@gw.brand.example>",
		Date:      time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC),
		Headers:   [][2]string{{"X-Campaign", "weekly-2026-11"}},

		ListUnsubscribe: "https://brand.example/u/abc",
	}
}

// parsed is a built message read back with net/mail and mime/multipart, as a
// receiving client would.
type parsed struct {
	header mail.Header
	parts  []part
}

type part struct{ contentType, body string }

func mustParse(t testing.TB, raw []byte) parsed {
	t.Helper()
	assertCRLF(t, raw)
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("net/mail cannot read the message: %v", err)
	}
	mediaType, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (%v), want multipart/alternative", m.Header.Get("Content-Type"), err)
	}
	p := parsed{header: m.Header}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		mp, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if cte := mp.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
			t.Fatalf("Content-Transfer-Encoding = %q", cte)
		}
		body, err := io.ReadAll(quotedprintable.NewReader(mp))
		if err != nil {
			t.Fatal(err)
		}
		p.parts = append(p.parts, part{mp.Header.Get("Content-Type"), string(body)})
	}
	return p
}

// assertCRLF fails on a bare CR or LF, or a line over 998 bytes.
func assertCRLF(t testing.TB, raw []byte) {
	t.Helper()
	for i, c := range raw {
		switch {
		case c == '\n' && (i == 0 || raw[i-1] != '\r'):
			t.Fatalf("bare LF at byte %d", i)
		case c == '\r' && (i+1 == len(raw) || raw[i+1] != '\n'):
			t.Fatalf("bare CR at byte %d", i)
		}
	}
	for _, line := range bytes.Split(raw, []byte("\r\n")) {
		if len(line) > 998 {
			t.Fatalf("line of %d bytes", len(line))
		}
	}
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func TestBuildMIMEReadsBackAsWritten(t *testing.T) {
	m := testMessage()
	raw, err := smtp.BuildMIME(m)
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, raw)
	for name, want := range map[string]string{
		"From":             `"Brand" <news@brand.example>`,
		"To":               "<ada@example.com>",
		"Reply-To":         "<support@brand.example>",
		"Subject":          "Your weekly summary",
		"Date":             "Sat, 14 Mar 2026 15:09:26 +0000",
		"Message-Id":       "<01HZX3K9QW.42@gw.brand.example>",
		"Mime-Version":     "1.0",
		"List-Unsubscribe": "<https://brand.example/u/abc>",
		"X-Campaign":       "weekly-2026-11",
	} {
		if got := p.header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	want := []part{
		{"text/plain; charset=utf-8", crlf(m.Text)},
		{"text/html; charset=utf-8", crlf(m.HTML)},
	}
	if len(p.parts) != len(want) {
		t.Fatalf("%d parts, want text then html", len(p.parts))
	}
	for i := range want {
		if p.parts[i] != want[i] {
			t.Errorf("part %d = %+v, want %+v", i, p.parts[i], want[i])
		}
	}
}

func TestBuildMIMEEncodesNonASCIISubject(t *testing.T) {
	m := testMessage()
	m.Subject = "Grüße, Ada — 🎉 " + strings.Repeat("ünïcödé ", 20)
	raw, err := smtp.BuildMIME(m)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	if bytes.ContainsFunc(head, func(r rune) bool { return r >= 0x80 }) {
		t.Error("header holds raw non-ASCII bytes")
	}
	for _, line := range strings.Split(string(head), "\r\n") {
		if strings.HasPrefix(line, "Subject:") || strings.HasPrefix(line, " =?") {
			if len(line) > 78+len("Subject: ") {
				t.Errorf("Subject line of %d bytes", len(line))
			}
		}
	}
	p := mustParse(t, raw)
	got, err := new(mime.WordDecoder).DecodeHeader(p.header.Get("Subject"))
	if err != nil || got != m.Subject {
		t.Errorf("Subject decodes to %q (%v), want %q", got, err, m.Subject)
	}
}

func TestBuildMIMEFoldsLongHeaders(t *testing.T) {
	m := testMessage()
	m.Subject = strings.TrimSpace(strings.Repeat("a long subject line ", 30))
	raw, err := smtp.BuildMIME(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("\r\n a long")) {
		t.Error("long Subject not folded")
	}
	if got := mustParse(t, raw).header.Get("Subject"); got != m.Subject {
		t.Errorf("unfolded Subject = %q, want %q", got, m.Subject)
	}
}

func TestBuildMIMEUsesRandomBoundary(t *testing.T) {
	boundary := func() string {
		raw, err := smtp.BuildMIME(testMessage())
		if err != nil {
			t.Fatal(err)
		}
		m, _ := mail.ReadMessage(bytes.NewReader(raw))
		_, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
		return params["boundary"]
	}
	if a, b := boundary(), boundary(); a == "" || a == b {
		t.Errorf("boundaries %q and %q", a, b)
	}
}

func TestBuildMIMEWithOnlyOneBody(t *testing.T) {
	m := testMessage()
	m.HTML = ""
	raw, err := smtp.BuildMIME(m)
	if err != nil {
		t.Fatal(err)
	}
	if p := mustParse(t, raw); len(p.parts) != 1 || p.parts[0].contentType != "text/plain; charset=utf-8" {
		t.Errorf("parts = %+v, want the text part only", p.parts)
	}
}

// TestBuildMIMERejectsHeaderInjection proves DESIGN §9.5: CR, LF or any
// control character in any header field is refused, and the error does not
// repeat the value.
func TestBuildMIMERejectsHeaderInjection(t *testing.T) {
	const canary = "canary@example.com"
	for _, tc := range []struct {
		name string
		edit func(*smtp.Message)
	}{
		{"CRLF in Subject", func(m *smtp.Message) { m.Subject = "Hi\r\nBcc: " + canary }},
		{"LF in Subject", func(m *smtp.Message) { m.Subject = "Hi\nBcc: " + canary }},
		{"CR in Subject", func(m *smtp.Message) { m.Subject = "Hi\rBcc: " + canary }},
		{"NUL in Subject", func(m *smtp.Message) { m.Subject = "Hi\x00" + canary }},
		{"tab in Subject", func(m *smtp.Message) { m.Subject = "Hi\t" + canary }},
		{"DEL in Subject", func(m *smtp.Message) { m.Subject = "Hi\x7f" + canary }},
		{"C1 NEL in Subject", func(m *smtp.Message) { m.Subject = "Hi\u0085" + canary }},
		{"line separator in Subject", func(m *smtp.Message) { m.Subject = "Hi\u2028" + canary }},
		{"encoded CRLF in Subject", func(m *smtp.Message) { m.Subject = "=?utf-8?q?Hi=0D=0ABcc:_canary@example.com?=" }},
		{"CRLF in From", func(m *smtp.Message) { m.From = "news@brand.example\r\nBcc: " + canary }},
		{"encoded CRLF in From name", func(m *smtp.Message) { m.From = "=?utf-8?q?Brand=0D=0ABcc_x?= <news@brand.example>" }},
		{"CRLF in To", func(m *smtp.Message) { m.To = canary + "\r\nBcc: x@example.com" }},
		{"CRLF in Reply-To", func(m *smtp.Message) { m.ReplyTo = "a@example.com\r\nBcc: " + canary }},
		{"CRLF in Message-ID", func(m *smtp.Message) { m.MessageID = "<a@b>\r\nBcc: " + canary }},
		{"CRLF in extra header value", func(m *smtp.Message) { m.Headers = [][2]string{{"X-Campaign", "a\r\nBcc: " + canary}} }},
		{"CRLF in extra header name", func(m *smtp.Message) { m.Headers = [][2]string{{"X-A\r\nBcc", canary}} }},
		{"colon in extra header name", func(m *smtp.Message) { m.Headers = [][2]string{{"Bcc: " + canary + "\r\nX", "1"}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMessage()
			tc.edit(&m)
			_, err := smtp.BuildMIME(m)
			if !errors.Is(err, smtp.ErrHeaderInjection) {
				t.Fatalf("err = %v, want ErrHeaderInjection", err)
			}
			if strings.Contains(err.Error(), "canary") {
				t.Errorf("error repeats the value: %v", err)
			}
		})
	}
}

func TestBuildMIMERejectsInvalidMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*smtp.Message)
	}{
		{"two addresses in To", func(m *smtp.Message) { m.To = "ada@example.com, eve@example.com" }},
		{"group in To", func(m *smtp.Message) { m.To = "team: ada@example.com, eve@example.com;" }},
		{"address in display name", func(m *smtp.Message) { m.From = `"ceo@brand.example" <eve@example.com>` }},
		{"list in display name", func(m *smtp.Message) { m.From = `"a@example.com, b@example.com" <eve@example.com>` }},
		{"encoded address in display name", func(m *smtp.Message) { m.From = "=?utf-8?q?ceo=40brand.example?= <eve@example.com>" }},
		{"quoted local part", func(m *smtp.Message) { m.To = `"ada lovelace"@example.com` }},
		{"non-ASCII address", func(m *smtp.Message) { m.To = "ada@exämple.com" }},
		{"address literal", func(m *smtp.Message) { m.To = "ada@[127.0.0.1]" }},
		{"missing To", func(m *smtp.Message) { m.To = "" }},
		{"missing From", func(m *smtp.Message) { m.From = "" }},
		{"Message-ID without brackets", func(m *smtp.Message) { m.MessageID = "abc@brand.example" }},
		{"Message-ID without @", func(m *smtp.Message) { m.MessageID = "<abc>" }},
		{"Message-ID with space", func(m *smtp.Message) { m.MessageID = "<a b@brand.example>" }},
		{"Message-ID with two ids", func(m *smtp.Message) { m.MessageID = "<a@b> <c@d>" }},
		{"missing Date", func(m *smtp.Message) { m.Date = time.Time{} }},
		{"no body", func(m *smtp.Message) { m.HTML, m.Text = "", "" }},
		{"extra Bcc header", func(m *smtp.Message) { m.Headers = [][2]string{{"Bcc", "eve@example.com"}} }},
		{"extra To header", func(m *smtp.Message) { m.Headers = [][2]string{{"to", "eve@example.com"}} }},
		{"extra Content-Type header", func(m *smtp.Message) { m.Headers = [][2]string{{"Content-Type", "text/plain"}} }},
		{"non-ASCII extra header", func(m *smtp.Message) { m.Headers = [][2]string{{"X-Name", "Ünïcode"}} }},
		{"invalid UTF-8 Subject", func(m *smtp.Message) { m.Subject = "Hi \xff" }},
		{"unfoldable Subject", func(m *smtp.Message) { m.Subject = strings.Repeat("x", 1000) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMessage()
			tc.edit(&m)
			_, err := smtp.BuildMIME(m)
			if !errors.Is(err, smtp.ErrInvalidMessage) {
				t.Fatalf("err = %v, want ErrInvalidMessage", err)
			}
			for _, v := range []string{"eve@example.com", "ada@ex", "lovelace"} {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error repeats a value: %v", err)
				}
			}
		})
	}
}

func TestListUnsubscribeHeaders(t *testing.T) {
	const url = "https://brand.example/u/abc?t=1&sig=Zm9v%2Bbar"
	for _, tc := range []struct {
		name           string
		https, mailt   string
		post           bool
		want, wantPost string
	}{
		{"none", "", "", false, "", ""},
		{"https", url, "", false, "<" + url + ">", ""},
		{"https one-click", url, "", true, "<" + url + ">", "List-Unsubscribe=One-Click"},
		{"https and mailto", url, "mailto:unsub@brand.example?subject=unsubscribe", true,
			"<" + url + ">, <mailto:unsub@brand.example?subject=unsubscribe>", "List-Unsubscribe=One-Click"},
		{"mailto only", "", "mailto:unsub@brand.example", false, "<mailto:unsub@brand.example>", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMessage()
			m.ListUnsubscribe, m.ListUnsubscribeMailto, m.ListUnsubscribePost = tc.https, tc.mailt, tc.post
			p := mustParse(t, mustBuild(t, m))
			if got := p.header.Get("List-Unsubscribe"); got != tc.want {
				t.Errorf("List-Unsubscribe = %q, want %q", got, tc.want)
			}
			if got := p.header.Get("List-Unsubscribe-Post"); got != tc.wantPost {
				t.Errorf("List-Unsubscribe-Post = %q, want %q", got, tc.wantPost)
			}
			if n := len(p.header["List-Unsubscribe"]); tc.want != "" && n != 1 {
				t.Errorf("%d List-Unsubscribe fields", n)
			}
		})
	}
}

// TestListUnsubscribeLongURLFits: a URL of the 2048 bytes allowed still
// fits lines of at most 998 bytes, folded inside the angle brackets where
// RFC 2369 §2 has readers ignore white space.
func TestListUnsubscribeLongURLFits(t *testing.T) {
	url := "https://brand.example/u/" + strings.Repeat("a", 2048-len("https://brand.example/u/"))
	m := testMessage()
	m.ListUnsubscribe, m.ListUnsubscribePost = url, true
	raw := mustBuild(t, m)
	assertCRLF(t, raw)
	got := strings.Join(strings.Fields(unfolded(raw, "List-Unsubscribe")), "")
	if got != "<"+url+">" {
		t.Errorf("List-Unsubscribe reads back as %d bytes, want the URL in brackets", len(got))
	}
}

func TestListUnsubscribeRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*smtp.Message)
		kind error
	}{
		{"http", func(m *smtp.Message) { m.ListUnsubscribe = "http://brand.example/u/abc" }, smtp.ErrInvalidMessage},
		{"javascript", func(m *smtp.Message) { m.ListUnsubscribe = "javascript:alert(1)" }, smtp.ErrInvalidMessage},
		{"no host", func(m *smtp.Message) { m.ListUnsubscribe = "https:///u/abc" }, smtp.ErrInvalidMessage},
		{"relative", func(m *smtp.Message) { m.ListUnsubscribe = "/u/abc" }, smtp.ErrInvalidMessage},
		{"credentials", func(m *smtp.Message) { m.ListUnsubscribe = "https://user:pw@brand.example/u/abc" }, smtp.ErrInvalidMessage},
		{"CRLF", func(m *smtp.Message) { m.ListUnsubscribe = "https://brand.example/u\r\nBcc: eve@example.com" }, smtp.ErrHeaderInjection},
		{"NUL", func(m *smtp.Message) { m.ListUnsubscribe = "https://brand.example/u\x00" }, smtp.ErrHeaderInjection},
		{"encoded CRLF", func(m *smtp.Message) { m.ListUnsubscribe = "https://brand.example/u?=?utf-8?q?a=0D=0Ab?=" }, smtp.ErrHeaderInjection},
		{"space", func(m *smtp.Message) { m.ListUnsubscribe = "https://brand.example/u abc" }, smtp.ErrInvalidMessage},
		{"angle bracket", func(m *smtp.Message) { m.ListUnsubscribe = "https://brand.example/u>, <https://eve.example/" }, smtp.ErrInvalidMessage},
		{"comma", func(m *smtp.Message) { m.ListUnsubscribe = "https://brand.example/u,abc" }, smtp.ErrInvalidMessage},
		{"non-ASCII", func(m *smtp.Message) { m.ListUnsubscribe = "https://brand.example/ü" }, smtp.ErrInvalidMessage},
		{"too long", func(m *smtp.Message) {
			m.ListUnsubscribe = "https://brand.example/u/" + strings.Repeat("a", 2049-len("https://brand.example/u/"))
		}, smtp.ErrInvalidMessage},
		{"one-click without URL", func(m *smtp.Message) { m.ListUnsubscribe, m.ListUnsubscribePost = "", true }, smtp.ErrInvalidMessage},
		{"one-click with mailto only", func(m *smtp.Message) {
			m.ListUnsubscribe, m.ListUnsubscribeMailto, m.ListUnsubscribePost = "", "mailto:unsub@brand.example", true
		}, smtp.ErrInvalidMessage},
		{"mailto not mailto", func(m *smtp.Message) { m.ListUnsubscribeMailto = "https://brand.example/u" }, smtp.ErrInvalidMessage},
		{"mailto without address", func(m *smtp.Message) { m.ListUnsubscribeMailto = "mailto:unsubscribe" }, smtp.ErrInvalidMessage},
		{"List-Unsubscribe as extra header", func(m *smtp.Message) { m.Headers = [][2]string{{"List-Unsubscribe", "<https://eve.example/>"}} }, smtp.ErrInvalidMessage},
		{"List-Unsubscribe-Post as extra header", func(m *smtp.Message) {
			m.Headers = [][2]string{{"list-unsubscribe-post", "List-Unsubscribe=One-Click"}}
		}, smtp.ErrInvalidMessage},
		{"DKIM-Signature as extra header", func(m *smtp.Message) { m.Headers = [][2]string{{"DKIM-Signature", "v=1; d=example.com"}} }, smtp.ErrInvalidMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMessage()
			tc.edit(&m)
			_, err := smtp.BuildMIME(m)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
			for _, v := range []string{"brand.example/u", "eve", "alert"} {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error repeats the value: %v", err)
				}
			}
		})
	}
}
