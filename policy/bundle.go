package policy

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"
)

//go:embed rego
var regoFS embed.FS

// BundleFS returns the policy bundle compiled into the binary: the files of
// policy/rego/, tests included, so that `blindpost policy test` can run them.
// New ignores the tests.
func BundleFS() fs.FS {
	sub, err := fs.Sub(regoFS, "rego")
	if err != nil {
		panic(err) // "rego" is a valid path; fs.Sub cannot fail on it
	}
	return sub
}

// dataFile is the name of the operator settings document, mounted at the
// root of data as in an OPA bundle.
const dataFile = "data.json"

// bundle is the parsed content of a policy bundle.
type bundle struct {
	modules  map[string]*ast.Module // by file name
	data     map[string]any         // data.json, or empty
	revision string
}

// loadBundle reads every .rego file and data.json from fsys. Test files
// (_test.rego) are read only if withTests is set; they never reach the
// production query and do not count towards its revision.
func loadBundle(fsys fs.FS, withTests bool) (*bundle, error) {
	if fsys == nil {
		return nil, ErrNoBundle
	}
	files := map[string][]byte{}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		base := path.Base(name)
		switch {
		case base == dataFile && name != dataFile:
			// OPA would mount it under its directory's path; this loader keeps
			// the operator settings in one place and says so instead.
			return fmt.Errorf("%s: only a data.json at the bundle root is supported", name)
		case strings.HasSuffix(base, "_test.rego") && !withTests:
			return nil
		case base == dataFile, strings.HasSuffix(base, ".rego"):
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				return err
			}
			files[name] = b
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy: read bundle: %w", err)
	}

	b := &bundle{modules: map[string]*ast.Module{}, data: map[string]any{}}
	for name, src := range files {
		if name == dataFile {
			continue
		}
		m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("policy: parse bundle: %w", err)
		}
		b.modules[name] = m
	}
	if len(b.modules) == 0 {
		return nil, ErrNoBundle
	}
	if src, ok := files[dataFile]; ok {
		d := json.NewDecoder(bytes.NewReader(src))
		d.UseNumber()
		if err := d.Decode(&b.data); err != nil {
			return nil, fmt.Errorf("policy: parse bundle: %s: %w", dataFile, err)
		}
		if d.More() {
			return nil, fmt.Errorf("policy: parse bundle: %s: trailing data", dataFile)
		}
	}
	b.revision = revision(files)
	return b, nil
}

// revision identifies the exact policy that produced a decision: the hex
// SHA-256 over the loaded files in name order, each as its name, a zero byte,
// its length as a big-endian uint64 and its content, so no two different
// bundles share a revision by moving bytes between files.
func revision(files map[string][]byte) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(files[name]))))
		h.Write(files[name])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// mergeData returns base with override merged in: objects merge key by key,
// any other override value (a list included) replaces the base value. Neither
// argument is modified.
func mergeData(base, override map[string]any) map[string]any {
	out := maps.Clone(base)
	for k, v := range override {
		bo, ok1 := out[k].(map[string]any)
		oo, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = mergeData(bo, oo)
		} else {
			out[k] = v
		}
	}
	return out
}

// PublicKey verifies signed bundle tarballs: OPA bundles (.tar.gz) whose
// .signatures.json holds a JWS over the hash of every file, as `opa build
// --signing-key` writes them.
type PublicKey struct {
	ID        string // the key id the signature names ("kid"); empty: "default", as opa build
	Algorithm string // the JWS algorithm, e.g. "ES256", "RS256", "EdDSA"; empty: "RS256", as opa build
	PEM       string // the public key, PEM ("PUBLIC KEY")
	Scope     string // if set, the signature's scope must equal it
}

// ErrNoBundleKey means a bundle tarball was offered without a key to verify
// it: tarballs are loaded only if their signature verifies.
var ErrNoBundleKey = errors.New("policy: no key to verify the bundle's signature")

// maxBundleBytes bounds each file read from a bundle tarball (a gzip bomb
// must not exhaust the gateway's memory).
const maxBundleBytes = 64 << 20

// OpenBundle opens the bundle at path: a directory of .rego files and a
// data.json, or a signed OPA bundle tarball, verified against keys (see
// ReadSignedBundle). Nothing is compiled yet: pass the result to New or
// Reload.
func OpenBundle(path string, keys ...PublicKey) (fs.FS, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("policy: open bundle: %w", err)
	}
	if fi.IsDir() {
		return os.DirFS(path), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: open bundle: %w", err)
	}
	defer f.Close()
	return ReadSignedBundle(f, keys...)
}

// ReadSignedBundle reads an OPA bundle tarball and verifies it with OPA's
// bundle package: its .signatures.json must hold a signature by one of keys
// over the hash of every file, and every file must be covered. It returns
// the bundle's policy files and its data (as data.json) for New or Reload.
// An unsigned tarball, an unknown key, a bad signature, a file that does not
// match its hash, a file the signature does not list, or a listed file that
// is missing: each is an error, and nothing is loaded.
func ReadSignedBundle(r io.Reader, keys ...PublicKey) (fs.FS, error) {
	if len(keys) == 0 {
		return nil, ErrNoBundleKey
	}
	kc := make(map[string]*opabundle.KeyConfig, len(keys))
	for _, k := range keys {
		id := cmp.Or(k.ID, "default")
		kc[id] = &opabundle.KeyConfig{Key: k.PEM, Algorithm: cmp.Or(k.Algorithm, "RS256"), Scope: k.Scope}
	}
	b, err := opabundle.NewCustomReader(opabundle.NewTarballLoaderWithBaseURL(r, "")).
		WithBundleVerificationConfig(opabundle.NewVerificationConfig(kc, "", "", nil)).
		WithRegoVersion(ast.RegoV1).
		WithSizeLimitBytes(maxBundleBytes).
		Read()
	if err != nil {
		return nil, fmt.Errorf("policy: signed bundle: %w", err)
	}
	if b.Type() != opabundle.SnapshotBundleType {
		return nil, errors.New("policy: signed bundle: a delta bundle cannot be verified")
	}
	files := fstest.MapFS{}
	for _, m := range b.Modules {
		files[strings.TrimPrefix(m.Path, "/")] = &fstest.MapFile{Data: m.Raw, Mode: 0o444}
	}
	if len(b.Data) > 0 {
		// OPA has already mounted every data file of the tarball at its
		// path; the merged document is this bundle's data.json.
		raw, err := json.Marshal(b.Data)
		if err != nil {
			return nil, fmt.Errorf("policy: signed bundle: data: %w", err)
		}
		files[dataFile] = &fstest.MapFile{Data: raw, Mode: 0o444}
	}
	return files, nil
}
