package vault

import (
	"context"
	"encoding/base32"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is the kind of value a token stands for.
type Kind string

const (
	KindEmail    Kind = "email"
	KindPhone    Kind = "phone"
	KindTelegram Kind = "tg"
)

// Token grammar: tok_<kind>_v<N>_<32 characters of unpadded lower-case
// base32>, 20 bytes of HMAC-SHA256(token key N, kind ‖ 0x00 ‖ normalised
// value). The version is pinned by configuration, never "latest", so that
// rotating the token key is a planned re-tokenisation.
const (
	tokenPrefix  = "tok_"
	tokenMACLen  = 20
	tokenMACChar = 32 // base32 of 20 bytes, exactly, with no padding
	maxVersion   = 1<<31 - 1
)

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	return k == KindEmail || k == KindPhone || k == KindTelegram
}

// FormatToken formats a token from the MAC of its value. It uses the first
// 20 bytes of mac and panics if mac is shorter, or if kind or version are
// out of range: those are programming errors.
func FormatToken(kind Kind, version int, mac []byte) string {
	if !kind.Valid() || version < 1 || version > maxVersion || len(mac) < tokenMACLen {
		panic("vault: FormatToken: bad kind, version or MAC length")
	}
	return tokenPrefix + string(kind) + "_v" + strconv.Itoa(version) + "_" + lowerBase32.EncodeToString(mac[:tokenMACLen])
}

// ParseToken checks s against the token grammar and returns its kind and
// key version. Errors match ErrInvalid.
func ParseToken(s string) (Kind, int, error) {
	bad := func(why string) (Kind, int, error) {
		return "", 0, fmt.Errorf("%w: token: %s", ErrInvalid, why)
	}
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return bad("missing tok_ prefix")
	}
	k, rest, ok := strings.Cut(rest, "_")
	kind := Kind(k)
	if !ok || !kind.Valid() {
		return bad("unknown kind")
	}
	v, mac, ok := strings.Cut(rest, "_")
	if !ok || len(v) < 2 || v[0] != 'v' {
		return bad("missing version")
	}
	v = v[1:]
	if len(v) > 10 || v[0] == '0' || !allASCII(v, isDigit) {
		return bad("malformed version")
	}
	version, err := strconv.Atoi(v)
	if err != nil || version < 1 || version > maxVersion {
		return bad("malformed version")
	}
	if len(mac) != tokenMACChar || !allASCII(mac, isBase32) {
		return bad("malformed MAC")
	}
	return kind, version, nil
}

// RecordTokens returns the tokens of the addresses rec holds (email, phone,
// Telegram chat id), by kind, under the tenant's token key of the given
// version: what a store indexes the record under.
func RecordTokens(ctx context.Context, kp KeyProvider, tenant string, version int, rec Record) (map[Kind]string, error) {
	tokens := map[Kind]string{}
	for _, f := range [...]struct {
		kind  Kind
		value string
	}{
		{KindEmail, rec.Email}, {KindPhone, rec.Phone}, {KindTelegram, rec.TelegramChatID},
	} {
		if f.value == "" {
			continue
		}
		tok, err := Tokenize(ctx, kp, tenant, version, f.kind, f.value)
		if err != nil {
			return nil, err
		}
		tokens[f.kind] = tok
	}
	return tokens, nil
}

// Tokenize normalises value and returns its token under the tenant's token
// key of the given version. Stores implement Store.Tokenize with it, so
// every backend mints the same tokens from the same keys.
func Tokenize(ctx context.Context, kp KeyProvider, tenant string, version int, kind Kind, value string) (string, error) {
	norm, err := Normalize(kind, value)
	if err != nil {
		return "", err
	}
	if version < 1 || version > maxVersion {
		return "", fmt.Errorf("%w: token version %d", ErrInvalid, version)
	}
	msg := make([]byte, 0, len(kind)+1+len(norm))
	msg = append(msg, kind...)
	msg = append(msg, 0)
	msg = append(msg, norm...)
	mac, err := kp.TokenMAC(ctx, tenant, version, msg)
	clear(msg)
	if err != nil {
		return "", fmt.Errorf("token mac: %w", err)
	}
	if len(mac) < tokenMACLen {
		return "", fmt.Errorf("token mac: provider returned %d bytes", len(mac))
	}
	return FormatToken(kind, version, mac), nil
}

// Normalize returns the normal form of a value of the given kind.
func Normalize(kind Kind, value string) (string, error) {
	switch kind {
	case KindEmail:
		return NormalizeEmail(value)
	case KindPhone:
		return NormalizePhone(value)
	case KindTelegram:
		return NormalizeTelegramChatID(value)
	}
	return "", fmt.Errorf("%w: unknown kind", ErrInvalid)
}

// The normalisation rules below are the wire rules of docs/protocol.md
// §11.2, step for step: a second implementation must derive the same token
// from the same input, so they use no Unicode tables (case mapping and
// "is space" differ between libraries and Unicode versions), they rewrite
// nothing but ASCII, and where two spellings could be made equal only by a
// canonicalisation (a chat id with leading zeros) the value is rejected
// instead: a rejection is deterministic. There is no Unicode normalisation
// either: "é" as U+00E9 and as "e" U+0301 are different addresses with
// different tokens.

