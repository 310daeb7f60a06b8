package vault_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/blindpost/blindpost/vault"
)

type normCase struct {
	Kind vault.Kind `json:"kind"`
	In   string     `json:"in"`
	Want string     `json:"want"`
	Note string     `json:"note"`
}

func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func TestNormalizationMatchesTable(t *testing.T) {
	var cases []normCase
	loadJSON(t, "normalize.json", &cases)
	for _, c := range cases {
		got, err := vault.Normalize(c.Kind, c.In)
		if c.Want == "" {
			if err == nil {
				t.Errorf("%s %q (%s): accepted as %q, want rejection", c.Kind, c.In, c.Note, got)
			} else if !errors.Is(err, vault.ErrInvalid) {
				t.Errorf("%s %q: error %v does not match ErrInvalid", c.Kind, c.In, err)
			}
			continue
		}
		if err != nil || got != c.Want {
			t.Errorf("%s %q (%s) = %q, %v; want %q", c.Kind, c.In, c.Note, got, err, c.Want)
		}
	}
}

func TestNormalizationIsIdempotent(t *testing.T) {
	var cases []normCase
	loadJSON(t, "normalize.json", &cases)
	for _, c := range cases {
		if c.Want == "" {
			continue
		}
		again, err := vault.Normalize(c.Kind, c.Want)
		if err != nil || again != c.Want {
			t.Errorf("%s: normalising %q again = %q, %v", c.Kind, c.Want, again, err)
		}
	}
}

func TestNormalizationErrorsNeverQuoteTheValue(t *testing.T) {
	var cases []normCase
	loadJSON(t, "normalize.json", &cases)
	for _, c := range cases {
		_, err := vault.Normalize(c.Kind, c.In)
		if err == nil || len(strings.TrimSpace(c.In)) < 3 {
			continue
		}
		if msg := err.Error(); strings.Contains(msg, strings.TrimSpace(c.In)) {
			t.Errorf("error %q quotes the value", msg)
		}
	}
}

// TestNormalizationRejectsInvalidUTF8 covers what normalize.json cannot
// hold: JSON strings are Unicode, so a decoder would replace these bytes.
func TestNormalizationRejectsInvalidUTF8(t *testing.T) {
	for name, in := range map[string]string{
		"lone continuation byte": "alice\x80@example.com",
		"truncated sequence":     "alice\xc3@example.com",
		"overlong slash":         "alice\xc0\xaf@example.com",
		"encoded surrogate":      "alice\xed\xa0\x80@example.com",
		"0xff":                   "\xffalice@example.com",
	} {
		if got, err := vault.NormalizeEmail(in); !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("%s: NormalizeEmail = %q, %v; want ErrInvalid", name, got, err)
		}
	}
}

// TestNormalizationMatchesTheSpecModel runs every case of normalize.json
// through specNormalize, the test's own transcription of docs/protocol.md
// §11.2, so that the table, the model and the code agree with each other;
// FuzzNormalize then compares the model and the code on arbitrary input.
func TestNormalizationMatchesTheSpecModel(t *testing.T) {
	var cases []normCase
	loadJSON(t, "normalize.json", &cases)
	for _, c := range cases {
		got, ok := specNormalize(c.Kind, c.In)
		if !ok {
			got = ""
		}
		if got != c.Want {
			t.Errorf("spec model: %s %q (%s) = %q, %v; table wants %q", c.Kind, c.In, c.Note, got, ok, c.Want)
		}
	}
}

