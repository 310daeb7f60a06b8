package embedded

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// MaxKEKVersion is the highest KEK version a key file may hold. Versioned
// wrapped keys carry it in two bytes.
const MaxKEKVersion = 0xffff

var (
	// ErrKeyFile: the key file is malformed. The error names the line,
	// never its content.
	ErrKeyFile = errors.New("embedded: malformed key file")
	// ErrRetireNewest: RetireKeyVersion was asked to remove the version
	// Wrap uses.
	ErrRetireNewest = errors.New("embedded: the newest KEK version cannot be retired")
	// ErrTokenRoot: RetireKeyVersion was asked to remove a version that is
	// also the root of the token keys (version 1 of a key file written
	// before KEK versions). Removing it would change every token.
	ErrTokenRoot = errors.New("embedded: the KEK version is also the token root")
	// ErrKeyFileBusy: another RotateKeyFile or RetireKeyVersion holds the
	// key file's lock file (path + ".new"); if none runs, a crash left it
	// behind and it may be removed.
	ErrKeyFileBusy = errors.New("embedded: key file is being updated")
)

// keyFile is a parsed key file. The byte slices are key material.
type keyFile struct {
	token []byte         // nil when version 1 is the token root
	keks  map[int][]byte // KEK master key by version
}

func (kf *keyFile) newest() int { return slices.Max(slices.Collect(maps.Keys(kf.keks))) }

// tokenRoot returns the key the token keys derive from.
func (kf *keyFile) tokenRoot() []byte {
	if kf.token != nil {
		return kf.token
	}
	return kf.keks[1]
}

func (kf *keyFile) clear() {
	clear(kf.token)
	for _, k := range kf.keks {
		clear(k)
	}
}

// keyLine is one line of a key file: label is "token", "v<N>", "" for a
// bare legacy line, or "#" for a comment or blank line.
type keyLine struct {
	raw     []byte // the line without its line end
	label   string
	version int // for v<N> and bare lines
}

// parseKeyFile reads a key file. Errors match ErrKeyFile and name the line
// by number only.
func parseKeyFile(b []byte) (*keyFile, []keyLine, error) {
	kf := &keyFile{keks: map[int][]byte{}}
	var lines []keyLine
	var seen [][]byte
	fail := func(n int, msg string) (*keyFile, []keyLine, error) {
		kf.clear()
		return nil, nil, fmt.Errorf("%w: line %d: %s", ErrKeyFile, n, msg)
	}
	n := 0
	for l := range bytes.Lines(b) {
		n++
		raw := bytes.TrimRight(l, "\r\n")
		l = bytes.TrimSpace(l)
		if len(l) == 0 || l[0] == '#' {
			lines = append(lines, keyLine{raw: raw, label: "#"})
			continue
		}
		fields := bytes.Fields(l)
		var label string
		var hexKey []byte
		switch len(fields) {
		case 1:
			hexKey = fields[0]
		case 2:
			label, hexKey = string(fields[0]), fields[1]
		default:
			return fail(n, "want a label and a key")
		}
		kl := keyLine{raw: raw, label: label}
		switch {
		case label == "":
			kl.version = 1
		case label == "token":
			if kf.token != nil {
				return fail(n, "a second token line")
			}
		default:
			v, ok := parseVersionLabel(label)
			if !ok {
				return fail(n, "unknown label (want token or v1 to v65535)")
			}
			kl.version = v
		}
		if kl.version != 0 {
			if _, dup := kf.keks[kl.version]; dup {
				return fail(n, "a second key for version "+strconv.Itoa(kl.version))
			}
		}
		if hex.DecodedLen(len(hexKey)) != masterLen {
			return fail(n, fmt.Sprintf("want %d hex-encoded bytes", masterLen))
		}
		key := make([]byte, masterLen)
		if _, err := hex.Decode(key, hexKey); err != nil {
			clear(key)
			return fail(n, "not hex")
		}
		for _, k := range seen {
			if subtle.ConstantTimeCompare(k, key) == 1 {
				clear(key)
				return fail(n, "the same key as an earlier line")
			}
		}
		seen = append(seen, key)
		if label == "token" {
			kf.token = key
		} else {
			kf.keks[kl.version] = key
		}
		lines = append(lines, kl)
	}
	if len(kf.keks) == 0 {
		kf.clear()
		return nil, nil, fmt.Errorf("%w: no KEK version", ErrKeyFile)
	}
	if kf.tokenRoot() == nil {
		kf.clear()
		return nil, nil, fmt.Errorf("%w: no token line and no version 1 to derive the token keys from", ErrKeyFile)
	}
	return kf, lines, nil
}

