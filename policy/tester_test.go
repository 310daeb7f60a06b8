package policy_test

import (
	"context"
	"testing"

	"github.com/blindpost/blindpost/policy"
)

// The shipped bundle's own Rego tests (policy/rego/*_test.rego) all pass.
func TestBundleRegoTestsPass(t *testing.T) {
	results, err := policy.RunTests(context.Background(), policy.BundleFS())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) == 0 {
		t.Fatal("bundle has no Rego tests")
	}
	for _, r := range results {
		if !r.Pass() {
			t.Error(r)
		}
	}
	t.Logf("%d Rego tests", len(results))
}