// NormalizeEmail returns the normal form of an email address
// (docs/protocol.md §11.2):
//
//  1. trim ASCII whitespace (HT, LF, VT, FF, CR, SP) from both ends;
//  2. at most 254 bytes;
//  3. valid UTF-8;
//  4. no forbidden code point: C0 controls, SP, DEL, C1 controls, the
//     other Unicode White_Space characters (listed in isForbiddenInEmail),
//     or one of the specials "(),:;<>[\] that only quoted local parts
//     and domain literals may hold, so that a stored address can never
//     turn into two header addresses;
//  5. exactly one '@';
//  6. a local part of 1 to 64 bytes;
//  7. a domain of at least two non-empty dot-separated labels;
//  8. lower-case ASCII A-Z; every other character is kept as it is.
//
// Errors match ErrInvalid and never quote the value.
func NormalizeEmail(s string) (string, error) {
	bad := fmt.Errorf("%w: not an email address", ErrInvalid)
	s = strings.Trim(s, asciiSpace)
	if len(s) > maxEmailLen || !utf8.ValidString(s) {
		return "", bad
	}
	for _, c := range s {
		if isForbiddenInEmail(c) {
			return "", bad
		}
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || strings.Contains(domain, "@") || local == "" || len(local) > maxLocalLen {
		return "", bad
	}
	if !strings.Contains(domain, ".") {
		return "", bad
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" {
			return "", bad
		}
	}
	return lowerASCII(s), nil
}

const (
	asciiSpace    = " \t\n\v\f\r"
	emailSpecials = `"(),:;<>[\]`
	maxEmailLen   = 254
	maxLocalLen   = 64
	maxPhoneLen   = 64 // before separators are removed
)

// isForbiddenInEmail reports whether c may not appear in an email address:
// U+0000-U+0020, U+007F-U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029,
// U+202F, U+205F, U+3000 (C0 and C1 controls, DEL, and every character with
// the Unicode White_Space property), and the ASCII specials "(),:;<>[\].
// The list is spelled out, not taken from package unicode, so that it does
// not move with the Unicode version.
func isForbiddenInEmail(c rune) bool {
	switch {
	case c <= 0x20, 0x7f <= c && c <= 0xa0, c == 0x1680, 0x2000 <= c && c <= 0x200a,
		c == 0x2028, c == 0x2029, c == 0x202f, c == 0x205f, c == 0x3000:
		return true
	}
	return c < utf8.RuneSelf && strings.ContainsRune(emailSpecials, c)
}

// lowerASCII maps A-Z to a-z and leaves every other byte alone.
func lowerASCII(s string) string {
	i := strings.IndexFunc(s, func(c rune) bool { return 'A' <= c && c <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

// NormalizePhone returns a number in E.164 (docs/protocol.md §11.2): ASCII
// whitespace trimmed from both ends, at most 64 bytes, every space, '-',
// '.', '(' and ')' removed, a leading "00" replaced by "+", then exactly
// ^\+[1-9][0-9]{7,14}$. There is no default country. Errors match
// ErrInvalid.
func NormalizePhone(s string) (string, error) {
	bad := fmt.Errorf("%w: not an E.164 phone number", ErrInvalid)
	s = strings.Trim(s, asciiSpace)
	if len(s) > maxPhoneLen {
		return "", bad
	}
	b := make([]byte, 0, 16)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '-', '.', '(', ')':
		default:
			b = append(b, c)
		}
	}
	if len(b) >= 2 && b[0] == '0' && b[1] == '0' {
		b = append([]byte{'+'}, b[2:]...)
	}
	if len(b) < 1+8 || len(b) > 1+15 || b[0] != '+' || b[1] < '1' || b[1] > '9' || !allASCII(string(b[2:]), isDigit) {
		return "", bad
	}
	return string(b), nil
}

// NormalizeTelegramChatID checks a Telegram chat id (docs/protocol.md
// §11.2): ASCII whitespace trimmed from both ends, then exactly
// ^-?[1-9][0-9]{0,18}$ and within the int64 range. It rewrites nothing
// else: "0042", "+42" and "-0" are invalid, not "42" and "0", so that no
// implementation has to agree with this one on a canonical form. Errors
// match ErrInvalid.
func NormalizeTelegramChatID(s string) (string, error) {
	bad := fmt.Errorf("%w: not a Telegram chat id", ErrInvalid)
	s = strings.Trim(s, asciiSpace)
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || len(digits) > 19 || digits[0] == '0' || !allASCII(digits, isDigit) {
		return "", bad
	}
	if _, err := strconv.ParseInt(s, 10, 64); err != nil {
		return "", bad
	}
	return s, nil
}

// NewPseudonym returns a fresh pseudonym: 16 bytes from rand in unpadded
// lower-case base32. It links log lines to a subject only while the sealed
// record that holds it exists.
func NewPseudonym(rand io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("pseudonym: %w", err)
	}
	return lowerBase32.EncodeToString(b[:]), nil
}
