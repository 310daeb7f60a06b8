package firewall

import "strings"

// The value detectors. Each works on the bytes of one string, allocates
// nothing on the common path and never keeps or returns the value.
//
// Every rule is a trade between missing PII and refusing legitimate
// events, and the corpora in testdata hold both sides to it. The general
// shape: a rule that looks inside free text must be strict (a "+" before
// the digits, a Luhn-valid card with a card network's prefix and length,
// an IBAN with its country's length and checksum), and looser national
// phone shapes apply only when the whole value is one phone-shaped string.

// detect returns the reason s looks like PII, or "". A well-formed token
// is never PII.
func detect(s string) string {
	if len(s) < 5 || isToken(s) {
		return "" // the shortest email has six characters (one-letter local part and domain, two-letter TLD); no phone, card or IBAN is shorter
	}
	var seen byte
	digits := 0
	for i := 0; i < len(s); i++ {
		c := byteClass[s[i]]
		seen |= c
		digits += int(c & cDigit)
	}
	at, plus, open, letter := seen&cAt != 0, seen&cPlus != 0, seen&cOpen != 0, seen&cLetter != 0
	if at && hasEmail(s) || open && hasObfuscatedEmail(s) {
		return ReasonEmail
	}
	if digits >= minCardLen && hasCard(s) {
		return ReasonCard
	}
	if letter && digits >= 2 && len(s) >= minIBANLen && hasIBAN(s) {
		return ReasonIBAN
	}
	if digits >= minE164Digits && (plus && hasE164(s) || isPhone(s)) {
		return ReasonPhone
	}
	return ""
}

// Byte classes for detect's first pass, which decides which detectors can
// match at all.
const (
	cDigit = 1 << iota // must stay 1: detect counts digits with it
	cAt
	cPlus
	cOpen
	cLetter
)

var byteClass = func() (t [256]byte) {
	for c := '0'; c <= '9'; c++ {
		t[c] = cDigit
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = cLetter, cLetter
	}
	t['@'], t['+'], t['('], t['['], t['{'] = cAt, cPlus, cOpen, cOpen, cOpen
	return t
}()

// detectNumber returns the reason a JSON number literal looks like PII.
// Only card numbers are looked for: a number cannot carry the "+" or the
// trunk "0" that tell a phone number from a numeric id, and epoch
// milliseconds and ids are numbers that must pass. A phone number sent as
// a number is caught by the property-name rule when its key names it.
func detectNumber(lit string) string {
	if len(lit) >= minCardLen && len(lit) <= maxCardLen && allDigits(lit) && isCard(lit) {
		return ReasonCard
	}
	return ""
}

func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isLetter(c byte) bool { return 'A' <= c&^0x20 && c&^0x20 <= 'Z' }
func isAlnum(c byte) bool  { return isDigit(c) || isLetter(c) }

