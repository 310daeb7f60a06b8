package envelope

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
)

// suite is the only HPKE suite of protocol version 1.
var suite = hpke.NewSuite(hpke.KEM_XWING, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305)

var xwing = hpke.KEM_XWING.Scheme()

// KeyID names a public key: the lowercase hex of the first 8 bytes of the
// SHA-256 of the key's bytes. It is an identifier for picking a key from a
// keyring, not a security binding: authenticity comes from the signature
// made by the pinned key itself.
type KeyID string

// KeyIDOf returns the KeyID of the public key bytes pub.
func KeyIDOf(pub []byte) KeyID {
	sum := sha256.Sum256(pub)
	return KeyID(hex.EncodeToString(sum[:8]))
}

// valid reports whether id is syntactically a KeyID.
func (id KeyID) valid() bool {
	if len(id) != 16 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Fingerprint returns a human-readable SHA-256 fingerprint of the public key
// bytes pub, in the form OpenSSH prints: "SHA256:" and unpadded standard
// base64. Operators compare it out of band before pinning a key.
func Fingerprint(pub []byte) string {
	sum := sha256.Sum256(pub)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// RecipientKey is the gateway's HPKE X-Wing key pair: the core encrypts to
// its public half.
type RecipientKey struct {
	ID   KeyID
	seed []byte // the X-Wing private key: a 32-byte seed
	priv kem.PrivateKey
	pub  kem.PublicKey
}

// RecipientPublicKey is the public half of a RecipientKey, which the core
// pins.
type RecipientPublicKey struct {
	ID  KeyID
	pub kem.PublicKey
}

// GenerateRecipientKey makes a new X-Wing key pair from 32 bytes of rand
// (crypto/rand if nil).
func GenerateRecipientKey(rand io.Reader) (*RecipientKey, error) {
	seed := make([]byte, xwing.PrivateKeySize())
	if _, err := io.ReadFull(randOrDefault(rand), seed); err != nil {
		return nil, fmt.Errorf("envelope: generate recipient key: %w", err)
	}
	return newRecipientKey(seed)
}

func newRecipientKey(seed []byte) (*RecipientKey, error) {
	priv, err := xwing.UnmarshalBinaryPrivateKey(seed)
	if err != nil {
		return nil, fmt.Errorf("envelope: recipient private key: %w", err)
	}
	pub := priv.Public()
	pb, _ := pub.MarshalBinary()
	return &RecipientKey{ID: KeyIDOf(pb), seed: bytes.Clone(seed), priv: priv, pub: pub}, nil
}

// Public returns the public half of k.
func (k *RecipientKey) Public() *RecipientPublicKey {
	return &RecipientPublicKey{ID: k.ID, pub: k.pub}
}

// NewRecipientPublicKey parses a 1216-byte X-Wing public key.
func NewRecipientPublicKey(b []byte) (*RecipientPublicKey, error) {
	pub, err := xwing.UnmarshalBinaryPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("envelope: recipient public key: %w", err)
	}
	return &RecipientPublicKey{ID: KeyIDOf(b), pub: pub}, nil
}

// Bytes returns the encoded public key, as KeyIDOf and Fingerprint take it.
func (k *RecipientPublicKey) Bytes() []byte {
	b, _ := k.pub.MarshalBinary()
	return b
}

// SigningKey is an Ed25519 private key: the core's, for envelopes, or the
// gateway's own, for callbacks and audit checkpoints.
type SigningKey struct {
	ID      KeyID
	Private ed25519.PrivateKey
}

// VerifyingKey is the public half of a SigningKey.
type VerifyingKey struct {
	ID     KeyID
	Public ed25519.PublicKey
}

// GenerateSigningKey makes a new Ed25519 key from 32 bytes of rand
// (crypto/rand if nil).
func GenerateSigningKey(rand io.Reader) (*SigningKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(randOrDefault(rand), seed); err != nil {
		return nil, fmt.Errorf("envelope: generate signing key: %w", err)
	}
	return newSigningKey(seed), nil
}

func newSigningKey(seed []byte) *SigningKey {
	priv := ed25519.NewKeyFromSeed(seed)
	return &SigningKey{ID: KeyIDOf(priv.Public().(ed25519.PublicKey)), Private: priv}
}

// Public returns the public half of k.
func (k *SigningKey) Public() *VerifyingKey {
	return &VerifyingKey{ID: k.ID, Public: k.Private.Public().(ed25519.PublicKey)}
}

// NewVerifyingKey wraps a 32-byte Ed25519 public key.
func NewVerifyingKey(pub []byte) (*VerifyingKey, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("envelope: verifying key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	return &VerifyingKey{ID: KeyIDOf(pub), Public: bytes.Clone(pub)}, nil
}

// sign signs msg, refusing a malformed key rather than letting ed25519 panic.
func (k *SigningKey) sign(msg []byte) ([]byte, error) {
	if k == nil || len(k.Private) != ed25519.PrivateKeySize {
		return nil, errors.New("envelope: signing key is not an Ed25519 private key")
	}
	return ed25519.Sign(k.Private, msg), nil
}

// verify reports whether sig is k's signature of msg.
func (k *VerifyingKey) verify(msg, sig []byte) bool {
	return len(k.Public) == ed25519.PublicKeySize && ed25519.Verify(k.Public, msg, sig)
}

func randOrDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// Key files. One key per file, two lines of text:
//
//	blindpost <type> v1
//	<base64url, no padding, of the key bytes>
//
// The types are below; docs/protocol.md gives the byte layout of each.
const (
	typeHPKEPrivate    = "hpke-xwing-private" // 32-byte X-Wing seed
	typeHPKEPublic     = "hpke-xwing-public"  // 1216-byte X-Wing public key
	typeEd25519Private = "ed25519-private"    // 32-byte RFC 8032 seed
	typeEd25519Public  = "ed25519-public"     // 32-byte RFC 8032 public key
)

// File names inside a key directory.
const (
	FileHPKEKey    = "hpke.key"
	FileHPKEPub    = "hpke.pub"
	FileSigningKey = "signing.key"
	FileSigningPub = "signing.pub"
)

type keyFile struct {
	name string
	typ  string
	key  []byte
	perm fs.FileMode
}

// WriteGatewayKeys generates the gateway's keys (an HPKE X-Wing key pair and
// an Ed25519 key pair) into dir: hpke.key, hpke.pub, signing.key and
// signing.pub. It refuses to overwrite any existing key file.
func WriteGatewayKeys(dir string, rand io.Reader) error {
	rk, err := GenerateRecipientKey(rand)
	if err != nil {
		return err
	}
	sk, err := GenerateSigningKey(rand)
	if err != nil {
		return err
	}
	return writeKeyFiles(dir,
		keyFile{FileHPKEKey, typeHPKEPrivate, rk.seed, 0o600},
		keyFile{FileHPKEPub, typeHPKEPublic, rk.Public().Bytes(), 0o644},
		keyFile{FileSigningKey, typeEd25519Private, sk.Private.Seed(), 0o600},
		keyFile{FileSigningPub, typeEd25519Public, sk.Public().Public, 0o644},
	)
}

// WriteCoreKeys generates the core's Ed25519 key pair into dir: signing.key
// and signing.pub. It refuses to overwrite any existing key file.
func WriteCoreKeys(dir string, rand io.Reader) error {
	sk, err := GenerateSigningKey(rand)
	if err != nil {
		return err
	}
	return writeKeyFiles(dir,
		keyFile{FileSigningKey, typeEd25519Private, sk.Private.Seed(), 0o600},
		keyFile{FileSigningPub, typeEd25519Public, sk.Public().Public, 0o644},
	)
}

// writeKeyFiles writes all of files into dir (created 0700 if missing), or
// none of them: it refuses if any exists, and removes what it wrote if a
// later write fails.
func writeKeyFiles(dir string, files ...keyFile) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("envelope: key directory: %w", err)
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			if err == nil {
				err = fs.ErrExist
			}
			return fmt.Errorf("envelope: refusing to overwrite %s: %w", p, err)
		}
	}
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := writeKeyFile(p, f.typ, f.key, f.perm); err != nil {
			return err
		}
		written = append(written, p)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func writeKeyFile(path, typ string, key []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("envelope: write key file: %w", err)
	}
	_, err = fmt.Fprintf(f, "blindpost %s v1\n%s\n", typ, b64.EncodeToString(key))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("envelope: write key file %s: %w", path, err)
	}
	return nil
}

