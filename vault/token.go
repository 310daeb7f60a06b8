package vault

import (
	"context"
	"encoding/base32"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
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

// NormalizeEmail trims ASCII whitespace and lower-cases an address, then
// checks it: exactly one '@', a non-empty local part of at most 64 bytes, a
// domain of non-empty dot-separated labels with at least one dot, at most
// 254 bytes in all, valid UTF-8 without control characters, spaces, or the
// specials that only quoted local parts and domain literals may hold
// (so that a stored address can never turn into two header addresses).
// Errors match ErrInvalid and never quote the value.
func NormalizeEmail(s string) (string, error) {
	bad := fmt.Errorf("%w: not an email address", ErrInvalid)
	s = strings.Trim(s, asciiSpace)
	if len(s) > 4*maxEmailLen || !utf8.ValidString(s) {
		return "", bad
	}
	for _, c := range s {
		if unicode.IsControl(c) || unicode.IsSpace(c) || strings.ContainsRune(emailSpecials, c) {
			return "", bad
		}
	}
	s = strings.ToLower(s)
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || len(local) > 64 || strings.Contains(domain, "@") || len(s) > maxEmailLen {
		return "", bad
	}
	if !strings.Contains(domain, ".") {
		return "", bad
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" {
			return "", bad
		}
	}
	return s, nil
}

const (
	asciiSpace    = " \t\n\v\f\r"
	emailSpecials = `"(),:;<>[\]`
	maxEmailLen   = 254
)

// NormalizePhone returns a number in E.164: ASCII whitespace trimmed,
// spaces, '-', '.', '(' and ')' removed, a leading "00" replaced by "+",
// then exactly ^\+[1-9][0-9]{7,14}$. Errors match ErrInvalid.
func NormalizePhone(s string) (string, error) {
	bad := fmt.Errorf("%w: not an E.164 phone number", ErrInvalid)
	s = strings.Trim(s, asciiSpace)
	if len(s) > 64 {
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

// NormalizeTelegramChatID returns a Telegram chat id in canonical decimal:
// an optional '-' and digits, no leading zeros, fitting in an int64, not
// zero. Errors match ErrInvalid.
func NormalizeTelegramChatID(s string) (string, error) {
	bad := fmt.Errorf("%w: not a Telegram chat id", ErrInvalid)
	s = strings.Trim(s, asciiSpace)
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || len(digits) > 19 || !allASCII(digits, isDigit) {
		return "", bad
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return "", bad
	}
	return strconv.FormatInt(n, 10), nil
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
