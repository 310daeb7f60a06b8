package boundary

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/blindpost/blindpost/"

// rules: packages under a prefix must not depend, even indirectly, on
// packages under any of the forbidden prefixes.
var rules = []struct {
	pkgs      string
	forbidden []string
	why       string
}{
	{"core", []string{"vault", "gateway", "adapters/smtp", "adapters/sms", "adapters/telegram", "adapters/push",
		"adapters/im", "adapters/webhook", "policy", "internal/devenv", "internal/vaultdev"},
		"the vendor side must not be able to reach a PII store or the delivery edges"},
	{"vault", []string{"gateway", "core", "adapters", "policy"}, "the vault serves the gateway and knows neither side"},
	{"policy", []string{"gateway", "core", "vault", "adapters"}, "the policy sees derived attributes only"},
	{"adapters", []string{"gateway", "core", "vault", "policy"}, "adapters are edges behind interfaces their users declare"},
	{"envelope", []string{"gateway", "core", "vault", "policy", "adapters"}, "both sides import the envelope"},
	{"audit", []string{"gateway", "core", "vault", "adapters"}, "auditors verify the log offline"},
	{"tokenmap", []string{"gateway", "core", "vault", "policy", "adapters"}, "both sides read the token pairs file"},
}

func TestTrustBoundaryIsAnImportBoundary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	perRule := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], mod)
		for _, r := range rules {
			if !under(pkg, r.pkgs) {
				continue
			}
			checked++
			perRule[r.pkgs]++
			for _, dep := range fields[1:] {
				dep, ok := strings.CutPrefix(dep, mod)
				if !ok {
					continue
				}
				for _, f := range r.forbidden {
					if under(dep, f) {
						t.Errorf("%s depends on %s: %s", pkg, dep, r.why)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no package was checked; is the module path right?")
	}
	for _, r := range rules {
		if perRule[r.pkgs] == 0 {
			t.Errorf("no package under %s/ was checked", r.pkgs)
		}
	}
}

func under(pkg, prefix string) bool {
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}
