package envelope_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/envelope"
)

func TestKeyIDAndFingerprintFormat(t *testing.T) {
	// SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
	if got := envelope.KeyIDOf([]byte("abc")); got != "ba7816bf8f01cfea" {
		t.Errorf("KeyIDOf: %q", got)
	}
	if got := envelope.Fingerprint([]byte("abc")); got != "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0" {
		t.Errorf("Fingerprint: %q", got)
	}
	rk := mustRecipientKey(t)
	if rk.ID != envelope.KeyIDOf(rk.Public().Bytes()) || !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(string(rk.ID)) {
		t.Errorf("recipient key id %q", rk.ID)
	}
	sk := mustSigningKey(t)
	if sk.ID != envelope.KeyIDOf(sk.Public().Public) {
		t.Errorf("signing key id %q", sk.ID)
	}
}

func TestGatewayKeyFilesRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if err := envelope.WriteGatewayKeys(dir, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %v, %v; want 0700", st.Mode().Perm(), err)
	}
	for name, perm := range map[string]fs.FileMode{"hpke.key": 0o600, "signing.key": 0o600, "hpke.pub": 0o644, "signing.pub": 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&^perm != 0 {
			t.Errorf("%s has mode %v, want at most %v", name, st.Mode().Perm(), perm)
		}
	}
	rk, err := envelope.LoadRecipientKey(filepath.Join(dir, "hpke.key"))
	if err != nil {
		t.Fatal(err)
	}
	rp, err := envelope.LoadRecipientPublicKey(filepath.Join(dir, "hpke.pub"))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := envelope.LoadSigningKey(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	vk, err := envelope.LoadVerifyingKey(filepath.Join(dir, "signing.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if rk.ID != rp.ID || sk.ID != vk.ID {
		t.Fatal("public key files do not match the private ones")
	}

	// The loaded keys work together.
	f := newFixture(t)
	f.sealer.Key, f.sealer.Recipient = sk, rp
	f.opener.Keys = envelope.NewRecipientKeyring(rk)
	f.opener.Senders.Pin(tenant, vk)
	if _, err := f.opener.Open(t.Context(), f.seal(t, messages(1))); err != nil {
		t.Fatal(err)
	}
}

func TestWriteKeysRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	if err := envelope.WriteCoreKeys(dir, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "signing.key"))
	if err := envelope.WriteCoreKeys(dir, nil); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second WriteCoreKeys: %v, want fs.ErrExist", err)
	}
	// A gateway key set over a core one writes nothing at all.
	if err := envelope.WriteGatewayKeys(dir, nil); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteGatewayKeys over core keys: %v, want fs.ErrExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "hpke.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a refused WriteGatewayKeys left hpke.key behind")
	}
	after, _ := os.ReadFile(filepath.Join(dir, "signing.key"))
	if string(before) != string(after) {
		t.Fatal("signing.key changed")
	}
}

func TestLoadRejectsWrongKeyFiles(t *testing.T) {
	dir := t.TempDir()
	if err := envelope.WriteGatewayKeys(dir, nil); err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "signing.pub"))
	lines := strings.SplitN(string(pub), "\n", 2)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := map[string]func() error{
		"public file as private key": func() error { _, err := envelope.LoadSigningKey(filepath.Join(dir, "signing.pub")); return err },
		"signing key as hpke key":    func() error { _, err := envelope.LoadRecipientKey(filepath.Join(dir, "signing.key")); return err },
		"hpke public as ed25519":     func() error { _, err := envelope.LoadVerifyingKey(filepath.Join(dir, "hpke.pub")); return err },
		"wrong version": func() error {
			_, err := envelope.LoadVerifyingKey(write("v2", strings.Replace(string(pub), " v1", " v2", 1)))
			return err
		},
		"short key": func() error {
			_, err := envelope.LoadVerifyingKey(write("short", lines[0]+"\nAAAA\n"))
			return err
		},
		"padded base64": func() error {
			_, err := envelope.LoadVerifyingKey(write("pad", strings.TrimSpace(string(pub))+"=\n"))
			return err
		},
		"extra line": func() error {
			_, err := envelope.LoadVerifyingKey(write("extra", string(pub)+"more\n"))
			return err
		},
		"missing file": func() error { _, err := envelope.LoadSigningKey(filepath.Join(dir, "nope")); return err },
	}
	for name, load := range tests {
		t.Run(name, func(t *testing.T) {
			err := load()
			if err == nil {
				t.Fatal("loaded")
			}
			if strings.Contains(err.Error(), strings.TrimSpace(lines[1])) {
				t.Fatalf("error quotes key material: %v", err)
			}
		})
	}
	// CRLF line ends, as an editor on another system might leave them, load.
	if _, err := envelope.LoadVerifyingKey(write("crlf", strings.ReplaceAll(string(pub), "\n", "\r\n"))); err != nil {
		t.Fatalf("CRLF key file: %v", err)
	}
}
