package embedded

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"

	"github.com/blindpost/blindpost/vault"
)

// DefaultTokenVersion is the token key version new tokens use unless
// Options.TokenVersion pins another.
const DefaultTokenVersion = 1

// Argon2id parameters for NewPassphraseProvider. Changing them changes
// every key derived from a passphrase: they are part of the file format.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 2
	saltLen      = 16
	masterLen    = 32

	// MinPassphraseLen is the shortest passphrase NewPassphraseProvider
	// accepts, in bytes.
	MinPassphraseLen = 12
)

// HKDF labels. A per-tenant key-encryption key wraps data keys; a per-tenant,
// per-version token key makes tokens. Separate keys, so that a token key
// handed to another component could never unwrap a data key.
const (
	kekLabel   = "blindpost-kek-v1"
	tokenLabel = "blindpost-token-v1"
)

// Wrapped data keys. KEK version 1 wraps exactly as vault.Seal does
// (format byte 1 ‖ 24-byte nonce ‖ ciphertext), so a key wrapped before
// KEK versions existed and one wrapped by version 1 today are alike, and a
// store that was never rotated stays readable by older binaries. Later
// versions write
//
//	0xB5 ‖ version (2 bytes, big-endian) ‖ 24-byte nonce ‖ ciphertext
//
// with the 3-byte header put before the caller's associated data, so it is
// authenticated too. vault.Open accepts format byte 1 only, so no key of
// the old format starts with 0xB5; the value is far from 1 so that later
// vault.Seal formats (2, 3, …) do not collide with it either.
const (
	legacyWrapFormat = 1
	wrapMagic        = 0xb5
	wrapHeaderLen    = 3
)

// ErrKEKVersion: a wrapped key names a KEK version the key file does not
// hold. Errors wrapping it also match vault.ErrCorrupt for a retired
// version, and vault.ErrUnavailable (retry) for one newer than the file,
// which another node's rotation added and this node's copy lacks.
var ErrKEKVersion = errors.New("embedded: KEK version not in the key file")

// ErrNoKeyFile: the provider was made from a passphrase, which has one KEK
// version. To rotate, move the records to a vault keyed by a key file
// (export and import).
var ErrNoKeyFile = errors.New("embedded: KEK rotation needs a key file; a passphrase has one KEK version")

var errClosed = errors.New("embedded: key provider closed")

// LocalKeyProvider keeps the keys of a key file, or one master key derived
// from a passphrase, in memory, and derives every tenant key from them with
// HKDF-SHA256: the tenant's KEK of each version from that version's master
// key, its token keys from the token root. It implements vault.KeyProvider
// and vault.KEKVersioner.
//
// Derived keys are kept per tenant, so a call does not run HKDF; they are
// no more exposed than the master keys they come from, which are in memory
// anyway. Data keys and records are never kept. Close clears every key.
type LocalKeyProvider struct {
	path string // the key file, absolute; "" for a passphrase

	mu   sync.Mutex // serialises reloads of the key file
	ring atomic.Pointer[keyring]
}

var (
	_ vault.KeyProvider  = (*LocalKeyProvider)(nil)
	_ vault.KEKVersioner = (*LocalKeyProvider)(nil)
)

// keyring is one reading of the key file. It is replaced, never changed,
// when the file changes.
type keyring struct {
	stamp  fs.FileInfo // the key file as read; nil for a passphrase
	token  []byte
	keks   map[int][]byte
	latest int

	derived sync.Map // derivation → *[32]byte
	nDerive atomic.Int32
}

// maxDerived bounds the derived keys a keyring keeps. Tenants are few and
// configured; past the bound, keys are derived per call.
const maxDerived = 4096

type derivation struct {
	token   bool // a token key, else a KEK
	tenant  string
	version int
}

func newKeyring(kf *keyFile, stamp fs.FileInfo) *keyring {
	return &keyring{stamp: stamp, token: kf.tokenRoot(), keks: kf.keks, latest: kf.newest()}
}

// key returns the tenant's KEK of version v, or its token key of version
// v, and whether the caller must clear it after use (it was not kept).
func (r *keyring) key(d derivation) (key *[32]byte, temp bool, ok bool) {
	if k, ok := r.derived.Load(d); ok {
		return k.(*[32]byte), false, true
	}
	root, label, v := r.token, tokenLabel, d.version
	if !d.token {
		root, label, v = r.keks[d.version], kekLabel, 0
	}
	if root == nil {
		return nil, false, false
	}
	key = derive(root, label, d.tenant, v)
	if r.nDerive.Load() >= maxDerived {
		return key, true, true
	}
	if k, loaded := r.derived.LoadOrStore(d, key); loaded {
		clear(key[:])
		return k.(*[32]byte), false, true
	}
	r.nDerive.Add(1)
	return key, false, true
}

