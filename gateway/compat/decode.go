package compat

import (
	"bytes"
	"encoding/json"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// emailSlot maps an email request's JSON field to its Request field and a
// bit for duplicate detection; nil for a field the API does not define.
func emailSlot(r *Request, k string) (*string, uint) {
	switch k {
	case "ext_user_id":
		return &r.ExtUserID, 0
	case "from_email_address":
		return &r.From, 1
	case "reply_to_email_address":
		return &r.ReplyTo, 2
	case "subject":
		return &r.Subject, 3
	case "body":
		return &r.HTML, 4
	case "text_body":
		return &r.Text, 5
	case "email_uid":
		return &r.UID, 6
	case "callback_url":
		return &r.CallbackURL, 7
	case "activity_type":
		return &r.ActivityType, 8
	case "to_email_address":
		return &r.ToEmailAddress, 9
	}
	return nil, 0
}

// smsSlot is emailSlot for SMS/IM requests.
func smsSlot(r *Request, k string) (*string, uint) {
	switch k {
	case "ext_user_id":
		return &r.ExtUserID, 0
	case "from_number":
		return &r.From, 1
	case "body":
		return &r.Text, 2
	case "im_uid":
		return &r.UID, 3
	case "callback_url":
		return &r.CallbackURL, 4
	}
	return nil, 0
}

// reqError is an answer the handler decides itself. Its message is built
// from field names and limits only.
type reqError struct {
	code int
	msg  string
}

func (e *reqError) Error() string { return e.msg }

func invalid(msg string) *reqError { return &reqError{CodeInvalid, msg} }

func fieldErr(field, problem string) *reqError { return invalid(field + " " + problem) }

func tooLong(field string, max int) *reqError {
	return invalid(field + " " + ProblemTooLong + " (max " + strconv.Itoa(max) + " bytes)")
}

func malformed() *reqError { return invalid("body is not a valid JSON object") }

// decode parses a request body: one JSON object of the channel's fields.
// Field names are matched exactly (case-sensitive); unknown fields are
// ignored whatever their value; a repeated key, a known field that is not a
// string or null, and anything after the object are refused. null stands
// for an absent field. Errors never quote the input.
//
// The body is first checked whole by json.Valid, so the walk below only
// ever sees well-formed JSON; it is a hand-written walk because
// json.Decoder's Token, the standard way to see repeated keys, is several
// times slower.
func decode(channel string, body []byte) (Request, *reqError) {
	r := Request{Channel: channel}
	if !utf8.Valid(body) {
		return r, invalid("body is not valid UTF-8")
	}
	if !json.Valid(body) {
		return r, malformed()
	}
	slot := emailSlot
	if channel == ChannelSMS {
		slot = smsSlot
	}
	w := walker{b: body}
	if w.next() != '{' {
		return r, malformed()
	}
	w.i++
	var seen uint
	var other map[string]struct{} // unknown keys, for duplicates among them
	for w.next() != '}' {
		k := w.str()
		w.next() // ':'
		w.i++
		w.next()
		dst, bit := slot(&r, k)
		switch {
		case dst == nil:
			if other == nil {
				other = make(map[string]struct{})
			}
			if _, dup := other[k]; dup {
				return r, invalid("a field is repeated")
			}
			other[k] = struct{}{}
			w.skip()
		case seen&(1<<bit) != 0:
			return r, fieldErr(k, ProblemRepeated)
		case w.b[w.i] == '"':
			seen |= 1 << bit
			*dst = w.str()
		case w.b[w.i] == 'n':
			seen |= 1 << bit
			w.i += len("null")
		default:
			return r, fieldErr(k, ProblemNotString)
		}
		if w.next() == ',' {
			w.i++
		}
	}
	return r, nil
}

// walker steps through a document that json.Valid accepted.
type walker struct {
	b []byte
	i int
}

// next skips white space and returns the byte there.
func (w *walker) next() byte {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\r', '\n':
			w.i++
		default:
			return w.b[w.i]
		}
	}
	return 0
}

// strEnd returns the index just past the string starting at w.i, and
// whether it has escapes.
func (w *walker) strEnd() (int, bool) {
	esc := false
	for j := w.i + 1; ; j++ {
		switch w.b[j] {
		case '\\':
			esc = true
			j++
		case '"':
			return j + 1, esc
		}
	}
}

// str reads the string at w.i.
func (w *walker) str() string {
	end, esc := w.strEnd()
	raw := w.b[w.i:end]
	w.i = end
	if !esc {
		return string(raw[1 : len(raw)-1])
	}
	return unescape(raw[1 : len(raw)-1])
}

// unescape decodes the inside of a valid JSON string as encoding/json
// does, including its choice of U+FFFD for a lone surrogate.
func unescape(raw []byte) string {
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); {
		j := bytes.IndexByte(raw[i:], '\\')
		if j < 0 {
			b.Write(raw[i:])
			break
		}
		b.Write(raw[i : i+j])
		i += j
		switch c := raw[i+1]; c {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r := hex4(raw[i+2:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := unicode.ReplacementChar
				if i+8 <= len(raw) && raw[i+2] == '\\' && raw[i+3] == 'u' {
					r2 = utf16.DecodeRune(r, hex4(raw[i+4:]))
				}
				if r2 != unicode.ReplacementChar {
					i += 6
				}
				r = r2
			}
			b.WriteRune(r)
		default: // '"', '\\', '/'
			b.WriteByte(c)
		}
		i += 2
	}
	return b.String()
}

