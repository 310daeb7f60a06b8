package smtp

import (
	"bytes"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is one rendered email to one recipient.
type Message struct {
	From    string // "Brand <news@brand.example>" or "news@brand.example"
	To      string // one address, with or without a display name
	ReplyTo string // optional
	Subject string
	HTML    string
	Text    string
	// MessageID is "<id@domain>", chosen by the caller and kept across
	// retries, so a duplicate delivery can be recognised downstream.
	MessageID string
	Date      time.Time
	// Headers are extra header fields, e.g. X-Campaign. They may not
	// replace a field BuildMIME writes itself, nor add recipients.
	Headers [][2]string

	// ListUnsubscribe is an https URL that unsubscribes the recipient
	// (RFC 2369 List-Unsubscribe), usually signed and per message; at most
	// 2048 bytes, ASCII, with commas percent-encoded.
	ListUnsubscribe string
	// ListUnsubscribeMailto is an optional "mailto:" URI offered next to
	// the URL, for clients that unsubscribe by mail.
	ListUnsubscribeMailto string
	// ListUnsubscribePost adds "List-Unsubscribe-Post:
	// List-Unsubscribe=One-Click" (RFC 8058): mailbox providers then POST
	// to ListUnsubscribe from their own unsubscribe button, so the URL
	// must unsubscribe on POST without further interaction. It needs
	// ListUnsubscribe, and a DKIM signature covering both fields, which
	// DKIM below always gives.
	ListUnsubscribePost bool

	// DKIM, if set, signs the message with the brand's key.
	DKIM *DKIM
}

// envelope is the SMTP envelope of a built message.
type envelope struct{ from, to string }

// maxLine is the longest header line BuildMIME writes (RFC 5322 §2.1.1 allows
// 998); foldAt is where it prefers to fold (78).
const (
	maxLine = 998
	foldAt  = 78
)

// BuildMIME returns m as an RFC 5322 message with CRLF line endings: a
// multipart/alternative body with the text part first and the HTML part
// second (readers prefer the last part they can show), each quoted-printable
// in UTF-8, under a random boundary; with a DKIM-Signature first if m.DKIM is
// set. Errors wrap ErrHeaderInjection or ErrInvalidMessage (ErrDKIMAlignment
// among them) and name the field, never its value; invalid DKIM settings
// wrap ErrConfig, and a failing signer ErrTemporary.
func BuildMIME(m Message) ([]byte, error) {
	b, _, err := build(m)
	return b, err
}

func build(m Message) ([]byte, envelope, error) {
	from, err := parseAddress("From", m.From)
	if err != nil {
		return nil, envelope{}, err
	}
	to, err := parseAddress("To", m.To)
	if err != nil {
		return nil, envelope{}, err
	}
	var replyTo *mail.Address
	if m.ReplyTo != "" {
		if replyTo, err = parseAddress("Reply-To", m.ReplyTo); err != nil {
			return nil, envelope{}, err
		}
	}
	subject, err := encodeSubject(m.Subject)
	if err != nil {
		return nil, envelope{}, err
	}
	if err := checkMessageID(m.MessageID); err != nil {
		return nil, envelope{}, err
	}
	if m.Date.IsZero() {
		return nil, envelope{}, fmt.Errorf("smtp: Date is required: %w", ErrInvalidMessage)
	}
	for _, h := range m.Headers {
		if err := checkExtraHeader(h[0], h[1]); err != nil {
			return nil, envelope{}, err
		}
	}
	unsubscribe, err := listUnsubscribe(m)
	if err != nil {
		return nil, envelope{}, err
	}
	if m.HTML == "" && m.Text == "" {
		return nil, envelope{}, fmt.Errorf("smtp: message has no body: %w", ErrInvalidMessage)
	}
	if m.DKIM != nil {
		if err := m.DKIM.Validate(); err != nil {
			return nil, envelope{}, err
		}
		_, fromDomain, _ := strings.Cut(from.Address, "@")
		if !aligned(fromDomain, m.DKIM.Domain) {
			return nil, envelope{}, fmt.Errorf("smtp: From: %w", ErrDKIMAlignment)
		}
	}

	var b bytes.Buffer
	b.Grow(len(m.HTML) + len(m.Text) + len(m.HTML)/8 + 1024)
	mw := multipart.NewWriter(&b)
	boundary := mw.Boundary()
	fields := [][2]string{
		{"Date", m.Date.Format(time.RFC1123Z)},
		{"From", from.String()},
		{"To", to.String()},
	}
	if replyTo != nil {
		fields = append(fields, [2]string{"Reply-To", replyTo.String()})
	}
	fields = append(fields,
		[2]string{"Message-ID", m.MessageID},
		[2]string{"Subject", subject},
		[2]string{"MIME-Version", "1.0"},
	)
	if unsubscribe != "" {
		fields = append(fields, [2]string{"List-Unsubscribe", unsubscribe})
		if m.ListUnsubscribePost {
			fields = append(fields, [2]string{"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"})
		}
	}
	fields = append(fields, m.Headers...)
	fields = append(fields, [2]string{"Content-Type", `multipart/alternative; boundary="` + boundary + `"`})
	for _, f := range fields {
		if err := writeField(&b, f[0], f[1]); err != nil {
			return nil, envelope{}, err
		}
	}
	b.WriteString("\r\n")

	for _, p := range []struct{ ctype, body string }{
		{"text/plain; charset=utf-8", m.Text},
		{"text/html; charset=utf-8", m.HTML},
	} {
		if p.body == "" {
			continue
		}
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {p.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, envelope{}, err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(p.body)); err != nil {
			return nil, envelope{}, err
		}
		if err := qp.Close(); err != nil {
			return nil, envelope{}, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, envelope{}, err
	}
	msg := b.Bytes()
	if m.DKIM != nil {
		if msg, err = m.DKIM.sign(msg, fields); err != nil {
			return nil, envelope{}, err
		}
	}
	return msg, envelope{from: from.Address, to: to.Address}, nil
}

// maxUnsubscribeURI bounds each List-Unsubscribe URI.
const maxUnsubscribeURI = 2048

// uriChunk is the longest run of a URI written without white space, so
// that a 2048-byte URI still fits lines of at most 998 bytes. RFC 2369 §2
// has readers ignore white space inside the angle brackets; DKIM's relaxed
// canonicalisation and unfolding keep it as one space either way.
const uriChunk = 900

// listUnsubscribe validates m's unsubscribe URIs and returns the
// List-Unsubscribe value, or "" if there is none.
func listUnsubscribe(m Message) (string, error) {
	if m.ListUnsubscribe == "" && m.ListUnsubscribeMailto == "" {
		if m.ListUnsubscribePost {
			return "", fmt.Errorf("smtp: List-Unsubscribe-Post needs an https List-Unsubscribe: %w", ErrInvalidMessage)
		}
		return "", nil
	}
	var uris []string
	if m.ListUnsubscribe != "" {
		if err := checkUnsubscribeURI("List-Unsubscribe", m.ListUnsubscribe); err != nil {
			return "", err
		}
		u, err := url.Parse(m.ListUnsubscribe)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Opaque != "" || u.User != nil {
			return "", fmt.Errorf("smtp: List-Unsubscribe must be an https URL without credentials: %w", ErrInvalidMessage)
		}
		uris = append(uris, m.ListUnsubscribe)
	} else if m.ListUnsubscribePost {
		return "", fmt.Errorf("smtp: List-Unsubscribe-Post needs an https List-Unsubscribe: %w", ErrInvalidMessage)
	}
	if m.ListUnsubscribeMailto != "" {
		if err := checkUnsubscribeURI("List-Unsubscribe mailto", m.ListUnsubscribeMailto); err != nil {
			return "", err
		}
		scheme, rest, _ := strings.Cut(m.ListUnsubscribeMailto, ":")
		addr, _, _ := strings.Cut(rest, "?")
		if !strings.EqualFold(scheme, "mailto") || !isMailbox(addr) {
			return "", fmt.Errorf("smtp: List-Unsubscribe mailto must be mailto:address: %w", ErrInvalidMessage)
		}
		uris = append(uris, m.ListUnsubscribeMailto)
	}
	var b strings.Builder
	for i, u := range uris {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('<')
		for len(u) > uriChunk {
			b.WriteString(u[:uriChunk])
			b.WriteByte(' ')
			u = u[uriChunk:]
		}
		b.WriteString(u)
		b.WriteByte('>')
	}
	return b.String(), nil
}

// checkUnsubscribeURI refuses a URI that is too long or holds a byte
// outside RFC 3986's character set; a comma too, which RFC 2369 §2 requires
// escaped as it separates the list.
func checkUnsubscribeURI(field, u string) error {
	if err := checkValue(field, u); err != nil {
		return err
	}
	if len(u) > maxUnsubscribeURI {
		return fmt.Errorf("smtp: %s is longer than %d bytes: %w", field, maxUnsubscribeURI, ErrInvalidMessage)
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && strings.IndexByte("-._~:/?#[]@!$&'()*+;=%", c) < 0 {
			return fmt.Errorf("smtp: %s holds a character a URI may not: %w", field, ErrInvalidMessage)
		}
	}
	return nil
}

// parseAddress parses a header holding exactly one address. It refuses
// display names that could make a reader see another address or several
// (a name holding '@', '<', ',', quotes …), and addresses that would need
// quoting or SMTPUTF8 in the envelope.
func parseAddress(field, s string) (*mail.Address, error) {
	if s == "" {
		return nil, fmt.Errorf("smtp: %s is required: %w", field, ErrInvalidMessage)
	}
	if hasControl(s) {
		return nil, fmt.Errorf("smtp: %s: %w", field, ErrHeaderInjection)
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		// net/mail errors may quote the input: keep only our words.
		return nil, fmt.Errorf("smtp: %s is not a single address: %w", field, ErrInvalidMessage)
	}
	// ParseAddress decodes RFC 2047 words: check what a reader would see.
	if hasControl(a.Name) {
		return nil, fmt.Errorf("smtp: %s display name: %w", field, ErrHeaderInjection)
	}
	if strings.ContainsAny(a.Name, `@<>,;"\`) {
		return nil, fmt.Errorf("smtp: %s display name holds address punctuation: %w", field, ErrInvalidMessage)
	}
	if !isMailbox(a.Address) {
		return nil, fmt.Errorf("smtp: %s address is not a plain ASCII mailbox: %w", field, ErrInvalidMessage)
	}
	return a, nil
}

// isMailbox reports whether s is local@domain with a dot-atom local part and
// a host name domain: the form that goes into MAIL FROM and RCPT TO as is.
func isMailbox(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && len(s) <= 254 && isDotAtom(local) && len(local) <= 64 && isHostname(domain)
}

// isDotAtom reports whether s is an RFC 5322 dot-atom-text.
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && !isAtext(s[i]) {
			return false
		}
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// checkMessageID accepts "<left@right>" with dot-atom sides.
func checkMessageID(id string) error {
	if hasControl(id) {
		return fmt.Errorf("smtp: Message-ID: %w", ErrHeaderInjection)
	}
	inner, ok := strings.CutPrefix(id, "<")
	if ok {
		inner, ok = strings.CutSuffix(inner, ">")
	}
	left, right, found := strings.Cut(inner, "@")
	if !ok || !found || len(id) > 250 || !isDotAtom(left) || !isDotAtom(right) {
		return fmt.Errorf("smtp: Message-ID must look like <id@domain>: %w", ErrInvalidMessage)
	}
	return nil
}

// encodeSubject checks the Subject and encodes it as RFC 2047 Q-encoded
// words when it is not plain ASCII.
func encodeSubject(s string) (string, error) {
	if err := checkValue("Subject", s); err != nil {
		return "", err
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("smtp: Subject is not UTF-8: %w", ErrInvalidMessage)
	}
	return mime.QEncoding.Encode("utf-8", s), nil
}

// checkValue refuses a header value with a control character, including one
// that appears only once a reader decodes RFC 2047 words in it
// ("=?utf-8?q?a=0D=0Ab?="): what the reader sees is checked, not only the
// bytes on the wire.
func checkValue(field, v string) error {
	if hasControl(v) {
		return fmt.Errorf("smtp: %s: %w", field, ErrHeaderInjection)
	}
	if !strings.Contains(v, "=?") {
		return nil
	}
	decoded, err := new(mime.WordDecoder).DecodeHeader(v)
	if err != nil {
		return fmt.Errorf("smtp: %s holds an undecodable encoded word: %w", field, ErrInvalidMessage)
	}
	if hasControl(decoded) {
		return fmt.Errorf("smtp: %s: %w", field, ErrHeaderInjection)
	}
	return nil
}

// reserved holds the fields BuildMIME writes itself or that name recipients
// or trace a message; Content-* and Resent-* are reserved as prefixes.
var reserved = map[string]bool{
	"from": true, "to": true, "cc": true, "bcc": true, "reply-to": true,
	"sender": true, "subject": true, "date": true, "message-id": true,
	"mime-version": true, "return-path": true, "received": true,
	// Set through Message's fields, which validate them, and signed.
	"list-unsubscribe": true, "list-unsubscribe-post": true,
	// A caller's forged signature or verdict must not ride along.
	"dkim-signature": true, "authentication-results": true,
}

func checkExtraHeader(name, value string) error {
	if name == "" || len(name) > 76 {
		return fmt.Errorf("smtp: extra header name length: %w", ErrInvalidMessage)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			// Not the name itself: it may be the very injection attempt.
			return fmt.Errorf("smtp: extra header name holds a forbidden character: %w", ErrHeaderInjection)
		}
	}
	lower := strings.ToLower(name)
	if reserved[lower] || strings.HasPrefix(lower, "content-") || strings.HasPrefix(lower, "resent-") {
		return fmt.Errorf("smtp: extra header %s is reserved: %w", name, ErrInvalidMessage)
	}
	if err := checkValue(name, value); err != nil {
		return err
	}
	for i := 0; i < len(value); i++ {
		if value[i] >= 0x80 {
			return fmt.Errorf("smtp: extra header %s must be ASCII: %w", name, ErrInvalidMessage)
		}
	}
	return nil
}

// writeField writes "name: value" CRLF, folding at spaces to keep lines near
// 78 bytes. Folding inserts CRLF before a space, so unfolding restores the
// value exactly.
func writeField(b *bytes.Buffer, name, value string) error {
	b.WriteString(name)
	b.WriteString(":")
	line := len(name) + 1
	hasText := true // the name counts: never fold right after it
	for i, word := range strings.Split(value, " ") {
		if i == 0 {
			b.WriteByte(' ')
			line++
		} else {
			if word != "" && hasText && line+1+len(word) > foldAt {
				b.WriteString("\r\n")
				line, hasText = 0, false
			}
			b.WriteByte(' ')
			line++
		}
		b.WriteString(word)
		line += len(word)
		hasText = hasText || word != ""
		if line > maxLine {
			return fmt.Errorf("smtp: %s has a word too long for a header line: %w", name, ErrInvalidMessage)
		}
	}
	b.WriteString("\r\n")
	return nil
}

// hasControl reports whether s holds a C0 or C1 control character (tab
// included), DEL, or a Unicode line or paragraph separator.
func hasControl(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == '\u2028' || c == '\u2029' {
			return true
		}
	}
	return false
}
