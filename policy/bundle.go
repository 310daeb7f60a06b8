package policy

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
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