// hex4 reads the four hex digits json.Valid has already checked.
func hex4(h []byte) rune {
	var r rune
	for _, c := range h[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c <= 'F':
			c -= 'A' - 10
		default:
			c -= 'a' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// skip steps over the value at w.i.
func (w *walker) skip() {
	depth := 0
	for {
		switch w.b[w.i] {
		case '"':
			w.i, _ = w.strEnd()
		case '{', '[':
			depth++
			w.i++
		case '}', ']':
			depth--
			w.i++
		default:
			for w.i < len(w.b) && !delim(w.b[w.i]) {
				w.i++
			}
		}
		if depth == 0 {
			return
		}
		for w.next() == ',' || w.b[w.i] == ':' {
			w.i++
		}
	}
}

// delim reports a byte that ends a number or literal.
func delim(c byte) bool {
	switch c {
	case ',', '}', ']', ':', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// validate applies the field rules of docs/compat.md. The callback_url's
// allow-list is checked by the caller, after every other rule.
func validate(r *Request) *reqError {
	uidField := "email_uid"
	if r.Channel == ChannelSMS {
		uidField = "im_uid"
	}
	if e := token("ext_user_id", r.ExtUserID, MaxExtUserIDBytes); e != nil {
		return e
	}
	if e := token(uidField, r.UID, MaxUIDBytes); e != nil {
		return e
	}
	if r.CallbackURL == "" {
		return fieldErr("callback_url", ProblemRequired)
	}
	if len(r.CallbackURL) > MaxCallbackURLBytes {
		return tooLong("callback_url", MaxCallbackURLBytes)
	}
	if hasControl(r.CallbackURL) {
		return fieldErr("callback_url", ProblemControlChars)
	}
	if r.Channel == ChannelSMS {
		return validateSMS(r)
	}
	return validateEmail(r)
}

func validateEmail(r *Request) *reqError {
	if r.From == "" {
		return fieldErr("from_email_address", ProblemRequired)
	}
	if e := address("from_email_address", r.From); e != nil {
		return e
	}
	if r.ReplyTo != "" {
		if e := address("reply_to_email_address", r.ReplyTo); e != nil {
			return e
		}
	}
	switch {
	case r.Subject == "":
		return fieldErr("subject", ProblemRequired)
	case len(r.Subject) > MaxSubjectBytes:
		return tooLong("subject", MaxSubjectBytes)
	case hasControl(r.Subject):
		return fieldErr("subject", ProblemControlChars)
	}
	if r.HTML == "" && r.Text == "" {
		return invalid("body or text_body is required")
	}
	if e := bodyField("body", r.HTML); e != nil {
		return e
	}
	if e := bodyField("text_body", r.Text); e != nil {
		return e
	}
	if r.ActivityType != "" {
		if len(r.ActivityType) > MaxActivityBytes {
			return tooLong("activity_type", MaxActivityBytes)
		}
		if hasControl(r.ActivityType) {
			return fieldErr("activity_type", ProblemControlChars)
		}
	}
	redirect := r.ActivityType == ActivityPreview || r.ActivityType == ActivityEmailCustomerSupport
	switch {
	case r.ToEmailAddress == "" && redirect:
		return invalid("to_email_address is required with activity_type " + r.ActivityType)
	case r.ToEmailAddress != "" && !redirect:
		return invalid("to_email_address is allowed only with activity_type preview or EmailCustomerSupport")
	case r.ToEmailAddress != "":
		return address("to_email_address", r.ToEmailAddress)
	}
	return nil
}

func validateSMS(r *Request) *reqError {
	if r.From != "" {
		if len(r.From) > MaxFromNumberBytes {
			return tooLong("from_number", MaxFromNumberBytes)
		}
		if hasControl(r.From) {
			return fieldErr("from_number", ProblemControlChars)
		}
		for i := 0; i < len(r.From); i++ {
			if r.From[i] < 0x20 || r.From[i] > 0x7e {
				return invalid("from_number must be printable ASCII")
			}
		}
	}
	if r.Text == "" {
		return fieldErr("body", ProblemRequired)
	}
	return bodyField("body", r.Text)
}

// token checks a required identifier: printable ASCII without spaces.
func token(field, v string, max int) *reqError {
	if v == "" {
		return fieldErr(field, ProblemRequired)
	}
	if len(v) > max {
		return tooLong(field, max)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return fieldErr(field, ProblemNotPrintable)
		}
	}
	return nil
}

// address checks a header-bound address field. Display names are allowed
// ("Brand <noreply@example.com>"); the value is passed on as sent.
func address(field, v string) *reqError {
	if len(v) > MaxAddressBytes {
		return tooLong(field, MaxAddressBytes)
	}
	if hasControl(v) {
		return fieldErr(field, ProblemControlChars)
	}
	if _, err := mail.ParseAddress(v); err != nil {
		return fieldErr(field, ProblemNotAddress)
	}
	return nil
}

// bodyField checks an HTML or text body: any text but NUL.
func bodyField(field, v string) *reqError {
	if len(v) > MaxBodyFieldBytes {
		return tooLong(field, MaxBodyFieldBytes)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return fieldErr(field, ProblemControlChars)
	}
	return nil
}

// hasControl reports a control character (C0, DEL, C1) or a Unicode line
// or paragraph separator: anything that could end or fold a header line.
func hasControl(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f || unicode.IsControl(c) || c == '\u2028' || c == '\u2029' {
			return true
		}
	}
	return false
}
