package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A Checkpoint is a signed tree head in the C2SP checkpoint format
// (https://c2sp.org/tlog-checkpoint): the log's origin, its size, and the
// RFC 6962 root hash of its first Size records.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// Body returns the checkpoint's note text: the origin, the size in decimal
// and the base64 root, each line ending in a newline. (tlog.FormatTree
// writes the Go checksum database's own origin line, so it is not used.)
func (c Checkpoint) Body() []byte {
	var b []byte
	b = append(b, c.Origin...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, c.Size, 10)
	b = append(b, '\n')
	b = base64.StdEncoding.AppendEncode(b, c.Root[:])
	return append(b, '\n')
}

// ErrForgedCheckpoint is returned for a checkpoint that is not a well-formed
// note signed by the expected key for the expected origin.
var ErrForgedCheckpoint = errors.New("audit: checkpoint not signed by the log's key")

// ParseCheckpoint verifies the signed note b with v and parses its body.
// The origin line must equal v's name. Extension lines after the root,
// which the format allows, are ignored.
func ParseCheckpoint(b []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(b, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrForgedCheckpoint, noteError(err))
	}
	c, err := parseBody(n.Text)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrForgedCheckpoint, err)
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: origin is not %s", ErrForgedCheckpoint, v.Name())
	}
	return c, nil
}

// noteError describes a note.Open failure without quoting the note.
func noteError(err error) string {
	var (
		unverified *note.UnverifiedNoteError
		invalid    *note.InvalidSignatureError
	)
	switch {
	case errors.As(err, &unverified):
		return "no signature by the expected key"
	case errors.As(err, &invalid):
		return "invalid signature"
	default:
		return "malformed note"
	}
}

// parseBody parses a checkpoint body without checking any signature. Open
// uses it on the log's own files, where it holds only a signer.
func parseBody(text string) (Checkpoint, error) {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" {
		return Checkpoint{}, errors.New("malformed checkpoint body")
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	if origin == "" {
		return Checkpoint{}, errors.New("empty origin")
	}
	sizeText := strings.TrimSuffix(lines[1], "\n")
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != sizeText {
		return Checkpoint{}, errors.New("malformed tree size")
	}
	root, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSuffix(lines[2], "\n"))
	if err != nil || len(root) != tlog.HashSize {
		return Checkpoint{}, errors.New("malformed root hash")
	}
	c := Checkpoint{Origin: origin, Size: size}
	copy(c.Root[:], root)
	return c, nil
}

// noteBody returns the text of signed note b before its signatures.
func noteBody(b []byte) (string, bool) {
	i := bytes.LastIndex(b, []byte("\n\n"))
	if i < 0 {
		return "", false
	}
	return string(b[:i+1]), true
}

// NewSigner returns a note signer with Ed25519 key and the note key name
// origin, whose key hash is the one the note format defines (the first
// four bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)), so that any
// note or checkpoint tool verifies its signatures given the verifier key
// from [VerifierKey].
func NewSigner(origin string, key ed25519.PrivateKey) (note.Signer, error) {
	if !validName(origin) {
		return nil, errors.New("audit: origin is not a valid note key name")
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: not an Ed25519 private key")
	}
	pub := key.Public().(ed25519.PublicKey)
	return &signer{name: origin, hash: keyHash(origin, pub), key: key}, nil
}

// NewVerifier returns the note verifier for checkpoints of origin signed
// by the Ed25519 key pub.
func NewVerifier(origin string, pub ed25519.PublicKey) (note.Verifier, error) {
	if !validName(origin) {
		return nil, errors.New("audit: origin is not a valid note key name")
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("audit: not an Ed25519 public key")
	}
	return &verifier{name: origin, hash: keyHash(origin, pub), key: pub}, nil
}

// VerifierKey returns the verifier key of origin and pub in the note text
// format ("origin+hash+base64"), as witnesses and tools take it.
func VerifierKey(origin string, pub ed25519.PublicKey) (string, error) {
	return note.NewEd25519VerifierKey(origin, pub)
}

// validName is the note format's rule for key names: non-empty, no spaces,
// no '+'.
func validName(s string) bool {
	return s != "" && utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsSpace) < 0 && !strings.Contains(s, "+")
}

const algEd25519 = 1

// emptyRoot is the RFC 6962 hash of the empty tree, SHA-256 of nothing.
var emptyRoot = tlog.Hash(sha256.Sum256(nil))

func keyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', algEd25519})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

type signer struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s *signer) Name() string                    { return s.name }
func (s *signer) KeyHash() uint32                 { return s.hash }
func (s *signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

type verifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *verifier) Name() string    { return v.name }
func (v *verifier) KeyHash() uint32 { return v.hash }
func (v *verifier) Verify(msg, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(v.key, msg, sig)
}

// CheckInclusion checks that proof shows entry, the stored bytes of a
// record (see Record.Canonical), is record index of the tree cp signs.
func CheckInclusion(proof tlog.RecordProof, cp Checkpoint, index int64, entry []byte) error {
	if err := tlog.CheckRecord(proof, cp.Size, cp.Root, index, tlog.RecordHash(entry)); err != nil {
		return fmt.Errorf("%w: record %d not in the tree of size %d", ErrInconsistent, index, cp.Size)
	}
	return nil
}

// CheckConsistency checks that proof shows the tree old signs is a prefix
// of the tree new signs: that the log only grew between them.
func CheckConsistency(proof tlog.TreeProof, old, new Checkpoint) error {
	if old.Size > new.Size {
		return fmt.Errorf("%w: old size %d > new size %d", ErrInconsistent, old.Size, new.Size)
	}
	if old.Size == 0 { // every tree extends the empty one
		if old.Root != emptyRoot || len(proof) != 0 {
			return fmt.Errorf("%w: bad proof from the empty tree", ErrInconsistent)
		}
		return nil
	}
	if err := tlog.CheckTree(proof, new.Size, new.Root, old.Size, old.Root); err != nil {
		return fmt.Errorf("%w: tree of size %d does not extend the tree of size %d", ErrInconsistent, new.Size, old.Size)
	}
	return nil
}
