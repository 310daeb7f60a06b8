package tokenmap_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/tokenmap"
)

// tok makes a well-formed token whose MAC is c repeated.
func tok(kind string, v int, c byte) string {
	return fmt.Sprintf("tok_%s_v%d_%s", kind, v, strings.Repeat(string(c), 32))
}

func pair(tenant, kind string, c byte) tokenmap.Pair {
	return tokenmap.Pair{Tenant: tenant, Kind: kind, Old: tok(kind, 1, c), New: tok(kind, 2, c)}
}

func signingKey(t testing.TB) *envelope.SigningKey {
	t.Helper()
	k, err := envelope.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// write writes pairs and signs them with key, as the gateway does.
func write(t testing.TB, key *envelope.SigningKey, pairs ...tokenmap.Pair) (data, sig []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := tokenmap.NewWriter(&buf)
	for _, p := range pairs {
		if err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.Len() != len(pairs) {
		t.Fatalf("Len = %d, want %d", w.Len(), len(pairs))
	}
	sum := sha256.Sum256(buf.Bytes())
	if !bytes.Equal(w.Sum(), sum[:]) {
		t.Fatal("Sum is not the SHA-256 of what was written")
	}
	sig, err := tokenmap.Sign(key, "pairs.ndjson", w.Sum())
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sig
}

func TestRoundTrip(t *testing.T) {
	key := signingKey(t)
	other := signingKey(t)
	want := []tokenmap.Pair{pair("acme", "email", 'a'), pair("acme", "phone", 'b'), pair("acme", "tg", 'c'),
		{Tenant: "acme", Kind: "email", Old: tok("email", 3, 'd'), New: tok("email", 10, 'e')}}
	data, sig := write(t, key, want...)
	if got := strings.Count(string(data), "\n"); got != len(want) {
		t.Fatalf("%d lines, want %d", got, len(want))
	}
	// A pinned key list in any order, holding keys that did not sign.
	f, err := tokenmap.Open(data, sig, []*envelope.VerifyingKey{other.Public(), key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if f.KeyID != key.ID {
		t.Errorf("KeyID = %s, want %s", f.KeyID, key.ID)
	}
	if len(f.Pairs) != len(want) {
		t.Fatalf("%d pairs, want %d", len(f.Pairs), len(want))
	}
	for i := range want {
		if f.Pairs[i] != want[i] {
			t.Errorf("pair %d = %+v, want %+v", i, f.Pairs[i], want[i])
		}
	}
	m, err := f.Map("acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range want {
		if m[p.Old] != p.New {
			t.Errorf("Map[%s] = %q, want %s", p.Old, m[p.Old], p.New)
		}
	}
	if _, err := f.Map("beta"); !errors.Is(err, tokenmap.ErrTenant) {
		t.Errorf("Map of another tenant: %v, want ErrTenant", err)
	}

	// An empty file (a tenant with no addresses) is a valid, empty map.
	data, sig = write(t, key)
	if f, err := tokenmap.Open(data, sig, []*envelope.VerifyingKey{key.Public()}); err != nil || len(f.Pairs) != 0 {
		t.Fatalf("empty file: %v, %v", f, err)
	}
}

// The wire format, spelt out: a second implementation must produce and
// check exactly these bytes.
func TestSignatureFileFormat(t *testing.T) {
	key := signingKey(t)
	data, sig := write(t, key, pair("acme", "email", 'a'))
	wantLine := `{"tenant":"acme","kind":"email","old":"` + tok("email", 1, 'a') + `","new":"` + tok("email", 2, 'a') + `"}` + "\n"
	if string(data) != wantLine {
		t.Fatalf("line = %q, want %q", data, wantLine)
	}
	var s map[string]string
	if err := json.Unmarshal(sig, &s); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	hexSum := fmt.Sprintf("%x", sum)
	if s["format"] != "blindpost-token-pairs-sig-v1" || s["file"] != "pairs.ndjson" || s["sha256"] != hexSum || s["kid"] != string(key.ID) || len(s) != 5 {
		t.Fatalf("signature file %s", sig)
	}
	raw, err := base64.StdEncoding.DecodeString(s["signature"])
	if err != nil || !ed25519.Verify(key.Public().Public, []byte("blindpost-token-pairs-v1\n"+hexSum+"\n"), raw) {
		t.Fatalf("the signature is not Ed25519 over the documented message: %v", err)
	}
}

// Any change to the file or its signature, or a key that is not pinned,
// refuses the whole file.
func TestTamperingIsDetected(t *testing.T) {
	key := signingKey(t)
	pinned := []*envelope.VerifyingKey{key.Public()}
	data, sig := write(t, key, pair("acme", "email", 'a'), pair("acme", "phone", 'b'))
	editSig := func(f func(s map[string]any)) []byte {
		var s map[string]any
		if err := json.Unmarshal(sig, &s); err != nil {
			t.Fatal(err)
		}
		f(s)
		b, _ := json.Marshal(s)
		return b
	}
	stranger := signingKey(t)
	_, strangerSig := write(t, stranger, pair("acme", "email", 'a'), pair("acme", "phone", 'b'))
	otherData, otherSig := write(t, key, pair("acme", "email", 'z'))

	for _, tc := range []struct {
		name string
		data []byte
		sig  []byte
		keys []*envelope.VerifyingKey
	}{
		{"a changed new token", bytes.Replace(data, []byte(`"new":"tok_email_v2_a`), []byte(`"new":"tok_email_v2_b`), 1), sig, pinned},
		{"a line dropped", data[:bytes.IndexByte(data, '\n')+1], sig, pinned},
		{"a line added", append(append([]byte{}, data...), otherData...), sig, pinned},
		{"another file's signature", data, otherSig, pinned},
		{"signed by a key that is not pinned", data, strangerSig, pinned},
		{"no pinned key", data, sig, nil},
		{"the pinned key's id on another key's signature", data, editSigOf(t, strangerSig, "kid", string(key.ID)), pinned},
		{"a flipped signature bit", data, editSig(func(s map[string]any) {
			raw, _ := base64.StdEncoding.DecodeString(s["signature"].(string))
			raw[7] ^= 1
			s["signature"] = base64.StdEncoding.EncodeToString(raw)
		}), pinned},
		{"the digest of the changed file", bytes.Replace(data, []byte("acme"), []byte("acmf"), 1), editSig(func(s map[string]any) {
			sum := sha256.Sum256(bytes.Replace(data, []byte("acme"), []byte("acmf"), 1))
			s["sha256"] = fmt.Sprintf("%x", sum)
		}), pinned},
		{"an upper-case digest", data, editSig(func(s map[string]any) { s["sha256"] = strings.ToUpper(s["sha256"].(string)) }), pinned},
		{"another format", data, editSig(func(s map[string]any) { s["format"] = "blindpost-token-pairs-sig-v2" }), pinned},
		{"an extra field", data, editSig(func(s map[string]any) { s["alg"] = "none" }), pinned},
		{"a truncated signature", data, editSig(func(s map[string]any) { s["signature"] = s["signature"].(string)[:20] }), pinned},
		{"not JSON", data, []byte("signature"), pinned},
		{"two objects", data, append(append([]byte{}, sig...), sig...), pinned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := tokenmap.Open(tc.data, tc.sig, tc.keys)
			if !errors.Is(err, tokenmap.ErrSignature) {
				t.Fatalf("Open = %v, %v; want ErrSignature", f, err)
			}
		})
	}
}

func editSigOf(t *testing.T, sig []byte, field, value string) []byte {
	t.Helper()
	var s map[string]any
	if err := json.Unmarshal(sig, &s); err != nil {
		t.Fatal(err)
	}
	s[field] = value
	b, _ := json.Marshal(s)
	return b
}

// A signed file with one bad line is refused whole: the signature proves
// where a file came from, not that it is right.
func TestMalformedLinesRefuseTheFile(t *testing.T) {
	key := signingKey(t)
	good := pair("acme", "email", 'a')
	line := func(p tokenmap.Pair) string {
		b, _ := json.Marshal(p)
		return string(b) + "\n"
	}
	for _, tc := range []struct {
		name, body string
	}{
		{"an empty line", line(good) + "\n"},
		{"no final newline", strings.TrimSuffix(line(good), "\n")},
		{"not JSON", "tenant=acme\n"},
		{"an extra field", strings.Replace(line(good), `{"tenant"`, `{"x":1,"tenant"`, 1)},
		{"a field twice", strings.Replace(line(good), `{"tenant":"acme"`, `{"tenant":"beta","tenant":"acme"`, 1)},
		{"an upper-case key", strings.Replace(line(good), `"tenant"`, `"Tenant"`, 1)},
		{"fields reordered", `{"kind":"email","tenant":"acme","old":"` + good.Old + `","new":"` + good.New + `"}` + "\n"},
		{"spaces", strings.Replace(line(good), `,"kind"`, `, "kind"`, 1)},
		{"CRLF", strings.Replace(line(good), "\n", "\r\n", 1)},
		{"a bad tenant", line(tokenmap.Pair{Tenant: "Acme", Kind: "email", Old: good.Old, New: good.New})},
		{"an unknown kind", line(tokenmap.Pair{Tenant: "acme", Kind: "fax", Old: good.Old, New: good.New})},
		{"old is no token", line(tokenmap.Pair{Tenant: "acme", Kind: "email", Old: "someone@example.com", New: good.New})},
		{"new is no token", line(tokenmap.Pair{Tenant: "acme", Kind: "email", Old: good.Old, New: "tok_email_v2_short"})},
		{"kinds differ", line(tokenmap.Pair{Tenant: "acme", Kind: "email", Old: good.Old, New: tok("phone", 2, 'a')})},
		{"the line's kind differs", line(tokenmap.Pair{Tenant: "acme", Kind: "phone", Old: good.Old, New: good.New})},
		{"same version", line(tokenmap.Pair{Tenant: "acme", Kind: "email", Old: good.Old, New: tok("email", 1, 'b')})},
		{"version goes down", line(tokenmap.Pair{Tenant: "acme", Kind: "email", Old: good.New, New: good.Old})},
		{"an old token twice", line(good) + line(good)},
		{"an old token twice, mapped apart", line(good) + line(tokenmap.Pair{Tenant: "acme", Kind: "email", Old: good.Old, New: tok("email", 2, 'q')})},
		{"a chain", line(good) + line(tokenmap.Pair{Tenant: "acme", Kind: "email", Old: good.New, New: tok("email", 3, 'a')})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum := sha256.Sum256([]byte(tc.body))
			sig, err := tokenmap.Sign(key, "pairs.ndjson", sum[:])
			if err != nil {
				t.Fatal(err)
			}
			f, err := tokenmap.Open([]byte(tc.body), sig, []*envelope.VerifyingKey{key.Public()})
			if !errors.Is(err, tokenmap.ErrMalformed) {
				t.Fatalf("Open = %v, %v; want ErrMalformed", f, err)
			}
			if strings.Contains(err.Error(), "tok_") || strings.Contains(err.Error(), "example.com") {
				t.Errorf("the error quotes a value: %v", err)
			}
		})
	}
}

// The same old token in two tenants is two pairs; a file of several
// tenants maps to none of them alone.
func TestTenants(t *testing.T) {
	key := signingKey(t)
	data, sig := write(t, key, pair("acme", "email", 'a'), pair("beta", "email", 'a'))
	f, err := tokenmap.Open(data, sig, []*envelope.VerifyingKey{key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Tenants(); strings.Join(got, ",") != "acme,beta" {
		t.Errorf("Tenants = %v", got)
	}
	for _, tenant := range []string{"acme", "beta", "gamma"} {
		if _, err := f.Map(tenant); !errors.Is(err, tokenmap.ErrTenant) {
			t.Errorf("Map(%s) of a two-tenant file: %v, want ErrTenant", tenant, err)
		}
	}
}

// The writer refuses what the reader would refuse, so the gateway never
// signs a file the core cannot take.
func TestWriterRefusesMalformedPairs(t *testing.T) {
	w := tokenmap.NewWriter(new(bytes.Buffer))
	for _, p := range []tokenmap.Pair{
		{Tenant: "acme", Kind: "email", Old: tok("email", 2, 'a'), New: tok("email", 1, 'a')},
		{Tenant: "", Kind: "email", Old: tok("email", 1, 'a'), New: tok("email", 2, 'a')},
		{Tenant: "acme", Kind: "email", Old: "x", New: tok("email", 2, 'a')},
	} {
		if err := w.Write(p); !errors.Is(err, tokenmap.ErrMalformed) {
			t.Errorf("Write(%+v) = %v, want ErrMalformed", p, err)
		}
	}
	if _, err := tokenmap.Sign(nil, "f", make([]byte, 32)); err == nil {
		t.Error("Sign with no key succeeded")
	}
}

// ParseToken accepts exactly what vault.ParseToken and the core's
// firewall accept: the shared vectors.
func TestParseTokenAgreesWithTheSharedVectors(t *testing.T) {
	b, err := os.ReadFile("../core/firewall/testdata/tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs struct {
		Vectors []struct {
			In    string `json:"in"`
			Valid bool   `json:"valid"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(b, &vs); err != nil || len(vs.Vectors) < 10 {
		t.Fatalf("vectors: %v (%d)", err, len(vs.Vectors))
	}
	for _, v := range vs.Vectors {
		kind, version := tokenmap.ParseToken(v.In)
		if (kind != "") != v.Valid || (version > 0) != v.Valid {
			t.Errorf("ParseToken(%q) = %q, %d; want valid=%v", v.In, kind, version, v.Valid)
		}
	}
	if k, v := tokenmap.ParseToken(tok("phone", 2147483647, 'x')); k != "phone" || v != 2147483647 {
		t.Errorf("ParseToken = %q, %d", k, v)
	}
}

// Both sides import this package, so it imports neither.
func TestImportsNeitherSide(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/blindpost/blindpost/"
	for _, dep := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(dep, mod)
		if !ok {
			continue
		}
		if rest != "tokenmap" && rest != "envelope" && !strings.HasPrefix(rest, "internal/jcs") {
			t.Errorf("tokenmap depends on %s", dep)
		}
	}
}