// isWord reports whether c continues a word: the boundary rules below keep
// digit runs inside identifiers, hashes and tokens (a3f41111…, tok_…) from
// being read as cards, IBANs or phone numbers.
func isWord(c byte) bool { return isAlnum(c) || c == '_' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// isToken reports whether s is a well-formed blindpost token
// (docs/protocol.md §11.1): tok_<kind>_v<version>_<mac>, kind one of
// email, phone, tg; version 1…2147483647 in decimal without a leading
// zero; mac exactly 32 characters of a-z and 2-7. It accepts exactly what
// vault.ParseToken accepts (testdata/tokens.json holds the shared
// vectors): the core may not import vault/, and a kind the vault does not
// know is no token the gateway could resolve, so it fails closed here too.
func isToken(s string) bool {
	rest, ok := strings.CutPrefix(s, "tok_")
	if !ok {
		return false
	}
	switch {
	case strings.HasPrefix(rest, "email_v"):
		rest = rest[len("email_v"):]
	case strings.HasPrefix(rest, "phone_v"):
		rest = rest[len("phone_v"):]
	case strings.HasPrefix(rest, "tg_v"):
		rest = rest[len("tg_v"):]
	default:
		return false
	}
	n := 0
	for n < len(rest) && isDigit(rest[n]) {
		n++
	}
	const maxVersion = "2147483647"
	if n == 0 || n > len(maxVersion) || rest[0] == '0' || n == len(maxVersion) && rest[:n] > maxVersion {
		return false
	}
	mac, ok := strings.CutPrefix(rest[n:], "_")
	if !ok || len(mac) != 32 {
		return false
	}
	for i := 0; i < len(mac); i++ {
		if c := mac[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// Emails.
//
// An email is an "@" with a local part before it and, after it, a domain
// of at least two dot-separated labels whose last label (the top-level
// domain) is two or more letters, or an IDN (non-ASCII, or xn--). So
// "user@localhost", "pkg@1.2.3" and "@handle" pass, and "icon@2x.png"
// passes because a few file extensions that are not top-level domains are
// excluded. The address may sit anywhere in a string. Non-ASCII bytes
// count as letters, so "Élodie@example.com" is caught.
//
// Obfuscations are caught only when they are bracketed — "canary(at)
// example(dot)com", "canary [at] example [dot] com" — because the bare
// words ("meet at the bar dot com") are ordinary English.

func isLocalChar(c byte) bool {
	return isAlnum(c) || c >= 0x80 || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0
}

func isDomainChar(c byte) bool { return isAlnum(c) || c >= 0x80 || c == '-' || c == '.' }

// hasEmail reports whether s contains an email address.
func hasEmail(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '@' {
			continue
		}
		j := i
		for j > 0 && isLocalChar(s[j-1]) {
			j--
		}
		if strings.Trim(s[j:i], ".") == "" {
			continue
		}
		k := i + 1
		for k < len(s) && isDomainChar(s[k]) {
			k++
		}
		if plausibleDomain(strings.TrimRight(s[i+1:k], ".-")) {
			return true
		}
	}
	return false
}

func plausibleDomain(d string) bool {
	dot := strings.LastIndexByte(d, '.')
	if dot <= 0 || strings.Contains(d, "..") || d[0] == '.' || d[0] == '-' {
		return false
	}
	tld := d[dot+1:]
	if strings.HasPrefix(tld, "xn--") && len(tld) > 4 {
		return true
	}
	if len(tld) < 2 {
		return false
	}
	for i := 0; i < len(tld); i++ {
		if c := tld[i]; !isLetter(c) && c < 0x80 {
			return false
		}
	}
	return !fileExtensions[strings.ToLower(tld)]
}

// fileExtensions are common file name extensions that are not top-level
// domains: "logo@2x.png" names an image, not a mailbox.
var fileExtensions = map[string]bool{
	"png": true, "jpg": true, "jpeg": true, "gif": true, "svg": true, "webp": true, "ico": true, "bmp": true,
	"css": true, "js": true, "json": true, "html": true, "htm": true, "txt": true, "pdf": true, "xml": true, "csv": true,
}

// hasObfuscatedEmail rewrites bracketed "at" and "dot" markers ("(at)",
// "[ at ]", "{dot}", any case) to "@" and ".", dropping the spaces around
// them, and looks for an email in the result. It allocates only when s
// holds an "at" marker, and stays linear in len(s).
func hasObfuscatedEmail(s string) bool {
	first := -1
	for i := 0; i < len(s) && first < 0; i++ {
		if w, _ := bracketMarker(s[i:]); w == '@' {
			first = i
		}
	}
	if first < 0 {
		return false
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		word, n := bracketMarker(s[i:])
		if word == 0 {
			b = append(b, s[i])
			continue
		}
		for len(b) > 0 && b[len(b)-1] == ' ' {
			b = b[:len(b)-1]
		}
		b = append(b, word)
		i += n - 1
		for i+1 < len(s) && s[i+1] == ' ' {
			i++
		}
	}
	return hasEmail(string(b))
}

// bracketMarker reports whether s starts with a bracketed "at" or "dot"
// and returns '@' or '.' and the marker's length, or 0.
func bracketMarker(s string) (byte, int) {
	if len(s) < 4 {
		return 0, 0
	}
	var closer byte
	switch s[0] {
	case '(':
		closer = ')'
	case '[':
		closer = ']'
	case '{':
		closer = '}'
	default:
		return 0, 0
	}
	i := 1
	for i < len(s) && s[i] == ' ' {
		i++
	}
	var word byte
	switch {
	case len(s)-i >= 2 && strings.EqualFold(s[i:i+2], "at"):
		word, i = '@', i+2
	case len(s)-i >= 3 && strings.EqualFold(s[i:i+3], "dot"):
		word, i = '.', i+3
	default:
		return 0, 0
	}
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i == len(s) || s[i] != closer {
		return 0, 0
	}
	return word, i + 1
}

// Payment cards.
//
// A card number is 13 to 19 digits that pass the Luhn check AND start
// with a card network's prefix at a length that network issues (isCard).
// The prefix rule is what lets epoch timestamps through; without it one in
// ten would pass Luhn and be refused. In milliseconds a timestamp has 13
// digits and starts with 1 until 2033, with 2 or 3 until 2096, with 4
// until 2128; the only 13-digit cards the rule knows start with 5 or 6
// (Maestro), so timestamps and far-future sentinels such as 2100-01-01
// (4102444800000) pass. Visa's 13-digit numbers start with 4 and were
// retired long ago: they are left out, as is UATP (15 digits starting
// with 1). Epoch micro- and nanoseconds (16 and 19 digits) start with 1
// until 2286, and no 16- or 19-digit card does.
//
// In a string, the digits may be grouped by single spaces or dashes as
// cards are printed (4-4-4-4, 4-4-4-4-3, Amex 4-6-5, Diners 4-6-4), and
// the run must not touch a letter, digit or underscore, so a digit run
// inside a hash or an identifier is not a card. Numeric ids of 13–19
// digits that start with 2–6 pass Luhn one time in ten and are then
// refused: that is the price of catching cards sent as bare digits, the
// form PAMs store them in.

const (
	minCardLen = 13
	maxCardLen = 19
)

// hasCard reports whether s contains a card number.
func hasCard(s string) bool {
	var groups [maxCardLen + 1]int // lengths of the digit groups of one run
	for i := 0; i < len(s); {
		if !isDigit(s[i]) || i > 0 && isWord(s[i-1]) {
			i++
			continue
		}
		// Collect one run: digit groups joined by one separator, the same
		// throughout.
		start, n, digits := i, 0, 0
		var sep byte
		for i < len(s) && n < len(groups) {
			g := i
			for i < len(s) && isDigit(s[i]) {
				i++
			}
			groups[n] = i - g
			n++
			digits += i - g
			if i+1 < len(s) && (s[i] == ' ' || s[i] == '-') && isDigit(s[i+1]) && (sep == 0 || sep == s[i]) {
				sep = s[i]
				i++
				continue
			}
			break
		}
		if i < len(s) && isWord(s[i]) || digits < minCardLen {
			continue
		}
		if cardInRun(s[start:i], groups[:n]) {
			return true
		}
	}
	return false
}

// cardInRun looks for a card in a run of digit groups: the whole run, or
// (when it is grouped) any window of whole groups, so that "ref 12 4111
// 1111 1111 1111" is still caught.
func cardInRun(run string, groups []int) bool {
	var buf [maxCardLen]byte
	if len(groups) == 1 {
		return len(run) <= maxCardLen && isCard(run)
	}
	for from := range groups {
		digits := 0
		for to := from; to < len(groups); to++ {
			digits += groups[to]
			if digits > maxCardLen {
				break
			}
			if digits < minCardLen || !cardGrouping(groups[from:to+1]) {
				continue
			}
			// Gather the digits of the window.
			skip := from
			for _, g := range groups[:from] {
				skip += g
			}
			d := buf[:0]
			for i := skip; len(d) < digits; i++ {
				if isDigit(run[i]) {
					d = append(d, run[i])
				}
			}
			if isCard(string(d)) {
				return true
			}
		}
	}
	return false
}

// cardGrouping reports whether digit groups are printed as cards are:
// fours with a shorter last group, or Amex/Diners 4-6-5 and 4-6-4.
func cardGrouping(groups []int) bool {
	if len(groups) == 3 && groups[0] == 4 && groups[1] == 6 && (groups[2] == 5 || groups[2] == 4) {
		return true
	}
	for i, g := range groups {
		if g != 4 && (i < len(groups)-1 || g < 1 || g > 4) {
			return false
		}
	}
	return true
}

// isCard reports whether d, all digits, has a card network's prefix and
// length and passes the Luhn check.
func isCard(d string) bool {
	return cardPrefix(d) && luhn(d)
}

// cardPrefix checks the issuer identification number against the length:
// Visa 4 (16, 19); Mastercard 51–55 and 2221–2720 (16); Mir
// 2200–2204 (16–19); Amex 34, 37 (15); Diners 300–305, 36, 38, 39
// (14–19); JCB 3528–3589 (16–19); Maestro, Discover, UnionPay, RuPay and
// the rest of 50, 56–69 (13–19).
func cardPrefix(d string) bool {
	n := len(d)
	if n < minCardLen || n > maxCardLen {
		return false
	}
	p2 := int(d[0]-'0')*10 + int(d[1]-'0')
	p4 := p2*100 + int(d[2]-'0')*10 + int(d[3]-'0')
	switch {
	case d[0] == '4':
		return n == 16 || n == 19
	case 51 <= p2 && p2 <= 55, 2221 <= p4 && p4 <= 2720:
		return n == 16
	case 2200 <= p4 && p4 <= 2204:
		return n >= 16
	case p2 == 34 || p2 == 37:
		return n == 15
	case 3000 <= p4 && p4 <= 3059, p2 == 36, p2 == 38, p2 == 39:
		return n >= 14
	case 3528 <= p4 && p4 <= 3589:
		return n >= 16
	case p2 == 50, 56 <= p2 && p2 <= 69:
		return true
	}
	return false
}

func luhn(d string) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// IBANs.
//
// An IBAN is a country code with an IBAN registry length, two check
// digits and the rest of that length in letters and digits, written
// together or in groups of four ("GB82 WEST 1234 5698 7654 32"), in either
// case, that passes the ISO 7064 mod-97 check. It must not touch a letter,
// digit or underscore on either side. A random identifier of exactly the
// right shape passes the checksum one time in 97; an IBAN of a country the
// table does not know is missed.

const minIBANLen = 15 // Norway

// ibanLengths is the IBAN registry (SWIFT, 2024): country → length.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
	"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
	"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
	"GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
	"JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
	"MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
	"NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
	"SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// hasIBAN reports whether s contains an IBAN.
func hasIBAN(s string) bool {
	for i := 0; i+minIBANLen <= len(s); i++ {
		if !isLetter(s[i]) || !isLetter(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) || i > 0 && isWord(s[i-1]) {
			continue
		}
		cc := [2]byte{s[i] &^ 0x20, s[i+1] &^ 0x20}
		n, ok := ibanLengths[string(cc[:])]
		if !ok {
			continue
		}
		var buf [34]byte
		b, j := buf[:0], i
	collect:
		for j < len(s) && len(b) < n {
			switch c := s[j]; {
			case isLetter(c):
				b = append(b, c&^0x20)
			case isDigit(c):
				b = append(b, c)
			case c == ' ' && len(b)%4 == 0 && j+1 < len(s) && isAlnum(s[j+1]):
			default:
				break collect
			}
			j++
		}
		if len(b) == n && (j == len(s) || !isWord(s[j])) && mod97(b) == 1 {
			return true
		}
	}
	return false
}

// mod97 computes the ISO 7064 MOD 97-10 remainder of an upper-case IBAN:
// the first four characters moved to the end, letters as 10–35.
func mod97(b []byte) int {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A'+10)) % 97
		}
	}
	for _, c := range b[4:] {
		add(c)
	}
	for _, c := range b[:4] {
		add(c)
	}
	return r
}

// Phone numbers.
//
// International form, anywhere in a string (hasE164): "+", a first digit
// 1–9, and 8 to 15 digits in all, grouped by spaces, dashes, dots or
// parentheses ("+44 (0)20 7946 0958"). The "+" must not follow a letter
// or digit (so "1+12345678" and base64 are not phones) and the digits must
// not run into a letter or digit. A signed amount ("+1234567.89") is not
// a phone.
//
// National forms, only when the whole value is the number (isPhone),
// because inside free text they cannot be told from dates, amounts and
// lists of numbers:
//   - "00" and a country code: "0044 20 7946 0958", 8–15 digits after 00;
//   - a trunk "0" and 9–10 more digits written together: "0612345678";
//   - 9 to 15 digits in 2 to 6 groups separated by spaces, dashes, dots,
//     slashes or parentheses: "020 7946 0958", "(555) 010-4477",
//     "06 12 34 56 78".
//
// What passes: digits written together without "+" or a trunk "0" (epoch
// milliseconds, numeric ids, "15550100199" too: a bare number cannot be
// told from an id, so that one is left to the property-name rule);
// decimal and thousands-separated amounts ("1500.00", "1,234,567.89",
// "0.00012345"); dotted versions whose groups are not 2–4 digits
// ("10.0.19045.2965"); IPv4 addresses; dates (at most 8 digits, or
// yyyy-mm-… with more). What is refused although it is no phone: a
// space-grouped amount without decimals ("1 234 567 890"), a zero-padded
// 10- or 11-digit id with a single leading zero, and other national-looking
// digit groups such as "123-45-6789" (a US SSN, PII all the same).

const (
	minE164Digits = 8
	maxE164Digits = 15
)

func isPhoneSep(c byte) bool {
	return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '/'
}

// hasE164 reports whether s contains a "+"-prefixed international number.
func hasE164(s string) bool {
	for i := 0; i+minE164Digits < len(s); i++ {
		if s[i] != '+' || i > 0 && (isAlnum(s[i-1]) || s[i-1] == '+') {
			continue
		}
		j := i + 1
		if s[j] == '(' {
			j++
		}
		if j >= len(s) || s[j] < '1' || s[j] > '9' {
			continue
		}
		// Digits and single separators; at most "(" or ")" next to another.
		digits, end, seps := 0, j, 0
		for j < len(s) {
			c := s[j]
			if isDigit(c) {
				digits++
				j++
				end, seps = j, 0
				continue
			}
			if c != '/' && isPhoneSep(c) && seps < 2 {
				seps++
				j++
				continue
			}
			break
		}
		if end < len(s) && isAlnum(s[end]) || digits < minE164Digits || digits > maxE164Digits {
			continue
		}
		if !isAmount(s[i+1 : end]) {
			return true
		}
	}
	return false
}

// isPhone reports whether the whole of s, ASCII whitespace trimmed, is a
// phone number in one of the forms above.
func isPhone(s string) bool {
	s = strings.Trim(s, " \t\n\r\v\f")
	if len(s) < 9 || len(s) > 32 {
		return false
	}
	if s[0] == '+' {
		return hasE164(s)
	}
	var groups [8]int
	n, digits, seps, dotsOnly := 0, 0, 0, true
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case isDigit(c):
			g := i
			for i < len(s) && isDigit(s[i]) {
				i++
			}
			if n == len(groups) {
				return false
			}
			groups[n] = i - g
			n++
			digits += i - g
			continue
		case isPhoneSep(c):
			seps++
			if c != '.' {
				dotsOnly = false
			}
		default:
			return false
		}
		i++
	}
	if digits < 9 || digits > maxE164Digits+2 {
		return false
	}
	if seps == 0 {
		// Written together: only "00" + country code, or a trunk 0.
		switch {
		case s[0] == '0' && s[1] == '0':
			return s[2] != '0' && digits-2 >= minE164Digits && digits-2 <= maxE164Digits
		case s[0] == '0':
			return s[1] != '0' && (digits == 10 || digits == 11)
		}
		return false
	}
	if strings.HasPrefix(s, "00") {
		return s[2] != '0' && digits-2 >= minE164Digits && digits-2 <= maxE164Digits && !isAmount(s)
	}
	if digits > maxE164Digits || n < 2 || n > 6 || !isDigit(s[len(s)-1]) {
		return false
	}
	if !isDigit(s[0]) && s[0] != '(' || isAmount(s) || isIPv4(s) || isDateLike(s, groups[:n]) {
		return false
	}
	for i, g := range groups[:n] {
		if g > 8 || i > 0 && g < 2 || dotsOnly && (g < 2 || g > 4) {
			return false
		}
	}
	return !dotsOnly || n >= 3
}

