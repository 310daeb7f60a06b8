// Package vault defines the PII records of players, the opaque tokens that
// stand for their addresses, and the Store and KeyProvider interfaces that
// record-store backends implement.
//
// It sits on the operator side of the trust boundary: only the gateway imports
// it, never the core. Values in this package are personal data; errors, logs
// and metrics built from them must name fields, never values.
package vault

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors. Backends wrap them with context; callers test with errors.Is.
var (
	// ErrNotFound: no record, or no subject indexed under a token.
	ErrNotFound = errors.New("vault: not found")
	// ErrInvalid: a malformed record, reference, token or value.
	ErrInvalid = errors.New("vault: invalid")
	// ErrUnavailable is retryable: the key provider is sealed or unreachable,
	// or the store is busy.
	ErrUnavailable = errors.New("vault: unavailable")
	// ErrCorrupt: authenticated decryption failed. The row was tampered
	// with, moved to another subject, or the key does not match.
	ErrCorrupt = errors.New("vault: corrupt or wrong key")
	// ErrAmbiguous: a token is indexed for more than one subject of a brand
	// (two accounts sharing an address). Errors wrapping it also match
	// ErrInvalid, so a caller that does not care still fails closed.
	ErrAmbiguous = errors.New("vault: token names more than one subject")
)

// MaxIDLen is the longest tenant, brand or user id, in bytes.
const MaxIDLen = 128

// Ref names one subject: a player of a brand of a tenant, by the PAM's
// pseudonymous ids (ext_brand_id, user_ext_id).
type Ref struct {
	Tenant string `json:"tenant"`
	Brand  string `json:"brand"`
	User   string `json:"user"`
}

// Validate reports whether every part of r is a well-formed id: non-empty, at
// most MaxIDLen bytes of printable UTF-8. The error names the part.
func (r Ref) Validate() error {
	for _, p := range [...]struct{ name, v string }{
		{"tenant", r.Tenant}, {"brand", r.Brand}, {"user", r.User},
	} {
		if err := ValidateID(p.v); err != nil {
			return fmt.Errorf("ref %s: %w", p.name, err)
		}
	}
	return nil
}

// ValidateID reports whether id is usable as a tenant, brand or user id.
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty id", ErrInvalid)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: id longer than %d bytes", ErrInvalid, MaxIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: id is not UTF-8", ErrInvalid)
	}
	for _, c := range id {
		if !unicode.IsPrint(c) {
			return fmt.Errorf("%w: id has a non-printable character", ErrInvalid)
		}
	}
	return nil
}

// Subject is what a Put reports: the subject, its pseudonym (safe to log) and
// the tokens of its addresses.
type Subject struct {
	Ref       Ref
	Pseudonym string
	Tokens    map[Kind]string
}

// Store holds sealed records and the token → subject index.
type Store interface {
	// Put creates or replaces the record of ref and re-indexes its tokens.
	Put(ctx context.Context, ref Ref, rec Record) (Subject, error)
	// Resolve opens the record of ref. Call it only for the recipient of the
	// message being sent.
	Resolve(ctx context.Context, ref Ref) (Record, error)
	// Lookup finds the subject of a brand whose record holds the value a
	// token stands for.
	Lookup(ctx context.Context, tenant, brand, token string) (Ref, error)
	// Tokenize returns the token of a value without storing anything.
	Tokenize(ctx context.Context, tenant string, kind Kind, value string) (string, error)
	// Erase destroys the record of ref and its index entries.
	Erase(ctx context.Context, ref Ref) error
	Close() error
}

// KeyProvider holds the tenant keys: key-encryption keys that wrap the
// per-subject data keys, and the versioned token keys.
type KeyProvider interface {
	Wrap(ctx context.Context, tenant string, dataKey, ad []byte) ([]byte, error)
	Unwrap(ctx context.Context, tenant string, wrapped, ad []byte) ([]byte, error)
	// TokenMAC returns HMAC-SHA256 of msg under the tenant's token key of
	// the given version (at least 20 bytes).
	TokenMAC(ctx context.Context, tenant string, version int, msg []byte) ([]byte, error)
	// TokenVersion is the pinned token key version new tokens use.
	TokenVersion() int
}

// AssociatedData binds a sealed record and its wrapped data key to one
// subject and one record version, so that a row copied to another subject,
// or an old version replayed over a newer one, fails to open. Every field is
// length-prefixed, so no two (ref, version) pairs share an encoding.
func AssociatedData(ref Ref, version int64) []byte {
	const label = "blindpost-subject-v1"
	b := make([]byte, 0, len(label)+12+len(ref.Tenant)+len(ref.Brand)+len(ref.User)+8)
	b = append(b, label...)
	for _, s := range [...]string{ref.Tenant, ref.Brand, ref.User} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return binary.BigEndian.AppendUint64(b, uint64(version))
}
