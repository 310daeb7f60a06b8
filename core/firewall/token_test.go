package firewall

import (
	"encoding/json"
	"os"
	"testing"
)

// TestTokenGrammarAgreesWithVault holds isToken to the verdicts of
// vault.ParseToken on testdata/tokens.json. The core may not import vault/
// (internal/boundary), so the vectors were generated from vault.ParseToken
// and copied here; a change to the grammar in vault/token.go must change
// them and isToken together.
func TestTokenGrammarAgreesWithVault(t *testing.T) {
	b, err := os.ReadFile("testdata/tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []struct {
			In    string `json:"in"`
			Valid bool   `json:"valid"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	valid := 0
	for _, v := range file.Vectors {
		if got := isToken(v.In); got != v.Valid {
			t.Errorf("isToken(%q) = %v, vault.ParseToken says %v", v.In, got, v.Valid)
		}
		if v.Valid {
			valid++
		}
	}
	if valid < 5 || len(file.Vectors)-valid < 20 {
		t.Fatalf("%d valid and %d invalid vectors: too few of one kind", valid, len(file.Vectors)-valid)
	}
}

// A token is allowed anywhere, even where its characters would otherwise
// look like something: here the MAC is chosen to hold an IBAN-shaped run.
func TestTokenIsNeverPII(t *testing.T) {
	for _, tok := range []string{
		"tok_email_v1_ydpp5ufegl5vjmakoadzk5b56cuiiuzb",
		"tok_tg_v2147483647_22222222222222222222222222222222",
	} {
		if r := detect(tok); r != "" {
			t.Errorf("detect(token) = %s", r)
		}
	}
}