// TestTokenVectorsCoverTheNormalizationTable proves that tokens.json holds a
// token, under key versions 1 and 2, for exactly the values normalize.json
// accepts: tokens.py generates one from the other, and a hand edit of
// either file fails here until both agree again.
func TestTokenVectorsCoverTheNormalizationTable(t *testing.T) {
	var cases []normCase
	loadJSON(t, "normalize.json", &cases)
	var doc struct {
		Vectors []struct {
			Kind    vault.Kind `json:"kind"`
			Version int        `json:"version"`
			Value   string     `json:"value"`
		} `json:"vectors"`
	}
	loadJSON(t, "tokens.json", &doc)
	type key struct {
		kind    vault.Kind
		version int
		value   string
	}
	want := map[key]bool{}
	for _, c := range cases {
		if c.Want != "" {
			want[key{c.Kind, 1, c.In}] = true
			want[key{c.Kind, 2, c.In}] = true
		}
	}
	got := map[key]bool{}
	for _, v := range doc.Vectors {
		k := key{v.Kind, v.Version, v.Value}
		if got[k] {
			t.Errorf("tokens.json: duplicate vector %s v%d %q", v.Kind, v.Version, v.Value)
		}
		got[k] = true
		if !want[k] {
			t.Errorf("tokens.json: %s v%d %q is not an accepted case of normalize.json", v.Kind, v.Version, v.Value)
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("tokens.json: no vector for %s v%d %q of normalize.json", k.kind, k.version, k.value)
		}
	}
}

// keyedMAC is a KeyProvider whose token key is the same fixed key for every
// tenant and version; enough to check the token grammar against vectors.
type keyedMAC []byte

func (k keyedMAC) Wrap(context.Context, string, []byte, []byte) ([]byte, error) {
	return nil, errors.New("not implemented")
}
func (k keyedMAC) Unwrap(context.Context, string, []byte, []byte) ([]byte, error) {
	return nil, errors.New("not implemented")
}
func (k keyedMAC) TokenMAC(_ context.Context, _ string, _ int, msg []byte) ([]byte, error) {
	m := hmac.New(sha256.New, k)
	m.Write(msg)
	return m.Sum(nil), nil
}
func (k keyedMAC) TokenVersion() int { return 1 }

func TestTokensMatchVectors(t *testing.T) {
	var doc struct {
		KeyHex  string `json:"key_hex"`
		Vectors []struct {
			Kind    vault.Kind `json:"kind"`
			Version int        `json:"version"`
			Value   string     `json:"value"`
			Token   string     `json:"token"`
		} `json:"vectors"`
	}
	loadJSON(t, "tokens.json", &doc)
	key, err := hex.DecodeString(doc.KeyHex)
	if err != nil || len(doc.Vectors) == 0 {
		t.Fatalf("bad vector file: %v", err)
	}
	for _, v := range doc.Vectors {
		got, err := vault.Tokenize(context.Background(), keyedMAC(key), "tenant-a", v.Version, v.Kind, v.Value)
		if err != nil || got != v.Token {
			t.Errorf("Tokenize(%s, v%d, %q) = %q, %v; want %q", v.Kind, v.Version, v.Value, got, err, v.Token)
		}
		kind, version, err := vault.ParseToken(got)
		if err != nil || kind != v.Kind || version != v.Version {
			t.Errorf("ParseToken(%q) = %s, %d, %v", got, kind, version, err)
		}
	}
}

func TestTokenOfEquivalentSpellingsIsEqual(t *testing.T) {
	kp := keyedMAC("test-only key")
	ctx := context.Background()
	for _, pair := range [][3]string{
		{"email", "alice@example.com", " ALICE@Example.com "},
		{"phone", "+15550100001", "001 (555) 010-0001"},
		{"tg", "-1001234567890", " -1001234567890\t"},
	} {
		a, err1 := vault.Tokenize(ctx, kp, "t", 1, vault.Kind(pair[0]), pair[1])
		b, err2 := vault.Tokenize(ctx, kp, "t", 1, vault.Kind(pair[0]), pair[2])
		if err1 != nil || err2 != nil || a != b {
			t.Errorf("%s: %q → %q, %q → %q (%v, %v)", pair[0], pair[1], a, pair[2], b, err1, err2)
		}
	}
}

