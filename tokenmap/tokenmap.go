// Package tokenmap is the pairs file of a planned re-tokenisation
// (docs/key-rotation.md §5): the map from each old token to its new one,
// which the gateway writes and signs (`blindpost keys rotate token`) and the
// core verifies and applies to what it stores (`blindpost core tokens
// apply`, or its admin API).
//
// It sits on both sides of the trust boundary, so it imports neither: only
// the standard library and envelope's key types. A pairs file holds no PII
// (tokens are opaque), but it links old and new tokens, so it is handled as
// tokens are.
//
// The format, which a second implementation must follow byte for byte:
//
//   - The pairs file is NDJSON: one line per pair, each the compact JSON
//     object {"tenant","kind","old","new"} in that order, as encoding/json
//     writes it, ending in "\n". old and new are well-formed tokens
//     (tok_<kind>_v<N>_<mac>) of the line's kind, and new's key version is
//     greater than old's. Within a tenant an old token appears once, and no
//     new token is also an old one.
//   - The signature file is the JSON object {"format":
//     "blindpost-token-pairs-sig-v1", "file", "sha256", "kid", "signature"}:
//     the pairs file's name (informative), the lower-case hex SHA-256 of its
//     bytes, the envelope.KeyID of the gateway's signing key, and, in
//     standard base64, the Ed25519 signature of the bytes
//     "blindpost-token-pairs-v1\n" ‖ that hex digest ‖ "\n". The prefix keeps
//     a pairs signature from ever reading as one of the other messages the
//     gateway's signing key signs (callbacks, audit checkpoints), and theirs
//     as one of these.
package tokenmap

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"

	"github.com/blindpost/blindpost/envelope"
)

// SigFormat names the signature file's layout.
const SigFormat = "blindpost-token-pairs-sig-v1"

// sigContext starts the message a pairs file's signature covers.
const sigContext = "blindpost-token-pairs-v1\n"

// Errors. Their messages name lines and fields, never a token.
var (
	// ErrSignature: the signature file is malformed, names a key that is
	// not pinned, does not match the pairs file's digest, or does not
	// verify. Nothing of such a file may be used.
	ErrSignature = errors.New("tokenmap: signature")
	// ErrMalformed: a line of the pairs file, or a pair, breaks the format.
	ErrMalformed = errors.New("tokenmap: malformed pairs")
	// ErrTenant: the file holds a pair of another tenant than the one
	// asked for.
	ErrTenant = errors.New("tokenmap: tenant")
)

// Pair is one line of a pairs file: within Tenant, the token Old of an
// address of Kind became New.
type Pair struct {
	Tenant string `json:"tenant"`
	Kind   string `json:"kind"`
	Old    string `json:"old"`
	New    string `json:"new"`
}

// Check reports whether p is a well-formed pair: a tenant id, a known
// kind, and two tokens of that kind whose versions go up.
func (p Pair) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if !ValidTenant(p.Tenant) {
		return bad("tenant: want 1-64 characters of [a-z0-9_-]")
	}
	if !validKind(p.Kind) {
		return bad("kind: want email, phone or tg")
	}
	ok, ov := ParseToken(p.Old)
	nk, nv := ParseToken(p.New)
	switch {
	case ok == "":
		return bad("old: not a token")
	case nk == "":
		return bad("new: not a token")
	case ok != p.Kind || nk != p.Kind:
		return bad("old and new must be tokens of the line's kind %s", p.Kind)
	case nv <= ov:
		return bad("new's key version (%d) must be greater than old's (%d)", nv, ov)
	}
	return nil
}