func (r *keyring) clear() {
	r.derived.Range(func(_, k any) bool {
		clear(k.(*[32]byte)[:])
		return true
	})
	clear(r.token)
	for _, k := range r.keks {
		clear(k)
	}
}

// sameFile reports whether fi describes the key file as the keyring read it.
func (r *keyring) sameFile(fi fs.FileInfo) bool {
	return os.SameFile(r.stamp, fi) && r.stamp.ModTime().Equal(fi.ModTime()) && r.stamp.Size() == fi.Size()
}

// derive is HKDF-SHA256(root, salt none, info label ‖ u32be(len(tenant)) ‖
// tenant [‖ u32be(version)]), pinned by testdata/derivation.json.
func derive(root []byte, label, tenant string, version int) *[32]byte {
	info := make([]byte, 0, len(label)+8+len(tenant))
	info = append(info, label...)
	info = binary.BigEndian.AppendUint32(info, uint32(len(tenant)))
	info = append(info, tenant...)
	if version > 0 {
		info = binary.BigEndian.AppendUint32(info, uint32(version))
	}
	key := new([32]byte)
	if _, err := io.ReadFull(hkdf.New(sha256.New, root, nil, info), key[:]); err != nil {
		panic("embedded: hkdf: " + err.Error()) // cannot happen for 32 bytes
	}
	return key
}

// NewKeyFileProvider reads a key file written by GenerateKeyFile, or by a
// release before KEK versions (one bare key line, read as version 1 and
// token root).
func NewKeyFileProvider(path string) (*LocalKeyProvider, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	r, err := loadKeyring(abs)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	p := &LocalKeyProvider{path: abs}
	p.ring.Store(r)
	return p, nil
}

func loadKeyring(path string) (*keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	kf, _, err := parseKeyFile(b)
	if err != nil {
		return nil, err
	}
	return newKeyring(kf, fi), nil
}

// NewPassphraseProvider derives the master key from a passphrase with
// Argon2id (time 3, 64 MiB, 2 threads) and the 16-byte salt kept in
// saltPath, which it creates on first use (mode 0600). The salt is not
// secret, but losing it loses every record, like losing the passphrase.
//
// The master key is KEK version 1 and the token root. A passphrase has no
// further KEK versions: to rotate, move to a key file.
func NewPassphraseProvider(pass []byte, saltPath string) (*LocalKeyProvider, error) {
	if len(pass) < MinPassphraseLen {
		return nil, fmt.Errorf("passphrase: shorter than %d bytes", MinPassphraseLen)
	}
	salt, err := loadOrCreateSalt(saltPath)
	if err != nil {
		return nil, fmt.Errorf("passphrase salt: %w", err)
	}
	master := argon2.IDKey(pass, salt, argonTime, argonMemory, argonThreads, masterLen)
	p := &LocalKeyProvider{}
	p.ring.Store(newKeyring(&keyFile{keks: map[int][]byte{1: master}}, nil))
	return p, nil
}

