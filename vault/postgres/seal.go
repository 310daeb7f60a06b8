package postgres

import (
	"crypto/rand"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/blindpost/blindpost/vault"
)

// sealFormat is the first byte of a sealed record.
//
// seal and open are copied from vault/embedded (keys.go), byte for byte in
// their output, so a record sealed by one store opens in the other. They
// belong in a shared place (package vault, or an internal package) once
// more than two stores need them.
const sealFormat = 1

// seal encrypts with XChaCha20-Poly1305 under a random 24-byte nonce:
// format byte ‖ nonce ‖ ciphertext. Random nonces are safe at this size.
func seal(key, plaintext, ad []byte) ([]byte, error) {
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

func open(key, sealed, ad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+aead.NonceSize()+aead.Overhead() || sealed[0] != sealFormat {
		return nil, fmt.Errorf("%w: malformed ciphertext", vault.ErrCorrupt)
	}
	nonce, ct := sealed[1:1+aead.NonceSize()], sealed[1+aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, ad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", vault.ErrCorrupt)
	}
	return pt, nil
}