// ValidTenant reports whether s can name a tenant (a label on the core):
// 1-64 characters of [a-z0-9_-], as both sides' ids.
func ValidTenant(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validKind(k string) bool { return k == "email" || k == "phone" || k == "tg" }

// ParseToken returns the kind and key version of a well-formed token, or
// "" and 0. The grammar is docs/protocol.md §11.1, accepted exactly as
// vault.ParseToken and the core's firewall accept it (the shared vectors
// are core/firewall/testdata/tokens.json): tok_<kind>_v<N>_<mac>, kind
// email, phone or tg; N 1…2147483647 in decimal without a leading zero;
// mac 32 characters of a-z and 2-7.
func ParseToken(s string) (kind string, version int) {
	rest, ok := strings.CutPrefix(s, "tok_")
	if !ok {
		return "", 0
	}
	kind, rest, ok = strings.Cut(rest, "_v")
	if !ok || !validKind(kind) {
		return "", 0
	}
	n := 0
	for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
		n++
	}
	const maxVersion = "2147483647"
	if n == 0 || n > len(maxVersion) || rest[0] == '0' || n == len(maxVersion) && rest[:n] > maxVersion {
		return "", 0
	}
	for _, c := range rest[:n] {
		version = version*10 + int(c-'0')
	}
	mac, ok := strings.CutPrefix(rest[n:], "_")
	if !ok || len(mac) != 32 {
		return "", 0
	}
	for i := 0; i < len(mac); i++ {
		if c := mac[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return "", 0
		}
	}
	return kind, version
}

// Writer writes a pairs file and digests it as it goes.
type Writer struct {
	w    *bufio.Writer
	sum  hash.Hash
	line bytes.Buffer
	enc  *json.Encoder
	n    int
}

// NewWriter returns a Writer of pairs to w. Call Flush when done.
func NewWriter(w io.Writer) *Writer {
	pw := &Writer{w: bufio.NewWriter(w), sum: sha256.New()}
	pw.enc = json.NewEncoder(&pw.line)
	return pw
}

// Write appends one pair, refusing one that is not well-formed: the core
// would refuse the whole file for it.
func (w *Writer) Write(p Pair) error {
	if err := p.Check(); err != nil {
		return fmt.Errorf("pair %d: %w", w.n+1, err)
	}
	w.line.Reset()
	if err := w.enc.Encode(p); err != nil {
		return err
	}
	w.sum.Write(w.line.Bytes())
	if _, err := w.w.Write(w.line.Bytes()); err != nil {
		return err
	}
	w.n++
	return nil
}

// Flush writes what is buffered to the underlying writer.
func (w *Writer) Flush() error { return w.w.Flush() }

// Len is the number of pairs written.
func (w *Writer) Len() int { return w.n }

// Sum is the SHA-256 of every line written so far.
func (w *Writer) Sum() []byte { return w.sum.Sum(nil) }

// Signature is the signature file of a pairs file.
type Signature struct {
	Format    string `json:"format"`
	File      string `json:"file"`
	SHA256    string `json:"sha256"`
	KeyID     string `json:"kid"`
	Signature string `json:"signature"` // standard base64
}

func message(hexSum string) []byte { return []byte(sigContext + hexSum + "\n") }

// Sign returns the signature file, for a pairs file called name whose
// SHA-256 is sum, signed by the gateway's signing key.
func Sign(key *envelope.SigningKey, name string, sum []byte) ([]byte, error) {
	if key == nil || len(key.Private) != ed25519.PrivateKeySize {
		return nil, errors.New("tokenmap: sign: not an Ed25519 signing key")
	}
	if len(sum) != sha256.Size {
		return nil, errors.New("tokenmap: sign: not a SHA-256 digest")
	}
	hexSum := hex.EncodeToString(sum)
	b, err := json.MarshalIndent(Signature{
		Format:    SigFormat,
		File:      name,
		SHA256:    hexSum,
		KeyID:     string(key.ID),
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(key.Private, message(hexSum))),
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Verify checks the signature file sig over the pairs file data with the
// pinned gateway key it names, and returns that key's id.
func Verify(data, sig []byte, keys []*envelope.VerifyingKey) (envelope.KeyID, error) {
	bad := func(why string) (envelope.KeyID, error) {
		return "", fmt.Errorf("%w: %s", ErrSignature, why)
	}
	var s Signature
	dec := json.NewDecoder(bytes.NewReader(sig))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return bad("the signature file is not the JSON object of " + SigFormat)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("trailing data after the signature file's object")
	}
	if s.Format != SigFormat {
		return bad("format: want " + SigFormat)
	}
	i := slices.IndexFunc(keys, func(k *envelope.VerifyingKey) bool { return k != nil && string(k.ID) == s.KeyID })
	if i < 0 {
		return bad("signed by a key that is not among the pinned gateway keys")
	}
	raw, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return bad("signature: want the standard base64 of an Ed25519 signature")
	}
	sum := sha256.Sum256(data)
	if s.SHA256 != hex.EncodeToString(sum[:]) {
		return bad("the pairs file's SHA-256 differs from the signed one")
	}
	k := keys[i]
	if len(k.Public) != ed25519.PublicKeySize || !ed25519.Verify(k.Public, message(s.SHA256), raw) {
		return bad("the signature does not verify")
	}
	return k.ID, nil
}

