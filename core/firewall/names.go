package firewall

import "strings"

// The property-name rule: a key whose name means PII taints its value, and
// every leaf under it must be a token, null, a boolean or empty.
//
// A name is split into lower-case words at anything but ASCII letters and
// digits, at camelCase humps and between letters and digits, and pure
// digit words are dropped: "+contactEmail", "contact-email" and
// "CONTACT_EMAIL_2" are all [contact email]. (update_profile operators
// are thus ignored: "+email" and "!email" name email.)
//
// English compound names put the head noun last, so the name is PII when
// it ENDS with a PII term, possibly followed only by neutral words:
//
//	email, contact_email, email_address, phone_number, phone_mobile,
//	first_name, zip_code, address_line_2, email_sha256
//
// and not when anything else follows the term, because then the name is
// about the PII, not the PII itself:
//
//	core_is_email_disabled, core_is_sms_disabled_by_platform, email_verified,
//	email_token, email_id, email_count, last_email_sent_at, iban_country
//
// A name starting with is/has/can/was/did/should/opt is a flag ("is_email").
// Hashes of PII stay PII (email_hash, email_sha256): an unsalted hash of an
// address is reversed by hashing candidate addresses.
//
// "name", "number" and "holder" alone say nothing; they take the words of
// the enclosing object's key: payload.contact.name is [contact name] (PII),
// payload.game.name is [game name] (not), payload.card.number is [card
// number]. At the top of the payload the enclosing object is the player,
// so a bare payload.name is the player's name.
//
// Deliberately not PII by name: nickname, display_name and screen_name
// (leaderboards show them), city, country, region, gender, age, device ids
// and push tokens. Terms are English only; Options.PIIProperties adds
// others.

// piiTerms are the PII names. A term matches a run of whole words of a
// key whatever their split: "first name" matches first_name, firstName
// and firstname.
var piiTerms = []string{
	// email
	"email", "emails", "mail", "mails",
	// phone and messengers
	"phone", "phones", "telephone", "tel", "mobile", "mobiles", "msisdn", "cell phone", "fax",
	"whatsapp", "telegram id", "telegram chat id", "viber", "skype",
	// names
	"first name", "last name", "full name", "surname", "forename", "given name", "family name",
	"middle name", "maiden name", "real name", "legal name", "user name", "player name",
	"customer name", "client name", "contact name", "member name", "person name", "beneficiary name",
	"recipient name", "sender name", "fname", "lname",
	// postal address
	"address", "addresses", "street", "house number", "zip", "zip code", "post code", "postal code",
	// birth
	"dob", "birth date", "birthday", "date of birth", "day of birth",
	// government ids
	"ssn", "social security", "social security number", "national id", "national insurance",
	"tax id", "tax number", "passport", "passports", "id number", "id card", "personal id",
	"personal code", "personal number", "driver license", "drivers license", "driving license",
	"driver licence", "drivers licence", "driving licence", "license number", "licence number",
	// bank and card
	"iban", "ibans", "bank account", "account number", "card number", "pan", "cc number",
	"credit card", "debit card", "cvv", "cvc", "card holder", "account holder",
	// network address and location
	"ip", "ips", "ip address", "ipv", "latitude", "longitude", "lat", "lng", "geolocation", "gps",
}

// neutralTail are words that may follow a PII term without changing what
// the name holds.
var neutralTail = set("number", "no", "nr", "num", "address", "addresses", "line", "primary", "secondary",
	"main", "alt", "alternate", "alternative", "other", "home", "work", "office", "business", "personal",
	"private", "mobile", "cell", "raw", "full", "plain", "clear", "text", "value", "original",
	"normalized", "normalised", "canonical", "name", "list",
	"hash", "hashed", "md", "sha") // hashes of PII are PII

// notAddress are words before "address" that make it no postal or network
// address of a person.
var notAddress = set("contract", "server", "host", "node", "web", "url", "proxy", "gateway", "relay")

// rootWord stands for the enclosing object of top-level payload keys.
var rootWord = []byte("player")

// flagPrefixes start names of flags.
var flagPrefixes = set("is", "has", "can", "was", "did", "should", "opt", "opted")

// genericWords take the words of the enclosing object's key.
var genericWords = set("name", "number", "no", "nr", "num", "holder")

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// nameRule holds the PII terms, each as its words written together.
type nameRule struct {
	terms   map[string]bool
	maxTerm int             // the longest term, in bytes
	allow   map[string]bool // normalised names exempt from the rule
}

