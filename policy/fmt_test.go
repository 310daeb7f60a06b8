package policy_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/format"

	"github.com/blindpost/blindpost/policy"
)

// The bundle is in `opa fmt` form, so auditors and diffs see one layout.
func TestBundleIsOPAFormatted(t *testing.T) {
	bundle := policy.BundleFS()
	names, err := fs.Glob(bundle, "*.rego")
	if err != nil || len(names) == 0 {
		t.Fatalf("no Rego files: %v", err)
	}
	for _, name := range names {
		src, err := fs.ReadFile(bundle, name)
		if err != nil {
			t.Fatal(err)
		}
		want, err := format.Source(name, src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(want) != string(src) {
			t.Errorf("%s is not in opa fmt form; formatted:\n%s", name, strings.TrimSpace(string(want)))
		}
	}
}
