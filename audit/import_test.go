package audit_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The audit package is shared by the gateway (which writes the log) and the
// core (which witnesses it), so it must depend on neither: only on the
// envelope format both sides speak.
func TestAuditImportsNeitherSide(t *testing.T) {
	const module = "github.com/blindpost/blindpost/"
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list imports with")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(pkg, module)
		if !ok {
			continue
		}
		switch first, _, _ := strings.Cut(rel, "/"); first {
		case "audit", "envelope":
		default:
			t.Errorf("audit depends on %s: only envelope may be imported from this module", pkg)
		}
	}
}
