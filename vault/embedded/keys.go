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

	"golang.org/x/crypto/argon2"
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

// LocalKeyProvider keeps a 32-byte master key in memory, read from a key
// file or derived from a passphrase, and derives every tenant key from it
// with HKDF-SHA256. It implements vault.KeyProvider.
type LocalKeyProvider struct {
	master []byte
}

var _ vault.KeyProvider = (*LocalKeyProvider)(nil)

const keyFileHeader = "# blindpost vault master key: keep secret, keep a backup; losing it loses every record\n"

// GenerateKeyFile writes a new random master key to path, mode 0600. It
// refuses to overwrite an existing file: replacing a key makes every record
// sealed under it unreadable.
func GenerateKeyFile(path string) error {
	key := make([]byte, masterLen)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generate key file: %w", err)
	}
	defer clear(key)
	if err := writeNew(path, []byte(keyFileHeader+hex.EncodeToString(key)+"\n")); err != nil {
		return fmt.Errorf("generate key file: %w", err)
	}
	return nil
}

// NewKeyFileProvider reads the master key written by GenerateKeyFile.
func NewKeyFileProvider(path string) (*LocalKeyProvider, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer clear(b)
	key, err := parseHexFile(b, masterLen)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return &LocalKeyProvider{master: key}, nil
}

// NewPassphraseProvider derives the master key from a passphrase with
// Argon2id (time 3, 64 MiB, 2 threads) and the 16-byte salt kept in
// saltPath, which it creates on first use (mode 0600). The salt is not
// secret, but losing it loses every record, like losing the passphrase.
func NewPassphraseProvider(pass []byte, saltPath string) (*LocalKeyProvider, error) {
	if len(pass) < MinPassphraseLen {
		return nil, fmt.Errorf("passphrase: shorter than %d bytes", MinPassphraseLen)
	}
	salt, err := loadOrCreateSalt(saltPath)
	if err != nil {
		return nil, fmt.Errorf("passphrase salt: %w", err)
	}
	return &LocalKeyProvider{master: argon2.IDKey(pass, salt, argonTime, argonMemory, argonThreads, masterLen)}, nil
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

// parseHexFile reads the one non-comment line of a key or salt file.
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

func (p *LocalKeyProvider) derive(label, tenant string, version int) []byte {
	info := make([]byte, 0, len(label)+8+len(tenant))
	info = append(info, label...)
	info = binary.BigEndian.AppendUint32(info, uint32(len(tenant)))
	info = append(info, tenant...)
	if version > 0 {
		info = binary.BigEndian.AppendUint32(info, uint32(version))
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, p.master, nil, info), key); err != nil {
		panic("embedded: hkdf: " + err.Error()) // cannot happen for 32 bytes
	}
	return key
}

func checkTenant(tenant string) error {
	if err := vault.ValidateID(tenant); err != nil {
		return fmt.Errorf("tenant: %w", err)
	}
	return nil
}

// Wrap seals dataKey under the tenant's key-encryption key.
func (p *LocalKeyProvider) Wrap(ctx context.Context, tenant string, dataKey, ad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	kek := p.derive(kekLabel, tenant, 0)
	defer clear(kek)
	return vault.Seal(kek, dataKey, ad)
}

// Unwrap opens a wrapped data key. A wrong key, a wrong tenant or wrong
// associated data all give an error matching vault.ErrCorrupt.
func (p *LocalKeyProvider) Unwrap(ctx context.Context, tenant string, wrapped, ad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	kek := p.derive(kekLabel, tenant, 0)
	defer clear(kek)
	dk, err := vault.Open(kek, wrapped, ad)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	return dk, nil
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
	key := p.derive(tokenLabel, tenant, version)
	defer clear(key)
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil), nil
}

// TokenVersion returns DefaultTokenVersion.
func (p *LocalKeyProvider) TokenVersion() int { return DefaultTokenVersion }

// String never prints key material.
func (p *LocalKeyProvider) String() string { return "embedded.LocalKeyProvider" }

// GoString never prints key material, even under %#v.
func (p *LocalKeyProvider) GoString() string { return p.String() }