func TestTokenKindsAreSeparated(t *testing.T) {
	// "42" is a valid chat id; the same digits under another kind must not
	// collide, which the kind ‖ 0x00 prefix guarantees.
	kp := keyedMAC("test-only key")
	a, _ := vault.Tokenize(context.Background(), kp, "t", 1, vault.KindTelegram, "15550100001")
	b, _ := vault.Tokenize(context.Background(), kp, "t", 1, vault.KindPhone, "+15550100001")
	if a[len(a)-32:] == b[len(b)-32:] {
		t.Fatal("phone and tg tokens share a MAC")
	}
}

func TestParseTokenRejectsMalformed(t *testing.T) {
	good := vault.FormatToken(vault.KindEmail, 1, make([]byte, 20))
	if _, _, err := vault.ParseToken(good); err != nil {
		t.Fatalf("ParseToken(%q): %v", good, err)
	}
	mac := good[len(good)-32:]
	for name, s := range map[string]string{
		"empty":             "",
		"no prefix":         "email_v1_" + mac,
		"upper-case prefix": "TOK_email_v1_" + mac,
		"unknown kind":      "tok_fax_v1_" + mac,
		"upper-case kind":   "tok_EMAIL_v1_" + mac,
		"version zero":      "tok_email_v0_" + mac,
		"leading zero":      "tok_email_v01_" + mac,
		"negative version":  "tok_email_v-1_" + mac,
		"no version":        "tok_email_v_" + mac,
		"huge version":      "tok_email_v99999999999_" + mac,
		"version > 2^31-1":  "tok_email_v2147483648_" + mac,
		"short MAC":         "tok_email_v1_" + mac[1:],
		"long MAC":          "tok_email_v1_" + mac + "a",
		"upper-case MAC":    "tok_email_v1_" + strings.ToUpper(mac),
		"padding":           "tok_email_v1_" + mac[:31] + "=",
		"non-base32 digit":  "tok_email_v1_" + mac[:31] + "1",
		"trailing newline":  good + "\n",
		"extra part":        "tok_email_v1_x_" + mac,
	} {
		if _, _, err := vault.ParseToken(s); !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("%s: ParseToken(%q) err = %v, want ErrInvalid", name, s, err)
		}
	}
}

func TestFormatTokenUsesFirst20Bytes(t *testing.T) {
	mac := make([]byte, 32)
	for i := range mac {
		mac[i] = byte(i)
	}
	tok := vault.FormatToken(vault.KindPhone, 3, mac)
	want := "tok_phone_v3_" + strings.ToLower(base32.StdEncoding.EncodeToString(mac[:20]))
	if tok != want {
		t.Fatalf("FormatToken = %q, want %q", tok, want)
	}
}

func TestPseudonymsAreWellFormedAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p, err := vault.NewPseudonym(rand.Reader)
		if err != nil || len(p) != vault.PseudonymLen || seen[p] {
			t.Fatalf("pseudonym %q, %v", p, err)
		}
		if err := (vault.Record{Pseudonym: p}).Validate(); err != nil {
			t.Fatalf("pseudonym %q does not validate: %v", p, err)
		}
		seen[p] = true
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("tok_email_v1_zco6mxn34idqef5e6tu773c7qxh2cvst")
	f.Add("tok_tg_v2147483647_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	f.Add("tok_phone_v1_")
	f.Fuzz(func(t *testing.T, s string) {
		kind, version, err := vault.ParseToken(s)
		if err != nil {
			if !errors.Is(err, vault.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		// Every accepted token is exactly what FormatToken prints for its
		// parts: the grammar has one spelling per token.
		mac, derr := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(s[strings.LastIndexByte(s, '_')+1:]))
		if derr != nil {
			t.Fatalf("accepted %q with undecodable MAC: %v", s, derr)
		}
		if again := vault.FormatToken(kind, version, mac); again != s {
			t.Fatalf("ParseToken accepted %q, FormatToken gives %q", s, again)
		}
	})
}

func FuzzNormalize(f *testing.F) {
	var cases []normCase
	loadJSON(f, "normalize.json", &cases)
	for _, c := range cases {
		f.Add(string(c.Kind), c.In)
	}
	f.Fuzz(func(t *testing.T, kind, in string) {
		out, err := vault.Normalize(vault.Kind(kind), in)
		if err != nil {
			if !errors.Is(err, vault.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			if len(in) >= 4 && strings.Contains(err.Error(), in) {
				t.Fatalf("error quotes the value")
			}
			return
		}
		again, err := vault.Normalize(vault.Kind(kind), out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q → %q → %q, %v", in, out, again, err)
		}
	})
}

// FuzzNormalizeAgreesWithTheSpec compares the code with specNormalize, a
// separate transcription of docs/protocol.md §11.2, on arbitrary input.
func FuzzNormalizeAgreesWithTheSpec(f *testing.F) {
	var cases []normCase
	loadJSON(f, "normalize.json", &cases)
	for _, c := range cases {
		f.Add(string(c.Kind), c.In)
	}
	f.Fuzz(func(t *testing.T, kind, in string) {
		k := vault.Kind(kind)
		if !k.Valid() {
			return
		}
		got, err := vault.Normalize(k, in)
		want, ok := specNormalize(k, in)
		if (err == nil) != ok || got != want {
			t.Fatalf("%s %q: code gives %q, %v; spec gives %q, %v", kind, in, got, err, want, ok)
		}
	})
}

// specNormalize is docs/protocol.md §11.2 transcribed step by step, apart
// from token.go and in a different style (regular expressions, math/big),
// so that the fuzzer can hold the code to the text.
func specNormalize(kind vault.Kind, s string) (string, bool) {
	s = strings.Trim(s, "\t\n\v\f\r ") // step 1 of every kind
	switch kind {
	case vault.KindEmail:
		if len(s) > 254 || !utf8.ValidString(s) || specEmailForbidden.MatchString(s) || strings.Count(s, "@") != 1 {
			return "", false
		}
		local, domain, _ := strings.Cut(s, "@")
		if len(local) < 1 || len(local) > 64 || !specDomain.MatchString(domain) {
			return "", false
		}
		return strings.Map(func(r rune) rune {
			if 'A' <= r && r <= 'Z' {
				return r + ('a' - 'A')
			}
			return r
		}, s), true
	case vault.KindPhone:
		if len(s) > 64 {
			return "", false
		}
		s = strings.NewReplacer(" ", "", "-", "", ".", "", "(", "", ")", "").Replace(s)
		if rest, ok := strings.CutPrefix(s, "00"); ok {
			s = "+" + rest
		}
		if !specPhone.MatchString(s) {
			return "", false
		}
		return s, true
	case vault.KindTelegram:
		if !specChatID.MatchString(s) {
			return "", false
		}
		if n, ok := new(big.Int).SetString(s, 10); !ok || !n.IsInt64() {
			return "", false
		}
		return s, true
	}
	return "", false
}

var (
	specEmailForbidden = regexp.MustCompile(`[\x00-\x20\x{7f}-\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"(),:;<>\[\\\]]`)
	specDomain         = regexp.MustCompile(`\A[^.]+(\.[^.]+)+\z`)
	specPhone          = regexp.MustCompile(`\A\+[1-9][0-9]{7,14}\z`)
	specChatID         = regexp.MustCompile(`\A-?[1-9][0-9]{0,18}\z`)
)

// The core's PII firewall lets well-formed tokens through, with a grammar
// check of its own (the core may not import vault/). Its vectors must say
// what ParseToken says, so the two never drift apart.
func TestFirewallTokenVectorsAgreeWithParseToken(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "core", "firewall", "testdata", "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []struct {
			In    string `json:"in"`
			Valid bool   `json:"valid"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range f.Vectors {
		_, _, err := vault.ParseToken(v.In)
		if got := err == nil; got != v.Valid {
			t.Errorf("ParseToken(%q) valid = %v, the firewall's vectors say %v", v.In, got, v.Valid)
		}
	}
}
