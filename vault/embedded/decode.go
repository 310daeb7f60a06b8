package embedded

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/blindpost/blindpost/vault"
)

// decodeRecord is json.Unmarshal(b, &rec) for a sealed record's plaintext,
// several times faster for what json.Marshal makes of a vault.Record: a
// resolve decodes one record per message, and encoding/json was a third of
// its time. Anything else — another key, a null, a duplicate key, a
// malformed document — goes to json.Unmarshal, so the result is always
// json.Unmarshal's (FuzzDecodeRecord checks this).
func decodeRecord(b []byte) (vault.Record, error) {
	if rec, ok := decodeRecordFast(b); ok {
		return rec, nil
	}
	var rec vault.Record
	err := json.Unmarshal(b, &rec)
	return rec, err
}

func decodeRecordFast(b []byte) (vault.Record, bool) {
	var rec vault.Record
	d := decoder{b: b}
	if !d.record(&rec) {
		return vault.Record{}, false
	}
	return rec, true
}

// Bits of the fields seen, to send duplicate keys to json.Unmarshal.
const (
	fEmail = 1 << iota
	fPhone
	fTelegram
	fPushTokens
	fFirstName
	fLastName
	fLocale
	fCountry
	fTimezone
	fConsents
	fOptOuts
	fOptOutSince
	fSnoozedUntil
	fSelfExcluded
	fPseudonym
)

type decoder struct {
	b []byte
	i int
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// next consumes c, after whitespace, if it comes next.
func (d *decoder) next(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// end reports whether nothing but whitespace is left.
func (d *decoder) end() bool {
	d.ws()
	return d.i == len(d.b)
}

// object reads '{' then calls member for each key, after its ':', until
// '}'. A key with escapes is refused.
func (d *decoder) object(member func(key []byte) bool) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	for {
		tok, plain, ok := d.stringToken()
		if !ok || !plain || !d.next(':') || !member(tok[1:len(tok)-1]) {
			return false
		}
		if d.next(',') {
			continue
		}
		return d.next('}')
	}
}

func (d *decoder) record(r *vault.Record) bool {
	var seen int
	ok := d.object(func(key []byte) bool {
		var f int
		var ok bool
		switch string(key) {
		case "email":
			f = fEmail
			r.Email, ok = d.string()
		case "phone":
			f = fPhone
			r.Phone, ok = d.string()
		case "telegram_chat_id":
			f = fTelegram
			r.TelegramChatID, ok = d.string()
		case "push_tokens":
			f = fPushTokens
			r.PushTokens, ok = d.pushTokens()
		case "first_name":
			f = fFirstName
			r.FirstName, ok = d.string()
		case "last_name":
			f = fLastName
			r.LastName, ok = d.string()
		case "locale":
			f = fLocale
			r.Locale, ok = d.string()
		case "country":
			f = fCountry
			r.Country, ok = d.string()
		case "timezone":
			f = fTimezone
			r.Timezone, ok = d.string()
		case "consents":
			f = fConsents
			r.Consents, ok = d.boolMap()
		case "opt_outs":
			f = fOptOuts
			r.OptOuts, ok = d.boolMap()
		case "opt_out_since":
			f = fOptOutSince
			r.OptOutSince, ok = d.timeMap()
		case "snoozed_until":
			f = fSnoozedUntil
			r.SnoozedUntil, ok = d.timeMap()
		case "self_excluded":
			f = fSelfExcluded
			r.SelfExcluded, ok = d.bool()
		case "pseudonym":
			f = fPseudonym
			r.Pseudonym, ok = d.string()
		}
		if f == 0 || seen&f != 0 {
			return false
		}
		seen |= f
		return ok
	})
	return ok && d.end()
}

// stringToken reads a JSON string and returns it with its quotes. plain
// means it has no escapes and is valid UTF-8, so its bytes are its value.
func (d *decoder) stringToken() (tok []byte, plain, ok bool) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false, false
	}
	plain, ascii := true, true
	for j := d.i + 1; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			tok = d.b[d.i : j+1]
			d.i = j + 1
			if !ascii && !utf8.Valid(tok) {
				plain = false // json.Unmarshal replaces invalid bytes
			}
			return tok, plain, true
		case c == '\\':
			plain = false
			j++ // the escaped character cannot end the string
		case c < 0x20:
			return nil, false, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false, false
}

func (d *decoder) string() (string, bool) {
	tok, plain, ok := d.stringToken()
	if !ok {
		return "", false
	}
	if plain {
		return string(tok[1 : len(tok)-1]), true
	}
	var s string
	if json.Unmarshal(tok, &s) != nil {
		return "", false
	}
	return s, true
}

func (d *decoder) bool() (bool, bool) {
	d.ws()
	rest := d.b[d.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		d.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		d.i += 5
		return false, true
	}
	return false, false
}

func (d *decoder) boolMap() (map[string]bool, bool) {
	m := map[string]bool{}
	ok := d.mapOf(func(k string) bool {
		v, ok := d.bool()
		m[k] = v
		return ok
	})
	return m, ok
}

func (d *decoder) timeMap() (map[string]time.Time, bool) {
	m := map[string]time.Time{}
	ok := d.mapOf(func(k string) bool {
		// json.Unmarshal hands the quoted token to UnmarshalJSON too.
		tok, _, ok := d.stringToken()
		if !ok {
			return false
		}
		var t time.Time
		if t.UnmarshalJSON(tok) != nil {
			return false
		}
		m[k] = t
		return true
	})
	return m, ok
}

// mapOf reads an object of any keys; a key repeated is set again, as
// json.Unmarshal does.
func (d *decoder) mapOf(value func(k string) bool) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	for {
		k, ok := d.string()
		if !ok || !d.next(':') || !value(k) {
			return false
		}
		if d.next(',') {
			continue
		}
		return d.next('}')
	}
}

func (d *decoder) pushTokens() ([]vault.PushToken, bool) {
	if !d.next('[') {
		return nil, false
	}
	pts := []vault.PushToken{}
	if d.next(']') {
		return pts, true
	}
	for {
		var pt vault.PushToken
		var seen int
		ok := d.object(func(key []byte) bool {
			var f int
			var ok bool
			switch string(key) {
			case "token":
				f = 1
				pt.Token, ok = d.string()
			case "device_type":
				f = 2
				pt.DeviceType, ok = d.string()
			}
			if f == 0 || seen&f != 0 {
				return false
			}
			seen |= f
			return ok
		})
		if !ok {
			return nil, false
		}
		pts = append(pts, pt)
		if d.next(',') {
			continue
		}
		return pts, d.next(']')
	}
}
