package vault

import (
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Record is the PII of one player. Stores keep it sealed; it is opened only
// for the recipient of the message being sent.
type Record struct {
	Email          string `json:"email,omitempty"`
	Phone          string `json:"phone,omitempty"` // E.164 once normalised
	TelegramChatID string `json:"telegram_chat_id,omitempty"`
	// PushTokens are the player's devices for the custom push gateway.
	PushTokens []PushToken `json:"push_tokens,omitempty"`
	FirstName  string      `json:"first_name,omitempty"`
	LastName   string      `json:"last_name,omitempty"`
	Locale     string      `json:"locale,omitempty"`   // BCP 47, e.g. "en-GB"
	Country    string      `json:"country,omitempty"`  // ISO 3166-1 alpha-2
	Timezone   string      `json:"timezone,omitempty"` // IANA, e.g. "Europe/Malta"

	// Consents holds the player's marketing consents: "marketing_email",
	// "marketing_sms", "marketing_im", "marketing_push".
	Consents map[string]bool `json:"consents,omitempty"`
	// OptOuts holds the opt-out flags of the reference vendor's profile:
	// core_is_{email,sms,push}_disabled_by_platform (set by the PAM) and
	// core_is_{email,sms}_disabled (set by the player).
	OptOuts map[string]bool `json:"opt_outs,omitempty"`
	// OptOutSince holds, per opt-out flag, when it was set (the policy
	// applies the player's 30-day snooze from it).
	OptOutSince map[string]time.Time `json:"opt_out_since,omitempty"`
	// SnoozedUntil holds, per channel (email, sms, im, push), the end of a
	// marketing snooze the player chose on the unsubscribe page.
	SnoozedUntil map[string]time.Time `json:"snoozed_until,omitempty"`
	SelfExcluded bool                 `json:"self_excluded,omitempty"`

	// Pseudonym is random per subject, set by the store on first Put and
	// kept across updates; a value given to Put is ignored. Logs name
	// subjects by it.
	Pseudonym string `json:"pseudonym,omitempty"`
}

var consentKeys = map[string]bool{
	"marketing_email": true,
	"marketing_sms":   true,
	"marketing_im":    true,
	"marketing_push":  true,
}

var snoozeChannels = map[string]bool{"email": true, "sms": true, "im": true, "push": true}

var optOutKeys = map[string]bool{
	"core_is_email_disabled_by_platform": true,
	"core_is_sms_disabled_by_platform":   true,
	"core_is_push_disabled_by_platform":  true,
	"core_is_email_disabled":             true,
	"core_is_sms_disabled":               true,
}

// PushToken is one device registered for push messages.
type PushToken struct {
	Token      string `json:"token"`       // the push service's device token, opaque
	DeviceType string `json:"device_type"` // e.g. "ios", "android", "web"
}

// maxPushTokens bounds the devices of one player.
const maxPushTokens = 16

// maxNameLen bounds free-text fields. Names end up in Subject headers.
const maxNameLen = 256

// FieldError is a validation error. It names the field, never the value.
// It matches ErrInvalid.
type FieldError struct {
	Field  string // JSON name
	Reason string
}

func (e *FieldError) Error() string {
	return "record: field " + strconv.Quote(e.Field) + ": " + e.Reason
}

func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Validate reports the first malformed field of r: addresses that do not
// normalise, a timezone that does not load, an unknown consent or opt-out
// key, or a free-text field that is too long or holds control characters.
func (r Record) Validate() error {
	_, err := r.Normalize()
	return err
}

// Normalize returns r with its addresses in the normal form of
// docs/protocol.md §11.2 (email trimmed with ASCII A-Z lower-cased, phone in
// E.164, chat id trimmed; see NormalizeEmail, NormalizePhone and
// NormalizeTelegramChatID) and its country upper-cased, or the error
// Validate reports. Stores keep records normalised, so a placeholder renders
// the same value that was tokenised.
func (r Record) Normalize() (Record, error) {
	var err error
	if r.Email != "" {
		if r.Email, err = NormalizeEmail(r.Email); err != nil {
			return Record{}, &FieldError{"email", "not an email address"}
		}
	}
	if r.Phone != "" {
		if r.Phone, err = NormalizePhone(r.Phone); err != nil {
			return Record{}, &FieldError{"phone", "not an E.164 phone number"}
		}
	}
	if r.TelegramChatID != "" {
		if r.TelegramChatID, err = NormalizeTelegramChatID(r.TelegramChatID); err != nil {
			return Record{}, &FieldError{"telegram_chat_id", "not a Telegram chat id"}
		}
	}
	if len(r.PushTokens) > maxPushTokens {
		return Record{}, &FieldError{"push_tokens", "more than " + strconv.Itoa(maxPushTokens) + " devices"}
	}
	for _, pt := range r.PushTokens {
		if !validPushToken(pt.Token) {
			return Record{}, &FieldError{"push_tokens", "a token is empty, longer than 4096 bytes or not visible ASCII"}
		}
		if pt.DeviceType == "" || len(pt.DeviceType) > 32 || !allASCII(pt.DeviceType, isTokenChar) {
			return Record{}, &FieldError{"push_tokens", "a device_type is not 1-32 characters of [a-z0-9_-]"}
		}
	}
	for _, f := range [...]struct{ name, v string }{
		{"first_name", r.FirstName}, {"last_name", r.LastName},
	} {
		if reason := checkText(f.v); reason != "" {
			return Record{}, &FieldError{f.name, reason}
		}
	}
	if r.Locale != "" && !validLocale(r.Locale) {
		return Record{}, &FieldError{"locale", "not a BCP 47 language tag"}
	}
	if r.Country != "" {
		if !validCountry(r.Country) {
			return Record{}, &FieldError{"country", "not an ISO 3166-1 alpha-2 code"}
		}
		r.Country = string([]byte{upper(r.Country[0]), upper(r.Country[1])})
	}
	if r.Timezone != "" && !validTimezone(r.Timezone) {
		return Record{}, &FieldError{"timezone", "not an IANA time zone"}
	}
	for k := range r.Consents {
		if !consentKeys[k] {
			return Record{}, &FieldError{"consents", "unknown consent key"}
		}
	}
	for k := range r.OptOuts {
		if !optOutKeys[k] {
			return Record{}, &FieldError{"opt_outs", "unknown opt-out key"}
		}
	}
	for k := range r.OptOutSince {
		if !optOutKeys[k] {
			return Record{}, &FieldError{"opt_out_since", "unknown opt-out key"}
		}
	}
	for k := range r.SnoozedUntil {
		if !snoozeChannels[k] {
			return Record{}, &FieldError{"snoozed_until", "unknown channel"}
		}
	}
	if r.Pseudonym != "" && !validPseudonym(r.Pseudonym) {
		return Record{}, &FieldError{"pseudonym", "malformed"}
	}
	return r, nil
}

// Field returns the value of a placeholder field: email, phone, first_name,
// last_name, locale or country. ok is false for any other name, and for a
// field the record leaves empty.
func (r Record) Field(name string) (value string, ok bool) {
	switch name {
	case "email":
		value = r.Email
	case "phone":
		value = r.Phone
	case "first_name":
		value = r.FirstName
	case "last_name":
		value = r.LastName
	case "locale":
		value = r.Locale
	case "country":
		value = r.Country
	}
	return value, value != ""
}

func validPushToken(s string) bool {
	if s == "" || len(s) > 4096 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func checkText(s string) string {
	if len(s) > maxNameLen {
		return "longer than " + strconv.Itoa(maxNameLen) + " bytes"
	}
	if !utf8.ValidString(s) {
		return "not UTF-8"
	}
	for _, c := range s {
		if unicode.IsControl(c) || c == '\u2028' || c == '\u2029' {
			return "has control characters"
		}
	}
	return ""
}

// validLocale accepts a BCP 47-shaped tag: a 2–3 letter language and up to
// a few 1–8 character alphanumeric subtags separated by '-' or '_'.
func validLocale(s string) bool {
	if len(s) > 35 {
		return false
	}
	for i, part := range splitAny(s, "-_") {
		if i == 0 {
			if len(part) < 2 || len(part) > 3 || !allASCII(part, isLetter) {
				return false
			}
			continue
		}
		if len(part) < 1 || len(part) > 8 || !allASCII(part, isAlnum) {
			return false
		}
	}
	return true
}

func validCountry(s string) bool { return len(s) == 2 && allASCII(s, isLetter) }

// tzCache remembers time zone names that loaded, so a bulk import does not
// read the zone database once per record.
var tzCache sync.Map

func validTimezone(name string) bool {
	if _, ok := tzCache.Load(name); ok {
		return true
	}
	// "Local" depends on the host; the record must name a zone.
	if name == "Local" || len(name) > 64 {
		return false
	}
	if _, err := time.LoadLocation(name); err != nil {
		return false
	}
	tzCache.Store(name, true)
	return true
}

func validPseudonym(s string) bool { return len(s) == PseudonymLen && allASCII(s, isBase32) }

// PseudonymLen is the length of a pseudonym: 16 random bytes in unpadded
// lower-case base32.
const PseudonymLen = 26

func splitAny(s, seps string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(seps); j++ {
			if s[i] == seps[j] {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

func allASCII(s string, f func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !f(s[i]) {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isAlnum(c byte) bool  { return isLetter(c) || isDigit(c) }
func isBase32(c byte) bool { return 'a' <= c && c <= 'z' || '2' <= c && c <= '7' }

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
