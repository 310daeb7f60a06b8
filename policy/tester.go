package policy

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult is the outcome of one Rego test (a rule named test_*).
type TestResult struct {
	Package  string // e.g. blindpost.gateway_test
	Name     string // e.g. test_reasons_sorted
	File     string
	Row      int
	Outcome  string // PASS, FAIL, ERROR or SKIPPED
	Err      error  // set when Outcome is ERROR
	Duration time.Duration
}

// Pass reports whether the test passed.
func (r TestResult) Pass() bool { return r.Outcome == "PASS" }

func (r TestResult) String() string {
	s := fmt.Sprintf("%s:%d: %s.%s: %s (%s)", r.File, r.Row, r.Package, r.Name, r.Outcome, r.Duration.Round(time.Microsecond))
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// RunTests runs the Rego tests of bundle (its _test.rego files, against its
// policy and data.json) under the same restrictions as New, and returns the
// results sorted by location. The error is for a bundle that cannot be
// loaded or compiled; failing tests are results, not errors.
func RunTests(ctx context.Context, bundle fs.FS) ([]TestResult, error) {
	b, err := loadBundle(bundle, true)
	if err != nil {
		return nil, err
	}
	compiler := ast.NewCompiler().
		WithCapabilities(safeCapabilities()).
		WithStrict(true).
		WithEnablePrintStatements(true).
		WithDefaultRegoVersion(ast.RegoV1)
	ch, err := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(inmem.NewFromObject(b.data)).
		SetModules(b.modules).
		SetDefaultRegoVersion(ast.RegoV1).
		RaiseBuiltinErrors(true).
		SetTimeout(10*time.Second).
		RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("policy: compile bundle tests: %w", err)
	}
	var results []TestResult
	for r := range ch {
		tr := TestResult{
			Package:  strings.TrimPrefix(r.Package, "data."),
			Name:     r.Name,
			Duration: r.Duration,
			Err:      r.Error,
		}
		if r.Location != nil {
			tr.File, tr.Row = r.Location.File, r.Location.Row
		}
		switch {
		case r.Skip:
			tr.Outcome = "SKIPPED"
		case r.Error != nil:
			tr.Outcome = "ERROR"
		case r.Fail:
			tr.Outcome = "FAIL"
		default:
			tr.Outcome = "PASS"
		}
		results = append(results, tr)
	}
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("policy: run bundle tests: %w", err)
	}
	slices.SortFunc(results, func(a, b TestResult) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return cmp.Compare(a.Row, b.Row)
	})
	return results, nil
}

// safeCapabilities are this OPA version's capabilities without the builtins
// the policy may not use, so the tests run under New's restrictions.
func safeCapabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	kept := make([]*ast.Builtin, 0, len(c.Builtins))
	for _, b := range c.Builtins {
		if _, unsafe := unsafeBuiltins[b.Name]; !unsafe {
			kept = append(kept, b)
		}
	}
	c.Builtins = kept
	return c
}
