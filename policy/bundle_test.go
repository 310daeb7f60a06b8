package policy_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/blindpost/blindpost/policy"
)

// testKey is a signing key generated for one test, with the public half in
// the form the gateway is configured with.
type testKey struct {
	alg     string
	private string // PEM
	public  policy.PublicKey
}

func newTestKey(t testing.TB, alg string) testKey {
	t.Helper()
	var priv crypto.Signer
	switch alg {
	case "ES256":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	case "EdDSA":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	default:
		t.Fatalf("no test key for %s", alg)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return testKey{
		alg:     alg,
		private: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		public: policy.PublicKey{ID: "release", Algorithm: alg,
			PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))},
	}
}

// signedTarball builds an OPA bundle tarball of the .rego files and
// data.json of fsys, signed with k as `opa build --signing-key` would.
func signedTarball(t testing.TB, fsys fs.FS, k testKey) []byte {
	t.Helper()
	b := opabundle.Bundle{Manifest: opabundle.Manifest{Revision: "test"}, Data: map[string]any{}}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		switch {
		case name == "data.json":
			return util.UnmarshalJSON(src, &b.Data)
		case strings.HasSuffix(name, ".rego"):
			m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				return err
			}
			b.Modules = append(b.Modules, opabundle.ModuleFile{URL: "/" + name, Path: "/" + name, Raw: src, Parsed: m})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Manifest.Init()
	if err := b.GenerateSignature(opabundle.NewSigningConfig(k.private, k.alg, ""), k.public.ID, false); err != nil {
		t.Fatalf("sign: %v", err)
	}
	var buf bytes.Buffer
	if err := opabundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rewriteTarball returns tarball with its files passed through edit (which
// may change, drop or add files; nil content drops the file).
func rewriteTarball(t testing.TB, tarball []byte, edit func(files map[string][]byte)) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tarball))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	var order []string
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
		order = append(order, h.Name)
	}
	edit(files)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	write := func(name string) {
		b, ok := files[name]
		if !ok || b == nil {
			return
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
		delete(files, name)
	}
	for _, name := range order {
		write(name)
	}
	for name := range files {
		write(name)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestSignedBundleLoadsAndDecidesLikeTheDirectory(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k := newTestKey(t, alg)
			fsys, err := policy.ReadSignedBundle(bytes.NewReader(signedTarball(t, policy.BundleFS(), k)), k.public)
			if err != nil {
				t.Fatalf("ReadSignedBundle: %v", err)
			}
			fromTarball := mustNew(t, fsys, policy.Options{})
			fromDir := mustNew(t, policy.BundleFS(), policy.Options{})
			for _, in := range []policy.Input{benchInput(), accept("email", "marketing", "phone"), send("sms", "marketing", subject(nil, nil))} {
				d1, err1 := fromTarball.Decide(context.Background(), in)
				d2, err2 := fromDir.Decide(context.Background(), in)
				if err1 != nil || err2 != nil || d1.Allow != d2.Allow || strings.Join(d1.Reasons, ",") != strings.Join(d2.Reasons, ",") {
					t.Errorf("tarball %v %q %v, directory %v %q %v", d1.Allow, d1.Reasons, err1, d2.Allow, d2.Reasons, err2)
				}
			}
			// The tests travel with the bundle and still pass.
			results, err := policy.RunTests(context.Background(), fsys)
			if err != nil || len(results) == 0 {
				t.Fatalf("RunTests: %d results, %v", len(results), err)
			}
			for _, r := range results {
				if !r.Pass() {
					t.Error(r)
				}
			}
		})
	}
}

// A signed bundle is loaded only if every file is covered by a valid
// signature of a configured key.
func TestSignedBundleRefusedUnlessVerified(t *testing.T) {
	k := newTestKey(t, "ES256")
	good := signedTarball(t, policy.BundleFS(), k)
	other := newTestKey(t, "ES256")
	other.public.ID = k.public.ID
	tests := []struct {
		name    string
		tarball []byte
		keys    []policy.PublicKey
		is      error
	}{
		{"no key configured", good, nil, policy.ErrNoBundleKey},
		{"signed by another key", good, []policy.PublicKey{other.public}, nil},
		{"key id unknown", good, []policy.PublicKey{{ID: "someone-else", Algorithm: "ES256", PEM: k.public.PEM}}, nil},
		{"unsigned", rewriteTarball(t, good, func(f map[string][]byte) { f["/.signatures.json"] = nil }), []policy.PublicKey{k.public}, nil},
		{"rule changed after signing", rewriteTarball(t, good, func(f map[string][]byte) {
			f["/consent.rego"] = mustReplace(t, f["/consent.rego"], "marketing_email == true", "marketing_email == false")
		}), []policy.PublicKey{k.public}, nil},
		{"setting changed after signing", rewriteTarball(t, good, func(f map[string][]byte) {
			f["/data.json"] = mustReplace(t, f["/data.json"], `"sender_domains":[]`, `"sender_domains":["attacker.example"]`)
		}), []policy.PublicKey{k.public}, nil},
		{"file added after signing", rewriteTarball(t, good, func(f map[string][]byte) {
			f["/extra.rego"] = []byte("package blindpost.gateway\n\nobligations.hold := true\n")
		}), []policy.PublicKey{k.public}, nil},
		{"file removed after signing", rewriteTarball(t, good, func(f map[string][]byte) { f["/consent.rego"] = nil }), []policy.PublicKey{k.public}, nil},
		{"not a tarball", []byte("package blindpost.gateway\n"), []policy.PublicKey{k.public}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys, err := policy.ReadSignedBundle(bytes.NewReader(tt.tarball), tt.keys...)
			if err == nil {
				t.Fatalf("loaded (%v), want an error", fsys)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want %v", err, tt.is)
			}
		})
	}
	// The premise of the cases above: the untouched tarball loads.
	if _, err := policy.ReadSignedBundle(bytes.NewReader(rewriteTarball(t, good, func(map[string][]byte) {})), k.public); err != nil {
		t.Fatalf("repacked but unchanged tarball refused: %v", err)
	}
}

// mustReplace replaces old with new in b, and fails if old is not there.
func mustReplace(t testing.TB, b []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%q not found", old)
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

func TestOpenBundleDirectoryOrTarball(t *testing.T) {
	k := newTestKey(t, "ES256")
	dir := t.TempDir()
	path := filepath.Join(dir, "bundle.tar.gz")
	if err := os.WriteFile(path, signedTarball(t, policy.BundleFS(), k), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.OpenBundle(path, k.public); err != nil {
		t.Errorf("signed tarball: %v", err)
	}
	if _, err := policy.OpenBundle(path); !errors.Is(err, policy.ErrNoBundleKey) {
		t.Errorf("tarball without key: err = %v, want ErrNoBundleKey", err)
	}
	fsys, err := policy.OpenBundle(writeBundleDir(t, policy.BundleFS()))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustNew(t, fsys, policy.Options{}).Revision(), mustNew(t, policy.BundleFS(), policy.Options{}).Revision(); got != want {
		t.Errorf("directory revision %s, embedded %s", got, want)
	}
	if _, err := policy.OpenBundle(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing path opened")
	}
}

// writeBundleDir copies fsys into a new temporary directory.
func writeBundleDir(t testing.TB, fsys fs.FS) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, fsys); err != nil {
		t.Fatal(err)
	}
	return dir
}
