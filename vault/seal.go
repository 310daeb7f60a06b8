package vault

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// sealFormat is the first byte of everything Seal produces: a sealed record
// and, for the local key provider, a wrapped data key.
const sealFormat = 1

// Seal encrypts plaintext with XChaCha20-Poly1305 under key and a random
// 24-byte nonce (safe at this size without a counter), bound to ad:
// format byte ‖ nonce ‖ ciphertext. Every record store seals alike, so a
// record moves between stores as bytes.
func Seal(key, plaintext, ad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out[0] = sealFormat
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[1:], plaintext, ad), nil
}

// Open reverses Seal. Anything but Seal's output under key and ad is an
// error matching ErrCorrupt.
func Open(key, sealed, ad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+aead.NonceSize()+aead.Overhead() || sealed[0] != sealFormat {
		return nil, fmt.Errorf("%w: malformed ciphertext", ErrCorrupt)
	}
	nonce, ct := sealed[1:1+aead.NonceSize()], sealed[1+aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, ad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrCorrupt)
	}
	return pt, nil
}

// SealRecord seals rec, version version of ref's record, under a fresh
// random data key, and wraps that key with kp; both are bound to ref and
// version (AssociatedData). The plaintext and the data key are cleared
// before it returns.
func SealRecord(ctx context.Context, kp KeyProvider, ref Ref, version int64, rec Record) (wrapped, sealed []byte, err error) {
	pt, err := json.Marshal(rec)
	if err != nil {
		return nil, nil, err
	}
	defer clear(pt)
	dk := make([]byte, chacha20poly1305.KeySize)
	defer clear(dk)
	if _, err := rand.Read(dk); err != nil {
		return nil, nil, err
	}
	ad := AssociatedData(ref, version)
	if sealed, err = Seal(dk, pt, ad); err != nil {
		return nil, nil, err
	}
	if wrapped, err = kp.Wrap(ctx, ref.Tenant, dk, ad); err != nil {
		return nil, nil, fmt.Errorf("wrap data key: %w", err)
	}
	return wrapped, sealed, nil
}

// OpenRecord unwraps the data key with kp and opens a record SealRecord
// sealed for ref and version. A row moved to another subject or version
// fails with an error matching ErrCorrupt.
func OpenRecord(ctx context.Context, kp KeyProvider, ref Ref, version int64, wrapped, sealed []byte) (Record, error) {
	ad := AssociatedData(ref, version)
	dk, err := kp.Unwrap(ctx, ref.Tenant, wrapped, ad)
	if err != nil {
		return Record{}, fmt.Errorf("open record: %w", err)
	}
	defer clear(dk)
	pt, err := Open(dk, sealed, ad)
	if err != nil {
		return Record{}, fmt.Errorf("open record: %w", err)
	}
	defer clear(pt)
	var rec Record
	if err := json.Unmarshal(pt, &rec); err != nil {
		return Record{}, fmt.Errorf("open record: %w: undecodable", ErrCorrupt)
	}
	return rec, nil
}
