package embedded_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/hkdf"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
)

// hexKey returns a random key as 64 hex digits, generated at test time.
func hexKey(t testing.TB) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(k)
}

func writeKeyFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vault.key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustVersions(t testing.TB, kp *embedded.LocalKeyProvider) []int {
	t.Helper()
	vs, err := kp.KEKVersions()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestKeyFileParsing(t *testing.T) {
	k1, k2, k3, tok := hexKey(t), hexKey(t), hexKey(t), hexKey(t)
	for _, c := range []struct {
		name     string
		content  string
		versions []int // nil: refused
	}{
		{"legacy bare line", k1 + "\n", []int{1}},
		{"legacy with comment, CRLF, no final newline", "# comment\r\n\r\n" + k1, []int{1}},
		{"legacy upper-case hex", strings.ToUpper(k1) + "\n", []int{1}},
		{"generated layout", "# c\ntoken " + tok + "\nv1 " + k1 + "\n", []int{1}},
		{"rotated", "token " + tok + "\nv1 " + k1 + "\nv2 " + k2 + "\n", []int{1, 2}},
		{"any order, tabs", "v2\t" + k2 + "\n  v1 " + k1 + "  \ntoken " + tok + "\n", []int{1, 2}},
		{"legacy line rotated", k1 + "\nv2 " + k2 + "\n", []int{1, 2}},
		{"version 1 retired", "token " + tok + "\nv2 " + k2 + "\nv3 " + k3 + "\n", []int{2, 3}},
		{"highest version", "token " + tok + "\nv65535 " + k2 + "\n", []int{65535}},

		{"empty", "", nil},
		{"only comments", "# nothing\n\n", nil},
		{"token but no KEK version", "token " + tok + "\n", nil},
		{"no token line and no version 1", "v2 " + k2 + "\nv3 " + k3 + "\n", nil},
		{"short key", "v1 00112233\n", nil},
		{"not hex", "v1 " + strings.Repeat("zz", 32) + "\n", nil},
		{"raw bytes", strings.Repeat("k", 32), nil},
		{"three fields", "v1 " + k1 + " extra\n", nil},
		{"version 0", "token " + tok + "\nv0 " + k1 + "\n", nil},
		{"leading zero", "token " + tok + "\nv01 " + k1 + "\n", nil},
		{"version too high", "token " + tok + "\nv65536 " + k1 + "\n", nil},
		{"upper-case label", "token " + tok + "\nV1 " + k1 + "\n", nil},
		{"unknown label", "token " + tok + "\nkek1 " + k1 + "\n", nil},
		{"negative version", "token " + tok + "\nv-1 " + k1 + "\n", nil},
		{"duplicate version", "v1 " + k1 + "\nv1 " + k2 + "\n", nil},
		{"two bare lines", k1 + "\n" + k2 + "\n", nil},
		{"bare line and v1", k1 + "\nv1 " + k2 + "\n", nil},
		{"two token lines", "token " + tok + "\ntoken " + k3 + "\nv1 " + k1 + "\n", nil},
		{"same key twice", "v1 " + k1 + "\nv2 " + k1 + "\n", nil},
		{"token equals a version", "token " + k2 + "\nv1 " + k1 + "\nv2 " + k2 + "\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			kp, err := embedded.NewKeyFileProvider(writeKeyFile(t, c.content))
			if c.versions == nil {
				if err == nil {
					t.Fatalf("accepted; versions %v", mustVersions(t, kp))
				}
				if !errors.Is(err, embedded.ErrKeyFile) {
					t.Errorf("err = %v, want ErrKeyFile", err)
				}
				for _, k := range []string{k1, k2, k3, tok} {
					if strings.Contains(strings.ToLower(err.Error()), k[:16]) {
						t.Errorf("error %q quotes key material", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := mustVersions(t, kp); !slices.Equal(got, c.versions) {
				t.Errorf("versions %v, want %v", got, c.versions)
			}
		})
	}
}

func TestGeneratedKeyFilesHaveATokenRootApartFromTheKEK(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.key")
	if err := embedded.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var labels []string
	keys := map[string]bool{}
	for l := range strings.Lines(string(b)) {
		if f := strings.Fields(l); len(f) == 2 && !strings.HasPrefix(l, "#") {
			labels = append(labels, f[0])
			keys[f[1]] = true
		}
	}
	if !slices.Equal(labels, []string{"token", "v1"}) || len(keys) != 2 {
		t.Fatalf("key lines %v (%d distinct keys), want token and v1", labels, len(keys))
	}
}

// legacyWrap wraps as every release before KEK versions did: vault.Seal
// under HKDF-SHA256(master, info "blindpost-kek-v1" ‖ u32be(len(tenant)) ‖
// tenant). It is written out here, apart from the package, so that the
// test fails if the package's version 1 drifts from it.
func legacyWrap(t testing.TB, masterHex, tenant string, dk, ad []byte) (wrapped, kek []byte) {
	t.Helper()
	master, _ := hex.DecodeString(masterHex)
	info := append([]byte("blindpost-kek-v1"), binary.BigEndian.AppendUint32(nil, uint32(len(tenant)))...)
	info = append(info, tenant...)
	kek = make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, master, nil, info), kek); err != nil {
		t.Fatal(err)
	}
	w, err := vault.Seal(kek, dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	return w, kek
}

func TestALegacyKeyFileAndItsWrappedKeysStillWork(t *testing.T) {
	master := hexKey(t)
	path := writeKeyFile(t, "# blindpost vault master key: keep secret\n"+master+"\n")
	kp, err := embedded.NewKeyFileProvider(path)
	if err != nil {
		t.Fatal(err)
	}
	dk, ad := []byte("0123456789abcdef0123456789abcdef"), []byte("ad")
	old, kek := legacyWrap(t, master, "acme", dk, ad)
	if got, err := kp.Unwrap(ctx, "acme", old, ad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("Unwrap of a legacy wrapped key = %x, %v", got, err)
	}
	// Until the first rotation, new wraps are what older binaries read.
	w, err := kp.Wrap(ctx, "acme", dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := vault.Open(kek, w, ad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("a version-1 wrap is not in the legacy format: %v", err)
	}
	if v, latest, err := kp.KEKVersion(ctx, "acme", old); err != nil || v != 1 || latest != 1 {
		t.Fatalf("KEKVersion(legacy) = %d, %d, %v", v, latest, err)
	}

	if v, err := embedded.RotateKeyFile(path); err != nil || v != 2 {
		t.Fatalf("RotateKeyFile = %d, %v", v, err)
	}
	w2, err := kp.Wrap(ctx, "acme", dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	if v, latest, err := kp.KEKVersion(ctx, "acme", w2); err != nil || v != 2 || latest != 2 {
		t.Fatalf("KEKVersion after rotation = %d, %d, %v", v, latest, err)
	}
	for _, w := range [][]byte{old, w2} {
		if got, err := kp.Unwrap(ctx, "acme", w, ad); err != nil || !bytes.Equal(got, dk) {
			t.Fatalf("Unwrap after rotation = %x, %v", got, err)
		}
	}
	// Version 1 is also the token root of a legacy file.
	if err := embedded.RetireKeyVersion(path, 1); !errors.Is(err, embedded.ErrTokenRoot) {
		t.Fatalf("RetireKeyVersion(legacy 1) = %v, want ErrTokenRoot", err)
	}
}

func TestTheTokenRootKeepsTokensAcrossLayouts(t *testing.T) {
	master := hexKey(t)
	legacy, err := embedded.NewKeyFileProvider(writeKeyFile(t, master+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	split, err := embedded.NewKeyFileProvider(writeKeyFile(t, "token "+master+"\nv1 "+hexKey(t)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 2; v++ {
		a, _ := legacy.TokenMAC(ctx, "acme", v, []byte("msg"))
		b, _ := split.TokenMAC(ctx, "acme", v, []byte("msg"))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("token version %d: a token line does not derive what a legacy master does", v)
		}
	}
}

func TestRotateKeyFileAppendsAVersionAndKeepsEveryLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.key")
	if err := embedded.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	for want := 2; want <= 3; want++ {
		v, err := embedded.RotateKeyFile(path)
		if err != nil || v != want {
			t.Fatalf("RotateKeyFile = %d, %v; want %d", v, err, want)
		}
	}
	after, _ := os.ReadFile(path)
	if !bytes.HasPrefix(after, before) {
		t.Fatalf("rotation changed existing lines:\n%s\n---\n%s", before, after)
	}
	added := strings.Split(strings.TrimSpace(string(after[len(before):])), "\n")
	if len(added) != 2 || !strings.HasPrefix(added[0], "v2 ") || !strings.HasPrefix(added[1], "v3 ") || added[0][3:] == added[1][3:] {
		t.Fatalf("added lines %q", added)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(path + ".new"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lock file left behind: %v", err)
	}
	kp, err := embedded.NewKeyFileProvider(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustVersions(t, kp); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("versions %v", got)
	}

	// A file without a final newline gets one before the new line.
	k := hexKey(t)
	p2 := writeKeyFile(t, k)
	if v, err := embedded.RotateKeyFile(p2); err != nil || v != 2 {
		t.Fatalf("RotateKeyFile(no final newline) = %d, %v", v, err)
	}
	if b, _ := os.ReadFile(p2); !strings.HasPrefix(string(b), k+"\nv2 ") {
		t.Fatalf("file %q", b)
	}
}

func TestKeyFileUpdatesRefuseAndLeaveTheFileAlone(t *testing.T) {
	tok, k1, k2 := hexKey(t), hexKey(t), hexKey(t)
	rotated := "# keep this comment\ntoken " + tok + "\nv1 " + k1 + "\nv2 " + k2 + "\n"
	for _, c := range []struct {
		name    string
		content string
		busy    bool
		do      func(path string) error
		want    error
	}{
		{"rotate a malformed file", "v1 " + k1 + "\nv1 " + k2 + "\n", false,
			func(p string) error { _, err := embedded.RotateKeyFile(p); return err }, embedded.ErrKeyFile},
		{"rotate while another update runs", rotated, true,
			func(p string) error { _, err := embedded.RotateKeyFile(p); return err }, embedded.ErrKeyFileBusy},
		{"retire the newest", rotated, false,
			func(p string) error { return embedded.RetireKeyVersion(p, 2) }, embedded.ErrRetireNewest},
		{"retire the legacy token root", k1 + "\nv2 " + k2 + "\n", false,
			func(p string) error { return embedded.RetireKeyVersion(p, 1) }, embedded.ErrTokenRoot},
		{"retire a version not there", rotated, false,
			func(p string) error { return embedded.RetireKeyVersion(p, 7) }, nil},
		{"retire while another update runs", rotated, true,
			func(p string) error { return embedded.RetireKeyVersion(p, 1) }, embedded.ErrKeyFileBusy},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeKeyFile(t, c.content)
			if c.busy {
				if err := os.WriteFile(path+".new", nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := c.do(path)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if b, _ := os.ReadFile(path); string(b) != c.content {
				t.Fatalf("the key file changed to %q", b)
			}
			if _, err := os.Stat(path + ".new"); c.busy != (err == nil) {
				t.Fatalf("lock file: %v (busy %v)", err, c.busy)
			}
		})
	}
}

func TestRetireKeyVersionRemovesOnlyThatLine(t *testing.T) {
	tok, k1, k2, k3 := hexKey(t), hexKey(t), hexKey(t), hexKey(t)
	path := writeKeyFile(t, "# head\ntoken "+tok+"\n# about v1\nv1 "+k1+"\nv2 "+k2+"\nv3 "+k3+"\n")
	if err := embedded.RetireKeyVersion(path, 2); err != nil {
		t.Fatal(err)
	}
	if err := embedded.RetireKeyVersion(path, 1); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if want := "# head\ntoken " + tok + "\n# about v1\nv3 " + k3 + "\n"; string(b) != want {
		t.Fatalf("file\n%s\nwant\n%s", b, want)
	}
	if strings.Contains(string(b), k1) || strings.Contains(string(b), k2) {
		t.Fatal("a retired key is still in the file")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestRetireKeyVersionOverwritesTheOldFileUnlessLinkedElsewhere(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("link counts are read on unix only")
	}
	tok, k1, k2 := hexKey(t), hexKey(t), hexKey(t)
	content := "token " + tok + "\nv1 " + k1 + "\nv2 " + k2 + "\n"

	// The old file's blocks, read through a descriptor opened before.
	path := writeKeyFile(t, content)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := embedded.RetireKeyVersion(path, 1); err != nil {
		t.Fatal(err)
	}
	old, _ := io.ReadAll(f)
	if len(old) != len(content) || bytes.Count(old, []byte{0}) != len(old) {
		t.Errorf("the replaced file still holds %q", old)
	}

	// A second name (a hard-linked backup) keeps its content.
	path = writeKeyFile(t, content)
	backup := path + ".bak"
	if err := os.Link(path, backup); err != nil {
		t.Skip("no hard links here:", err)
	}
	if err := embedded.RetireKeyVersion(path, 1); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(backup); string(b) != content {
		t.Errorf("a hard link to the old file was overwritten: %q", b)
	}
}

func TestKeyFileUpdatesFollowASymbolicLink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.key")
	if err := embedded.GenerateKeyFile(real); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "vault.key")
	if err := os.Symlink(real, link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	if _, err := embedded.RotateKeyFile(link); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v", err)
	}
	kp, err := embedded.NewKeyFileProvider(real)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustVersions(t, kp); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("versions of the link's target %v", got)
	}
}

func TestRunningProvidersFollowTheKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.key")
	if err := embedded.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	gateway, err := embedded.NewKeyFileProvider(path) // loaded before the rotation
	if err != nil {
		t.Fatal(err)
	}
	dk, ad := []byte("0123456789abcdef0123456789abcdef"), []byte("ad")
	w1, _ := gateway.Wrap(ctx, "acme", dk, ad)
	if _, err := embedded.RotateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	cli, err := embedded.NewKeyFileProvider(path)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := cli.Wrap(ctx, "acme", dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	// A key wrapped by a version the running provider has not loaded.
	if got, err := gateway.Unwrap(ctx, "acme", w2, ad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("Unwrap of a newer version = %x, %v", got, err)
	}
	if w, _ := gateway.Wrap(ctx, "acme", dk, ad); w[0] != 0xb5 || w[2] != 2 {
		t.Fatalf("the running provider still wraps with version 1: % x", w[:3])
	}

	if err := embedded.RetireKeyVersion(path, 1); err != nil {
		t.Fatal(err)
	}
	_, err = gateway.Unwrap(ctx, "acme", w1, ad)
	if !errors.Is(err, vault.ErrCorrupt) || !errors.Is(err, embedded.ErrKEKVersion) {
		t.Fatalf("Unwrap by a retired version: %v, want ErrCorrupt and ErrKEKVersion", err)
	}

	// Another key file in its place: refuse to wrap, keep opening.
	other := filepath.Join(t.TempDir(), "other.key")
	embedded.GenerateKeyFile(other)
	if _, err := embedded.RotateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(other)
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.Wrap(ctx, "acme", dk, ad); !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("Wrap after the key file was replaced: %v, want ErrUnavailable", err)
	}
	if got, err := gateway.Unwrap(ctx, "acme", w2, ad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("Unwrap after the key file was replaced = %x, %v", got, err)
	}
}

func TestWrappedKeyHeadersAreCheckedAndAuthenticated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.key")
	embedded.GenerateKeyFile(path)
	embedded.RotateKeyFile(path)
	embedded.RotateKeyFile(path)
	kp, err := embedded.NewKeyFileProvider(path)
	if err != nil {
		t.Fatal(err)
	}
	dk, ad := []byte("0123456789abcdef0123456789abcdef"), []byte("ad")
	w, err := kp.Wrap(ctx, "acme", dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 3+24+32+16 || w[0] != 0xb5 || w[1] != 0 || w[2] != 3 {
		t.Fatalf("wrapped key % x…, %d bytes", w[:3], len(w))
	}
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(w)) }
	for name, bad := range map[string][]byte{
		"version 2 in the header": edit(func(b []byte) []byte { b[2] = 2; return b }),
		"version 1 in the header": edit(func(b []byte) []byte { b[2] = 1; return b }),
		"version 0 in the header": edit(func(b []byte) []byte { b[2] = 0; return b }),
		"legacy format byte":      edit(func(b []byte) []byte { return append([]byte{1}, b[3:]...) }),
		"unknown format byte":     edit(func(b []byte) []byte { b[0] = 2; return b }),
		"header only":             w[:3],
		"truncated":               w[:40],
		"empty":                   nil,
	} {
		if _, err := kp.Unwrap(ctx, "acme", bad, ad); !errors.Is(err, vault.ErrCorrupt) {
			t.Errorf("%s: Unwrap err = %v, want ErrCorrupt", name, err)
		}
	}
	// A version newer than the key file is another node's rotation that
	// has not reached this node's file: retryable, never corrupt.
	newer := edit(func(b []byte) []byte { b[1] = 9; return b })
	if _, err := kp.Unwrap(ctx, "acme", newer, ad); !errors.Is(err, vault.ErrUnavailable) || !errors.Is(err, embedded.ErrKEKVersion) || errors.Is(err, vault.ErrCorrupt) {
		t.Errorf("a newer version: Unwrap err = %v, want ErrUnavailable and ErrKEKVersion, not ErrCorrupt", err)
	}
	for _, bad := range [][]byte{nil, {0}, {0xb5, 0, 1}, {0xb5, 0}} {
		if _, _, err := kp.KEKVersion(ctx, "acme", bad); !errors.Is(err, vault.ErrCorrupt) {
			t.Errorf("KEKVersion(% x) err = %v, want ErrCorrupt", bad, err)
		}
	}
}

func TestAClosedProviderHoldsNoKeys(t *testing.T) {
	kp := newKey(t)
	dk, ad := []byte("0123456789abcdef0123456789abcdef"), []byte("ad")
	w, err := kp.Wrap(ctx, "acme", dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := kp.Unwrap(ctx, "acme", w, ad); err == nil {
		t.Error("Unwrap after Close succeeded")
	}
	if _, err := kp.Wrap(ctx, "acme", dk, ad); err == nil {
		t.Error("Wrap after Close succeeded")
	}
	if _, err := kp.TokenMAC(ctx, "acme", 1, []byte("m")); err == nil {
		t.Error("TokenMAC after Close succeeded")
	}
}