// parseVersionLabel parses "v<N>", N in 1..MaxKEKVersion without leading
// zeros, so that a version has one spelling.
func parseVersionLabel(s string) (int, bool) {
	if len(s) < 2 || s[0] != 'v' || s[1] == '0' {
		return 0, false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.Atoi(s[1:])
	if err != nil || v < 1 || v > MaxKEKVersion {
		return 0, false
	}
	return v, true
}

const keyFileHeader = "# blindpost vault master key: keep secret, keep a backup; losing it loses every record\n"

const keyFileHelp = `# "token" is the root of the token keys: changing it changes every token.
# "vN" are the KEK versions: Wrap uses the newest, Unwrap opens any listed.
`

// GenerateKeyFile writes a new key file to path, mode 0600: a random token
// root and a random KEK version 1. It refuses to overwrite an existing
// file: replacing a key makes every record sealed under it unreadable.
//
// A key file is UTF-8 text, one key a line, LF or CRLF; blank lines and
// lines starting with '#' are ignored:
//
//	token <64 hex digits>   the root of the token keys
//	v1 <64 hex digits>      KEK master key, version 1
//	v2 <64 hex digits>      KEK master key, version 2 (Wrap uses the newest)
//
// Versions run from 1 to MaxKEKVersion; each appears once, and no key
// twice. A file written before KEK versions holds one bare line of 64 hex
// digits: it reads as version 1 and, with no token line, version 1 is also
// the root of the token keys, as it always was; such a version cannot be
// retired without changing every token (ErrTokenRoot). The token root is
// kept apart from the KEK versions because tokens are pinned (they change
// only in a planned re-tokenisation), whereas retiring a KEK version must
// destroy it.
func GenerateKeyFile(path string) error {
	token, kek := make([]byte, masterLen), make([]byte, masterLen)
	defer clear(token)
	defer clear(kek)
	if _, err := rand.Read(token); err != nil {
		return fmt.Errorf("generate key file: %w", err)
	}
	if _, err := rand.Read(kek); err != nil {
		return fmt.Errorf("generate key file: %w", err)
	}
	b := []byte(keyFileHeader + keyFileHelp + "token " + hex.EncodeToString(token) + "\nv1 " + hex.EncodeToString(kek) + "\n")
	defer clear(b)
	if err := writeNew(path, b); err != nil {
		return fmt.Errorf("generate key file: %w", err)
	}
	return nil
}

// RotateKeyFile adds a new random KEK version to the key file at path,
// one above the newest, and returns it. The file is replaced atomically
// (a temporary file, fsync, rename, fsync of the directory), mode 0600;
// every existing line is kept as it was.
//
// Running providers pick the new version up by themselves: Wrap and
// KEKVersion look at the file, and Unwrap of a key wrapped by a version
// they do not hold re-reads it.
func RotateKeyFile(path string) (newVersion int, err error) {
	err = updateKeyFile(path, func(kf *keyFile, lines []keyLine, old []byte) ([]byte, error) {
		newVersion = kf.newest() + 1
		if newVersion > MaxKEKVersion {
			return nil, fmt.Errorf("%w: KEK version %d is the last one", ErrKeyFile, MaxKEKVersion)
		}
		key := make([]byte, masterLen)
		defer clear(key)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(old)+100)
		out = append(out, old...)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, "v"+strconv.Itoa(newVersion)+" "...)
		out = hex.AppendEncode(out, key)
		return append(out, '\n'), nil
	})
	if err != nil {
		return 0, fmt.Errorf("rotate key file: %w", err)
	}
	return newVersion, nil
}

// RetireKeyVersion removes KEK version v from the key file at path,
// atomically like RotateKeyFile, keeping every other line. It refuses the
// newest version (ErrRetireNewest) and a version that is also the token
// root (ErrTokenRoot).
//
// Retire a version only after a Rewrap pass of every tenant reports an
// Oldest above it, and after every process using the file has seen the
// rotation (a Put or a restart): from then on nothing wrapped by it opens.
// The old file's blocks are overwritten with zeros, but copies of the key
// file (backups, filesystem snapshots, copy-on-write or flash remapping)
// keep the version until they are destroyed too.
func RetireKeyVersion(path string, v int) error {
	err := updateKeyFile(path, func(kf *keyFile, lines []keyLine, _ []byte) ([]byte, error) {
		if _, ok := kf.keks[v]; !ok {
			return nil, fmt.Errorf("no KEK version %d in the key file", v)
		}
		if v == kf.newest() {
			return nil, ErrRetireNewest
		}
		if v == 1 && kf.token == nil {
			return nil, ErrTokenRoot
		}
		var out []byte
		for _, l := range lines {
			if l.label != "#" && l.label != "token" && l.version == v {
				continue
			}
			out = append(out, l.raw...)
			out = append(out, '\n')
		}
		return out, nil
	})
	if err != nil {
		return fmt.Errorf("retire KEK version %d: %w", v, err)
	}
	return nil
}

// updateKeyFile replaces the key file at path with edit's output. The
// lock file path + ".new" is created exclusively and becomes the new file,
// so two updates never interleave. The new content is parsed before it
// replaces the old, and the old file is overwritten with zeros after the
// rename, so a retired version does not stay in its blocks.
func updateKeyFile(path string, edit func(kf *keyFile, lines []keyLine, old []byte) ([]byte, error)) (err error) {
	// Update the file a symbolic link names, and keep the link.
	path, err = filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w (%s exists)", ErrKeyFileBusy, tmp)
	}
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()

	// Read the file under the lock, through a descriptor kept open so
	// that its blocks can be overwritten once it is replaced.
	old, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer old.Close()
	fi, err := old.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if err := sameOwner(f, fi); err != nil {
		return fmt.Errorf("give the new key file the owner of the old: %w", err)
	}
	b := make([]byte, fi.Size())
	defer clear(b)
	if _, err := old.ReadAt(b, 0); err != nil {
		return err
	}
	kf, lines, err := parseKeyFile(b)
	if err != nil {
		return err
	}
	defer kf.clear()
	out, err := edit(kf, lines, b)
	if err != nil {
		return err
	}
	defer clear(out)
	check, _, err := parseKeyFile(out)
	if err != nil {
		return fmt.Errorf("the new key file would not parse: %w", err)
	}
	check.clear()

	if _, err := f.Write(out); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		f = nil
		os.Remove(tmp)
		return err
	}
	f = nil
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	// The new file is in place. Overwrite the old one's blocks (best
	// effort: see RetireKeyVersion), unless another name still links to
	// them.
	if fi, err := old.Stat(); err == nil {
		if n, ok := linkCount(fi); ok && n == 0 {
			if _, err := old.WriteAt(make([]byte, len(b)), 0); err == nil {
				old.Sync()
			}
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return err
	}
	return nil
}