func loadOrCreateSalt(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		salt := make([]byte, saltLen)
		if _, err := rand.Read(salt); err != nil {
			return nil, err
		}
		err = writeNew(path, []byte("# blindpost passphrase salt: not secret, but keep a backup\n"+hex.EncodeToString(salt)+"\n"))
		if err == nil {
			return salt, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		// Another process created it first: use theirs.
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	return parseHexFile(b, saltLen)
}

// writeNew creates path exclusively with mode 0600, writes b and syncs.
func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// parseHexFile reads the one non-comment line of a salt file.
func parseHexFile(b []byte, n int) ([]byte, error) {
	var line []byte
	for l := range bytes.Lines(b) {
		l = bytes.TrimSpace(l)
		if len(l) == 0 || l[0] == '#' {
			continue
		}
		if line != nil {
			return nil, errors.New("more than one key line")
		}
		line = l
	}
	if hex.DecodedLen(len(line)) != n {
		return nil, fmt.Errorf("want %d hex-encoded bytes", n)
	}
	out := make([]byte, n)
	if _, err := hex.Decode(out, line); err != nil {
		return nil, errors.New("not hex")
	}
	return out, nil
}

// keys returns the keyring in force, without looking at the key file.
func (p *LocalKeyProvider) keys() (*keyring, error) {
	r := p.ring.Load()
	if r == nil {
		return nil, errClosed
	}
	return r, nil
}

// freshKeys returns the keyring in force after looking at the key file: if
// the file changed, it is read again. A file that no longer reads, or that
// changed its token root or lost its newest version (another key file, or
// an old copy of this one), is an error matching vault.ErrUnavailable: the
// process keeps working with what it holds, except that it wraps nothing
// under a key the file may not hold.
func (p *LocalKeyProvider) freshKeys() (*keyring, error) {
	r, err := p.keys()
	if err != nil || p.path == "" {
		return r, err
	}
	fi, err := os.Stat(p.path)
	if err != nil {
		return nil, fmt.Errorf("%w: key file: %w", vault.ErrUnavailable, err)
	}
	if r.sameFile(fi) {
		return r, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if r, err = p.keys(); err != nil {
		return nil, err
	}
	if fi, err = os.Stat(p.path); err != nil {
		return nil, fmt.Errorf("%w: key file: %w", vault.ErrUnavailable, err)
	}
	if r.sameFile(fi) {
		return r, nil // another goroutine reloaded it
	}
	nr, err := loadKeyring(p.path)
	if err != nil {
		return nil, fmt.Errorf("%w: key file changed: %w", vault.ErrUnavailable, err)
	}
	switch {
	case !hmac.Equal(nr.token, r.token):
		nr.clear()
		return nil, fmt.Errorf("%w: key file changed its token root; restart to use another key file", vault.ErrUnavailable)
	case nr.latest < r.latest:
		nr.clear()
		return nil, fmt.Errorf("%w: key file lost KEK version %d; restart to use an older key file", vault.ErrUnavailable, r.latest)
	}
	// The old keyring may be in use by other calls: it is dropped, not
	// cleared.
	p.ring.Store(nr)
	return nr, nil
}

func checkTenant(tenant string) error {
	if err := vault.ValidateID(tenant); err != nil {
		return fmt.Errorf("tenant: %w", err)
	}
	return nil
}

// Wrap seals dataKey under the tenant's KEK of the newest version in the
// key file.
func (p *LocalKeyProvider) Wrap(ctx context.Context, tenant string, dataKey, ad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	r, err := p.freshKeys()
	if err != nil {
		return nil, fmt.Errorf("wrap data key: %w", err)
	}
	kek, temp, ok := r.key(derivation{tenant: tenant, version: r.latest})
	if !ok {
		return nil, fmt.Errorf("wrap data key: %w", ErrKEKVersion) // cannot happen
	}
	if temp {
		defer clear(kek[:])
	}
	if r.latest == 1 {
		return vault.Seal(kek[:], dataKey, ad)
	}
	aead, err := chacha20poly1305.NewX(kek[:])
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	out := make([]byte, wrapHeaderLen+n, wrapHeaderLen+n+len(dataKey)+aead.Overhead())
	out[0] = wrapMagic
	binary.BigEndian.PutUint16(out[1:], uint16(r.latest))
	if _, err := rand.Read(out[wrapHeaderLen:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[wrapHeaderLen:], dataKey, headerAD(out[:wrapHeaderLen], ad)), nil
}

func headerAD(header, ad []byte) []byte {
	return append(append(make([]byte, 0, len(header)+len(ad)), header...), ad...)
}

// wrappedVersion returns the KEK version that wrapped w.
func wrappedVersion(w []byte) (int, error) {
	switch {
	case len(w) > 0 && w[0] == legacyWrapFormat:
		return 1, nil
	case len(w) >= wrapHeaderLen && w[0] == wrapMagic:
		// Version 1 is always written in the old format: one spelling.
		if v := int(binary.BigEndian.Uint16(w[1:])); v >= 2 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: malformed wrapped key", vault.ErrCorrupt)
}

// Unwrap opens a wrapped data key, whichever KEK version in the key file
// wrapped it. A wrong key, a wrong tenant, wrong associated data or a
// version the key file does not hold give an error matching
// vault.ErrCorrupt.
//
// A key wrapped by any version but the newest this process holds makes it
// look at the key file first: a version added by another process (a
// rotation) opens, and a retired one stops opening at once.
func (p *LocalKeyProvider) Unwrap(ctx context.Context, tenant string, wrapped, ad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	v, err := wrappedVersion(wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	r, err := p.keys()
	if err == nil && v != r.latest {
		r, err = p.freshKeys()
	}
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	kek, temp, ok := r.key(derivation{tenant: tenant, version: v})
	if !ok && v > r.latest {
		// Newer than this node's key file: another node rotated and the
		// file has not reached this one yet. Retryable, so the message
		// waits instead of failing for good.
		return nil, fmt.Errorf("unwrap data key: %w: %w (version %d is newer than the key file's)", vault.ErrUnavailable, ErrKEKVersion, v)
	}
	if !ok {
		return nil, fmt.Errorf("unwrap data key: %w: %w (version %d)", vault.ErrCorrupt, ErrKEKVersion, v)
	}
	if temp {
		defer clear(kek[:])
	}
	if v == 1 {
		dk, err := vault.Open(kek[:], wrapped, ad)
		if err != nil {
			return nil, fmt.Errorf("unwrap data key: %w", err)
		}
		return dk, nil
	}
	aead, err := chacha20poly1305.NewX(kek[:])
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	if len(wrapped) < wrapHeaderLen+n+aead.Overhead() {
		return nil, fmt.Errorf("unwrap data key: %w: malformed wrapped key", vault.ErrCorrupt)
	}
	dk, err := aead.Open(nil, wrapped[wrapHeaderLen:wrapHeaderLen+n], wrapped[wrapHeaderLen+n:], headerAD(wrapped[:wrapHeaderLen], ad))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w: authentication failed", vault.ErrCorrupt)
	}
	return dk, nil
}

// KEKVersion returns the KEK version that wrapped a data key and the
// newest version in the key file. It implements vault.KEKVersioner.
func (p *LocalKeyProvider) KEKVersion(ctx context.Context, tenant string, wrapped []byte) (version, latest int, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	if err := checkTenant(tenant); err != nil {
		return 0, 0, err
	}
	r, err := p.freshKeys()
	if err != nil {
		return 0, 0, fmt.Errorf("kek version: %w", err)
	}
	v, err := wrappedVersion(wrapped)
	if err != nil {
		return 0, 0, fmt.Errorf("kek version: %w", err)
	}
	return v, r.latest, nil
}

// KEKVersions returns the KEK versions the key file holds, oldest first,
// after looking at the file.
func (p *LocalKeyProvider) KEKVersions() ([]int, error) {
	r, err := p.freshKeys()
	if err != nil {
		return nil, err
	}
	vs := make([]int, 0, len(r.keks))
	for v := range r.keks {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs, nil
}

// RotateKEK adds a KEK version to the provider's key file (RotateKeyFile)
// and wraps with it from now on. A passphrase provider returns
// ErrNoKeyFile.
func (p *LocalKeyProvider) RotateKEK() (newVersion int, err error) {
	if p.path == "" {
		return 0, ErrNoKeyFile
	}
	if newVersion, err = RotateKeyFile(p.path); err != nil {
		return 0, err
	}
	if _, err := p.freshKeys(); err != nil {
		return newVersion, err
	}
	return newVersion, nil
}

// RetireKEK removes KEK version v from the provider's key file
// (RetireKeyVersion, whose conditions apply) and stops opening keys it
// wrapped. A passphrase provider returns ErrNoKeyFile.
func (p *LocalKeyProvider) RetireKEK(v int) error {
	if p.path == "" {
		return ErrNoKeyFile
	}
	if err := RetireKeyVersion(p.path, v); err != nil {
		return err
	}
	_, err := p.freshKeys()
	return err
}

// TokenMAC returns HMAC-SHA256 of msg under the tenant's token key version.
func (p *LocalKeyProvider) TokenMAC(ctx context.Context, tenant string, version int, msg []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if version < 1 {
		return nil, fmt.Errorf("%w: token version %d", vault.ErrInvalid, version)
	}
	r, err := p.keys()
	if err != nil {
		return nil, err
	}
	key, temp, _ := r.key(derivation{token: true, tenant: tenant, version: version})
	if temp {
		defer clear(key[:])
	}
	m := hmac.New(sha256.New, key[:])
	m.Write(msg)
	return m.Sum(nil), nil
}

// TokenVersion returns DefaultTokenVersion.
func (p *LocalKeyProvider) TokenVersion() int { return DefaultTokenVersion }

// Close clears every key the provider holds; later calls fail. Close it
// after the stores that use it.
func (p *LocalKeyProvider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.ring.Swap(nil); r != nil {
		r.clear()
	}
	return nil
}

// String never prints key material.
func (p *LocalKeyProvider) String() string { return "embedded.LocalKeyProvider" }

// GoString never prints key material, even under %#v.
func (p *LocalKeyProvider) GoString() string { return p.String() }
