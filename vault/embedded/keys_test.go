package embedded_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
)

func TestGenerateKeyFileIsPrivateAndRefusesToOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if err := embedded.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if err := embedded.GenerateKeyFile(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second GenerateKeyFile: %v, want ErrExist", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("key file changed")
	}
}

func TestKeyFilesAreGeneratedIndependently(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	embedded.GenerateKeyFile(a)
	embedded.GenerateKeyFile(b)
	ka, _ := os.ReadFile(a)
	kb, _ := os.ReadFile(b)
	if string(ka) == string(kb) {
		t.Fatal("two generated keys are equal")
	}
}

func TestMalformedKeyFilesAreRefused(t *testing.T) {
	for name, content := range map[string]string{
		"empty":       "",
		"short":       "00112233\n",
		"not hex":     strings.Repeat("zz", 32) + "\n",
		"two keys":    strings.Repeat("00", 32) + "\n" + strings.Repeat("11", 32) + "\n",
		"raw 32 byte": strings.Repeat("k", 32),
	} {
		path := filepath.Join(t.TempDir(), "k")
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := embedded.NewKeyFileProvider(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := embedded.NewKeyFileProvider(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestKeyProviderNeverPrintsTheKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	embedded.GenerateKeyFile(path)
	kp, _ := embedded.NewKeyFileProvider(path)
	b, _ := os.ReadFile(path)
	var keys []string
	for l := range strings.Lines(string(b)) {
		if f := strings.Fields(l); len(f) == 2 && f[0] != "#" {
			keys = append(keys, f[1])
		}
	}
	if len(keys) != 2 {
		t.Fatalf("test premise: %d key lines", len(keys))
	}
	for _, s := range []string{kp.String(), kp.GoString(), sprintAll(kp)} {
		for _, k := range keys {
			if strings.Contains(s, k) || strings.Contains(s, k[:8]) || strings.Contains(s, "master") {
				t.Fatalf("printed key material: %s", s)
			}
		}
	}
}

func TestWrappedKeysAreBoundToTenantAndAssociatedData(t *testing.T) {
	kp := newKey(t)
	dk := []byte("0123456789abcdef0123456789abcdef")
	w, err := kp.Wrap(ctx, "acme", dk, []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := kp.Unwrap(ctx, "acme", w, []byte("ad")); err != nil || string(got) != string(dk) {
		t.Fatalf("Unwrap = %q, %v", got, err)
	}
	for name, f := range map[string]func() error{
		"other tenant": func() error { _, err := kp.Unwrap(ctx, "globex", w, []byte("ad")); return err },
		"other ad":     func() error { _, err := kp.Unwrap(ctx, "acme", w, []byte("ad2")); return err },
		"other key":    func() error { _, err := newKey(t).Unwrap(ctx, "acme", w, []byte("ad")); return err },
		"truncated":    func() error { _, err := kp.Unwrap(ctx, "acme", w[:10], []byte("ad")); return err },
	} {
		if err := f(); !errors.Is(err, vault.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

func TestShortPassphrasesAreRefused(t *testing.T) {
	salt := filepath.Join(t.TempDir(), "salt")
	if _, err := embedded.NewPassphraseProvider([]byte("short"), salt); err == nil {
		t.Fatal("short passphrase accepted")
	}
	if _, err := os.Stat(salt); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("salt file created for a refused passphrase: %v", err)
	}
}

func sprintAll(v any) string {
	return fmt.Sprintf("%v %+v %#v %s", v, v, v, v)
}