func newNameRule(extra, allow []string) *nameRule {
	r := &nameRule{terms: map[string]bool{}, allow: map[string]bool{}}
	for _, t := range append(piiTerms[:len(piiTerms):len(piiTerms)], extra...) {
		ws, buf := splitWords(nil, nil, t)
		if len(ws) > 0 {
			r.terms[string(buf)] = true // the words, written together
			r.maxTerm = max(r.maxTerm, len(buf))
		}
	}
	for _, a := range allow {
		ws, _ := splitWords(nil, nil, a)
		r.allow[joinWords(ws)] = true
	}
	return r
}

func joinWords(ws [][]byte) string {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteByte('_')
		}
		b.Write(w)
	}
	return b.String()
}

// splitWords appends the lower-case words of name to ws and their bytes
// to buf; the words alias buf.
func splitWords(ws [][]byte, buf []byte, name string) ([][]byte, []byte) {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isAlnum(c) {
			continue
		}
		// c starts a word; find its end.
		j := i + 1
		for j < len(name) && isAlnum(name[j]) && !wordBreak(name, j) {
			j++
		}
		if !allDigits(name[i:j]) {
			start := len(buf)
			for k := i; k < j; k++ {
				c := name[k]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				buf = append(buf, c)
			}
			ws = append(ws, buf[start:len(buf):len(buf)])
		}
		i = j - 1
	}
	return ws, buf
}

// wordBreak reports whether a new word starts at name[j] (name[j-1] and
// name[j] being letters or digits): fooBar, HTTPServer, line1, 2fa.
func wordBreak(name string, j int) bool {
	p, c := name[j-1], name[j]
	switch {
	case isDigit(p) != isDigit(c):
		return true
	case isUpper(c) && isLower(p):
		return true
	case isUpper(p) && isUpper(c) && j+1 < len(name) && isLower(name[j+1]):
		return true
	}
	return false
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isLower(c byte) bool { return 'a' <= c && c <= 'z' }

// verdict is what a key's name says on its own.
type verdict uint8

const (
	unknown verdict = iota // not judged yet (the cache's empty value)
	plain                  // not PII
	pii                    // PII
	generic                // "name", "number": it depends on the enclosing key
)

// scratch is reusable space for the words of key names.
type scratch struct {
	ws  [][]byte
	buf []byte
}

// judge returns the verdict of a key's name.
func (r *nameRule) judge(key string, sc *scratch) verdict {
	ws, buf := splitWords(sc.ws[:0], sc.buf[:0], key)
	defer func() { sc.ws, sc.buf = ws[:0], buf[:0] }()
	switch {
	case len(ws) == 0 || flagPrefixes[string(ws[0])]:
		return plain
	case len(r.allow) > 0 && r.allow[joinWords(ws)]:
		return plain
	case len(ws) == 1 && genericWords[string(ws[0])]:
		return generic
	case r.endsWithTerm(ws):
		return pii
	}
	return plain
}

// inContext reports whether a generic key names PII within the object
// under parent, or at the top of the payload when root is true.
func (r *nameRule) inContext(key, parent string, root bool, sc *scratch) bool {
	ws, buf := sc.ws[:0], sc.buf[:0]
	if root {
		ws = append(ws, rootWord)
	} else {
		ws, buf = splitWords(ws, buf, parent)
	}
	ws, buf = splitWords(ws, buf, key)
	sc.ws, sc.buf = ws[:0], buf[:0]
	return r.endsWithTerm(ws)
}

// endsWithTerm reports whether ws ends with a PII term, made of whole
// words, followed only by neutral words.
func (r *nameRule) endsWithTerm(ws [][]byte) bool {
	var buf [64]byte
	for k := len(ws) - 1; k >= 0; k-- {
		// Try the runs of words ws[j..k], shortest first.
		n := 0
		for j := k; j >= 0; j-- {
			n += len(ws[j])
			if n > r.maxTerm || n > len(buf) {
				break
			}
			b := buf[:0]
			for _, w := range ws[j : k+1] {
				b = append(b, w...)
			}
			if r.terms[string(b)] && !(string(b) == "address" && j > 0 && notAddress[string(ws[j-1])]) {
				return true
			}
		}
		if !neutralTail[string(ws[k])] {
			return false
		}
	}
	return false
}
