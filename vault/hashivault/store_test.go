package hashivault_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// TestEmbeddedStoreWithTransit runs the embedded record store on this
// provider end to end, as a gateway configured with Vault does.
func TestEmbeddedStoreWithTransit(t *testing.T) {
	s := needVault(t)
	root := rootProvider(t, s)
	tenant := setupTenant(t, root, "store")
	policy, _ := hashivault.GatewayPolicy(baseConfig(s), tenant)
	roleID, secretID := appRole(t, s, policy, nil)
	p := mustNew(t, appRoleConfig(t, s, roleID, secretID), hashivault.Options{})

	path := filepath.Join(t.TempDir(), "vault.db")
	st, err := embedded.Open(path, p, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ref := vault.Ref{Tenant: tenant, Brand: "brand-1", User: "user-42"}
	rec := vault.Record{Email: "player@example.com", Phone: "+15550100001", FirstName: "Ada", Locale: "en-GB"}
	sub, err := st.Put(ctx, ref, rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.Resolve(ctx, ref)
	if err != nil || got.Email != rec.Email || got.Phone != rec.Phone || got.FirstName != "Ada" {
		t.Fatalf("Resolve = %+v, %v", got, err)
	}
	tok, err := st.Tokenize(ctx, tenant, vault.KindEmail, "PLAYER@example.com")
	if err != nil || tok != sub.Tokens[vault.KindEmail] || !strings.HasPrefix(tok, "tok_email_v1_") {
		t.Fatalf("Tokenize = %q (Put gave %q), %v", tok, sub.Tokens[vault.KindEmail], err)
	}
	if r, err := st.Lookup(ctx, tenant, "brand-1", tok); err != nil || r != ref {
		t.Fatalf("Lookup = %v, %v", r, err)
	}
	rec.Email = "new@example.com"
	if _, err := st.Put(ctx, ref, rec); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Resolve(ctx, ref); err != nil || got.Email != "new@example.com" {
		t.Fatalf("Resolve after update = %+v, %v", got, err)
	}
	if err := st.Erase(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Resolve(ctx, ref); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Resolve after Erase: %v", err)
	}
	if _, err := st.Lookup(ctx, tenant, "brand-1", tok); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Lookup after Erase: %v", err)
	}
	if _, err := st.Put(ctx, vault.Ref{Tenant: tenant, Brand: "brand-1", User: "user-43"}, rec); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// The file's key check names this Transit key: a local key file
	// cannot open it.
	key := filepath.Join(t.TempDir(), "master.key")
	if err := embedded.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	local, _ := embedded.NewKeyFileProvider(key)
	if st2, err := embedded.Open(path, local, embedded.Options{}); !errors.Is(err, vault.ErrCorrupt) {
		if st2 != nil {
			st2.Close()
		}
		t.Fatalf("opening with another key provider: %v, want ErrCorrupt", err)
	}
	// Reopened with Transit, the record is there.
	st3, err := embedded.Open(path, p, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st3.Close()
	if got, err := st3.Resolve(ctx, vault.Ref{Tenant: tenant, Brand: "brand-1", User: "user-43"}); err != nil || got.Email != "new@example.com" {
		t.Fatalf("Resolve after reopen = %+v, %v", got, err)
	}
}