// Parse reads a pairs file and checks every line: each must be exactly as
// Writer writes it (so that what was signed reads one way only: no
// duplicate or differently cased keys, no extra fields or spaces), and
// each pair well-formed; within a tenant, an old token appears once and no
// new token is also an old one (a chain would rewrite a value twice when
// applied twice). The first bad line fails the whole file.
func Parse(data []byte) ([]Pair, error) {
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("%w: the last line does not end in a newline (a truncated file?)", ErrMalformed)
	}
	var (
		pairs []Pair
		buf   bytes.Buffer
		enc   = json.NewEncoder(&buf)
		olds  = map[[2]string]int{} // (tenant, old) → line
	)
	for n := 1; len(data) > 0; n++ {
		i := bytes.IndexByte(data, '\n')
		line := data[:i+1]
		data = data[i+1:]
		var p Pair
		if err := json.Unmarshal(line, &p); err != nil {
			return nil, fmt.Errorf("%w: line %d: not a JSON object of tenant, kind, old and new", ErrMalformed, n)
		}
		buf.Reset()
		if err := enc.Encode(p); err != nil || !bytes.Equal(buf.Bytes(), line) {
			return nil, fmt.Errorf("%w: line %d: not the compact object {\"tenant\",\"kind\",\"old\",\"new\"}", ErrMalformed, n)
		}
		if err := p.Check(); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if first, dup := olds[[2]string{p.Tenant, p.Old}]; dup {
			return nil, fmt.Errorf("%w: line %d: the old token of line %d again", ErrMalformed, n, first)
		}
		olds[[2]string{p.Tenant, p.Old}] = n
		pairs = append(pairs, p)
	}
	for i, p := range pairs {
		if m, chain := olds[[2]string{p.Tenant, p.New}]; chain {
			return nil, fmt.Errorf("%w: line %d: its new token is the old token of line %d", ErrMalformed, i+1, m)
		}
	}
	return pairs, nil
}

// File is a pairs file that verified and parsed.
type File struct {
	KeyID  envelope.KeyID // the gateway key that signed it
	SHA256 string         // lower-case hex
	Pairs  []Pair
}

// Open verifies the signature file sig over the pairs file data with the
// pinned gateway keys, then parses data. Any failure refuses the whole
// file.
func Open(data, sig []byte, keys []*envelope.VerifyingKey) (*File, error) {
	kid, err := Verify(data, sig, keys)
	if err != nil {
		return nil, err
	}
	pairs, err := Parse(data)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return &File{KeyID: kid, SHA256: hex.EncodeToString(sum[:]), Pairs: pairs}, nil
}

// Tenants are the tenants the file's pairs belong to, sorted.
func (f *File) Tenants() []string {
	var ts []string
	for _, p := range f.Pairs {
		ts = append(ts, p.Tenant)
	}
	slices.Sort(ts)
	return slices.Compact(ts)
}

// Map returns the file's pairs as old → new, refusing the file (ErrTenant)
// if any pair is of another tenant: the gateway's tenant is the core's
// label, and a core applies a file to one label only.
func (f *File) Map(tenant string) (map[string]string, error) {
	m := make(map[string]string, len(f.Pairs))
	for i, p := range f.Pairs {
		if p.Tenant != tenant {
			return nil, fmt.Errorf("%w: line %d is of another tenant than %s (the file holds %s): ask for a file of this tenant only (keys rotate token --tenant)",
				ErrTenant, i+1, tenant, strings.Join(f.Tenants(), ", "))
		}
		m[p.Old] = p.New
	}
	return m, nil
}
