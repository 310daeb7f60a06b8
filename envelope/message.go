package envelope

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Message is one message request of a batch (DESIGN §4). The core has
// already rendered its content; Subject, HTML and Text may still hold
// {{pii.<field>}} placeholders, which only the gateway fills in. It
// addresses its recipient by pseudonymous subject id or by token, never by
// address.
type Message struct {
	ID        string     `json:"id"` // idempotency key, unique per tenant
	Tenant    string     `json:"tenant"`
	Brand     string     `json:"brand"`
	Channel   string     `json:"channel"`  // email, sms, im or push
	Category  string     `json:"category"` // transactional or marketing
	Purpose   string     `json:"purpose"`  // e.g. password_reset, payment_receipt, promotion
	To        Recipient  `json:"to"`
	From      string     `json:"from,omitempty"`
	ReplyTo   string     `json:"reply_to,omitempty"`
	Subject   string     `json:"subject,omitempty"`
	HTML      string     `json:"html,omitempty"`
	Text      string     `json:"text,omitempty"`
	Campaign  string     `json:"campaign,omitempty"`
	NotBefore *time.Time `json:"not_before,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Recipient names whom a message is for: exactly one of the PAM's user id
// (Subject, its user_ext_id) or a vault token.
type Recipient struct {
	Subject string `json:"subject,omitempty"`
	Token   string `json:"token,omitempty"`
}

// Channels and categories.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
	ChannelIM    = "im"
	ChannelPush  = "push"

	CategoryTransactional = "transactional"
	CategoryMarketing     = "marketing"
)

// Limits on the fields of a message, in bytes.
const (
	MaxIDLen      = 128 // id, tenant, brand, to.subject, to.token, campaign
	MaxPurposeLen = 64
	MaxFromLen    = 512 // from, reply_to
	MaxSubjectLen = 998 // the longest line RFC 5322 allows
	MaxBodyLen    = 256 << 10
)

// FieldError reports an invalid message field. Field is its JSON name
// (dotted for nested fields); Reason never contains the field's value.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return ErrInvalidMessage.Error() + ": " + e.Reason
	}
	return ErrInvalidMessage.Error() + ": " + e.Field + ": " + e.Reason
}

// Unwrap makes every FieldError match ErrInvalidMessage.
func (e *FieldError) Unwrap() error { return ErrInvalidMessage }

// ParseMessage decodes one message strictly (unknown, duplicate or
// differently-cased field names are errors) and validates it. Every error
// wraps ErrInvalidMessage.
func ParseMessage(raw json.RawMessage) (*Message, error) {
	if len(raw) > DefaultMaxMessageBytes {
		return nil, &FieldError{Reason: "message larger than " + strconv.Itoa(DefaultMaxMessageBytes) + " bytes"}
	}
	if !utf8.Valid(raw) {
		return nil, &FieldError{Reason: "message is not valid UTF-8"}
	}
	m := new(Message)
	if err := m.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalJSON decodes strictly, as ParseMessage does, without validating.
func (m *Message) UnmarshalJSON(data []byte) error {
	ms, err := readObject(data)
	if err != nil {
		return &FieldError{Reason: err.Error()}
	}
	*m = Message{}
	for _, f := range ms {
		var err error
		switch f.name {
		case "id":
			err = unmarshalString(f.value, &m.ID)
		case "tenant":
			err = unmarshalString(f.value, &m.Tenant)
		case "brand":
			err = unmarshalString(f.value, &m.Brand)
		case "channel":
			err = unmarshalString(f.value, &m.Channel)
		case "category":
			err = unmarshalString(f.value, &m.Category)
		case "purpose":
			err = unmarshalString(f.value, &m.Purpose)
		case "to":
			if string(f.value) != "null" {
				if err := m.To.UnmarshalJSON(f.value); err != nil {
					return err
				}
			}
		case "from":
			err = unmarshalString(f.value, &m.From)
		case "reply_to":
			err = unmarshalString(f.value, &m.ReplyTo)
		case "subject":
			err = unmarshalString(f.value, &m.Subject)
		case "html":
			err = unmarshalString(f.value, &m.HTML)
		case "text":
			err = unmarshalString(f.value, &m.Text)
		case "campaign":
			err = unmarshalString(f.value, &m.Campaign)
		case "not_before":
			m.NotBefore, err = unmarshalTime(f.value)
		case "expires_at":
			m.ExpiresAt, err = unmarshalTime(f.value)
		default:
			return &FieldError{Reason: "unknown field " + fieldName(f.name)}
		}
		if err != nil {
			return &FieldError{Field: f.name, Reason: err.Error()}
		}
	}
	return nil
}

// UnmarshalJSON decodes strictly, as ParseMessage does.
func (r *Recipient) UnmarshalJSON(data []byte) error {
	ms, err := readObject(data)
	if err != nil {
		return &FieldError{Field: "to", Reason: err.Error()}
	}
	*r = Recipient{}
	for _, f := range ms {
		var err error
		switch f.name {
		case "subject":
			err = unmarshalString(f.value, &r.Subject)
		case "token":
			err = unmarshalString(f.value, &r.Token)
		default:
			return &FieldError{Field: "to", Reason: "unknown field " + fieldName(f.name)}
		}
		if err != nil {
			return &FieldError{Field: "to." + f.name, Reason: err.Error()}
		}
	}
	return nil
}

// unmarshalTime decodes an RFC 3339 time; null is no time.
func unmarshalTime(raw json.RawMessage) (*time.Time, error) {
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, errors.New("must be an RFC 3339 time string")
	}
	if s == nil {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		return nil, errors.New("must be an RFC 3339 time string")
	}
	return &t, nil
}

// Validate checks every field of m. The error, a *FieldError wrapping
// ErrInvalidMessage, names the first bad field but never quotes its value.
func (m *Message) Validate() error {
	bad := func(field, reason string) error { return &FieldError{Field: field, Reason: reason} }
	for _, f := range [...]struct{ name, v string }{{"id", m.ID}, {"tenant", m.Tenant}, {"brand", m.Brand}} {
		if err := checkID(f.v); err != "" {
			return bad(f.name, err)
		}
	}
	switch m.Channel {
	case ChannelEmail, ChannelSMS, ChannelIM, ChannelPush:
	case "":
		return bad("channel", "required")
	default:
		return bad("channel", "must be one of email, sms, im, push")
	}
	switch m.Category {
	case CategoryTransactional, CategoryMarketing:
	case "":
		return bad("category", "required")
	default:
		return bad("category", "must be one of transactional, marketing")
	}
	if err := checkPurpose(m.Purpose); err != "" {
		return bad("purpose", err)
	}
	switch {
	case m.To.Subject == "" && m.To.Token == "":
		return bad("to", "needs one of subject, token")
	case m.To.Subject != "" && m.To.Token != "":
		return bad("to", "has both subject and token; give exactly one")
	case m.To.Subject != "":
		if err := checkID(m.To.Subject); err != "" {
			return bad("to.subject", err)
		}
	default:
		if err := checkToken(m.To.Token); err != "" {
			return bad("to.token", err)
		}
	}
	for _, f := range [...]struct {
		name, v string
		max     int
	}{{"from", m.From, MaxFromLen}, {"reply_to", m.ReplyTo, MaxFromLen}, {"subject", m.Subject, MaxSubjectLen}} {
		if err := checkLine(f.v, f.max); err != "" {
			return bad(f.name, err)
		}
	}
	for _, f := range [...]struct{ name, v string }{{"html", m.HTML}, {"text", m.Text}} {
		if err := checkBody(f.v); err != "" {
			return bad(f.name, err)
		}
	}
	switch m.Channel {
	case ChannelEmail:
		if m.Subject == "" {
			return bad("subject", "required for email")
		}
		if m.HTML == "" && m.Text == "" {
			return bad("text", "email needs html or text")
		}
	case ChannelSMS:
		if m.HTML != "" {
			return bad("html", "not allowed for sms")
		}
		fallthrough
	default:
		if m.Text == "" {
			return bad("text", "required for "+m.Channel)
		}
	}
	if m.Campaign != "" {
		if err := checkID(m.Campaign); err != "" {
			return bad("campaign", err)
		}
	}
	if m.NotBefore != nil && m.ExpiresAt != nil && !m.ExpiresAt.After(*m.NotBefore) {
		return bad("expires_at", "must be after not_before")
	}
	return nil
}

// checkID is the rule for ids (the same as vault.ValidateID): 1 to
// MaxIDLen bytes of printable UTF-8. It returns "" if s is valid.
func checkID(s string) string {
	switch {
	case s == "":
		return "required"
	case len(s) > MaxIDLen:
		return "longer than " + strconv.Itoa(MaxIDLen) + " bytes"
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return "has a non-printable character"
		}
	}
	return ""
}

// checkPurpose: a lowercase ASCII name, [a-z][a-z0-9_.-]*.
func checkPurpose(s string) string {
	switch {
	case s == "":
		return "required"
	case len(s) > MaxPurposeLen:
		return "longer than " + strconv.Itoa(MaxPurposeLen) + " bytes"
	case s[0] < 'a' || s[0] > 'z':
		return "must start with a lowercase letter"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return "may hold only a-z, 0-9, '_', '.', '-'"
		}
	}
	return ""
}

// checkToken checks a token loosely: its full grammar (docs/protocol.md)
// belongs to the vault, which is the only side that can resolve it.
func checkToken(s string) string {
	switch {
	case !strings.HasPrefix(s, "tok_"):
		return `must start with "tok_"`
	case len(s) > MaxIDLen:
		return "longer than " + strconv.Itoa(MaxIDLen) + " bytes"
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return "may hold only visible ASCII"
		}
	}
	return ""
}

// checkLine is the rule for header-bound fields: no control characters, so
// no CR or LF that could inject a header.
func checkLine(s string, max int) string {
	switch {
	case len(s) > max:
		return "longer than " + strconv.Itoa(max) + " bytes"
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "has a control character"
		}
	}
	return ""
}

// checkBody allows tab, CR and LF but no other control character.
func checkBody(s string) string {
	switch {
	case len(s) > MaxBodyLen:
		return "longer than " + strconv.Itoa(MaxBodyLen) + " bytes"
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\t' && r != '\r' && r != '\n' {
			return "has a control character"
		}
	}
	return ""
}