// parseKeyFile returns the key bytes of a key file of the given type. Its
// errors never include the file's content.
func parseKeyFile(data []byte, typ string, size int) ([]byte, error) {
	lines := bytes.Split(bytes.TrimRight(data, "\r\n"), []byte("\n"))
	if len(lines) != 2 {
		return nil, errors.New("not a blindpost key file (want 2 lines)")
	}
	head := string(bytes.TrimSuffix(lines[0], []byte("\r")))
	if head != "blindpost "+typ+" v1" {
		return nil, fmt.Errorf("not a %q key file", typ)
	}
	key, err := decodeB64(string(bytes.TrimSuffix(lines[1], []byte("\r"))))
	if err != nil {
		return nil, errors.New("key is not base64url without padding")
	}
	if len(key) != size {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), size)
	}
	return key, nil
}

func loadKeyFile(path, typ string, size int) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("envelope: load key: %w", err)
	}
	key, err := parseKeyFile(data, typ, size)
	if err != nil {
		return nil, fmt.Errorf("envelope: load key %s: %w", path, err)
	}
	return key, nil
}

// LoadRecipientKey reads an hpke.key file.
func LoadRecipientKey(path string) (*RecipientKey, error) {
	seed, err := loadKeyFile(path, typeHPKEPrivate, xwing.PrivateKeySize())
	if err != nil {
		return nil, err
	}
	return newRecipientKey(seed)
}