// isAmount reports whether s, digits and separators, reads as a decimal
// amount: one "." or "," (any number of decimals), or thousands grouped by
// ",", ".", "'" — or by spaces when a decimal part follows — with an
// optional decimal part after the other mark.
func isAmount(s string) bool {
	var seps [8]byte
	var groups [9]int
	n := 0
	g := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			g++
			continue
		}
		if g == 0 || n == len(seps) {
			return false // a leading, doubled or trailing separator
		}
		seps[n], groups[n] = s[i], g
		n++
		g = 0
	}
	if g == 0 || n == 0 {
		return false
	}
	groups[n] = g
	last := seps[n-1]
	if n == 1 {
		return last == '.' || last == ','
	}
	thousands := seps[:n]
	decimal := (last == '.' || last == ',') && last != seps[0]
	if decimal {
		thousands = seps[:n-1]
	}
	t := thousands[0]
	if t != ',' && t != '.' && t != '\'' && !(t == ' ' && decimal) {
		return false
	}
	if groups[0] > 3 {
		return false
	}
	for i, c := range thousands {
		if c != t || groups[i+1] != 3 {
			return false
		}
	}
	return true
}

// isIPv4 reports whether s is a dotted-quad IPv4 address.
func isIPv4(s string) bool {
	parts := 0
	v, d := 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if d == 0 || d > 3 || v > 255 {
				return false
			}
			parts++
			v, d = 0, 0
			continue
		}
		if !isDigit(s[i]) {
			return false
		}
		v = v*10 + int(s[i]-'0')
		d++
	}
	return parts == 4
}

// isDateLike reports whether s starts with a year 1900–2099 and a month,
// as in "2024-10-15-0001": an id built on a date, not a phone number.
func isDateLike(s string, groups []int) bool {
	if len(groups) < 2 || groups[0] != 4 || groups[1] != 2 {
		return false
	}
	y := s[:2]
	if y != "19" && y != "20" {
		return false
	}
	m := s[5:7]
	return m >= "01" && m <= "12"
}