// LoadRecipientPublicKey reads an hpke.pub file.
func LoadRecipientPublicKey(path string) (*RecipientPublicKey, error) {
	b, err := loadKeyFile(path, typeHPKEPublic, xwing.PublicKeySize())
	if err != nil {
		return nil, err
	}
	return NewRecipientPublicKey(b)
}

// LoadSigningKey reads a signing.key file.
func LoadSigningKey(path string) (*SigningKey, error) {
	seed, err := loadKeyFile(path, typeEd25519Private, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return newSigningKey(seed), nil
}

// LoadVerifyingKey reads a signing.pub file.
func LoadVerifyingKey(path string) (*VerifyingKey, error) {
	b, err := loadKeyFile(path, typeEd25519Public, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return NewVerifyingKey(b)
}

// RecipientKeyring holds the gateway's HPKE keys by KeyID. While a key
// rotates, both the old and the new key are in the ring, so envelopes sealed
// to either open. A keyring is immutable; build a new one to rotate.
type RecipientKeyring struct {
	keys map[KeyID]*RecipientKey
}

// NewRecipientKeyring returns a keyring holding keys.
func NewRecipientKeyring(keys ...*RecipientKey) *RecipientKeyring {
	r := &RecipientKeyring{keys: make(map[KeyID]*RecipientKey, len(keys))}
	for _, k := range keys {
		if k != nil {
			r.keys[k.ID] = k
		}
	}
	return r
}

// Key returns the key with the given id, or nil.
func (r *RecipientKeyring) Key(id KeyID) *RecipientKey {
	if r == nil {
		return nil
	}
	return r.keys[id]
}

// SenderKeyring pins the core's verifying keys per tenant: a key verifies
// envelopes only for the tenants it is pinned for. It is safe for
// concurrent use, so keys can be pinned and unpinned while serving.
type SenderKeyring struct {
	mu   sync.RWMutex
	keys map[string]map[KeyID]*VerifyingKey // tenant → id → key
}

// NewSenderKeyring returns an empty keyring.
func NewSenderKeyring() *SenderKeyring {
	return &SenderKeyring{keys: make(map[string]map[KeyID]*VerifyingKey)}
}

// Pin trusts k for envelopes of tenant.
func (r *SenderKeyring) Pin(tenant string, k *VerifyingKey) {
	if k == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = make(map[string]map[KeyID]*VerifyingKey)
	}
	if r.keys[tenant] == nil {
		r.keys[tenant] = make(map[KeyID]*VerifyingKey)
	}
	r.keys[tenant][k.ID] = k
}

// Unpin stops trusting key id for tenant (the end of a rotation).
func (r *SenderKeyring) Unpin(tenant string, id KeyID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.keys[tenant], id)
}

// Key returns the key with the given id pinned for tenant, or nil.
func (r *SenderKeyring) Key(tenant string, id KeyID) *VerifyingKey {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.keys[tenant][id]
}
