package gateway_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/internal/vaultdev"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// startVault runs a real Vault dev server (tools/vault/build-vault.sh
// builds it) with Transit mounted, and returns its address and root token.
func startVault(t *testing.T) (addr, token string) {
	t.Helper()
	bin, err := vaultdev.Binary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (run scripts/services.sh)", err)
		}
		t.Skip(err)
	}
	s, err := vaultdev.Start(bin, vaultdev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if err := s.Mount("transit"); err != nil {
		t.Fatal(err)
	}
	return s.Addr, s.RootToken
}

// The gateway with its keys in Vault's Transit and its records in Vault's
// KV v2: nothing personal on the gateway's disks. Subjects go in through
// the admin API, messages resolve through Vault, and erasure ends queued
// messages as unknown_recipient.
func TestGatewayOnVaultTransitAndKV(t *testing.T) {
	addr, token := startVault(t)
	t.Setenv("BP_TEST_VAULT_TOKEN", token)
	hc := hashivault.Config{Address: addr, Auth: hashivault.AuthConfig{Method: "token", TokenEnv: "BP_TEST_VAULT_TOKEN"}}
	// What `blindpost vault setup` does: create the tenant's Transit keys.
	p, err := hashivault.New(context.Background(), hc, hashivault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Setup(context.Background(), devenv.Tenant); err != nil {
		t.Fatal(err)
	}
	p.Close()
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) {
		c.Vault.Embedded.KeyFile, c.Vault.Embedded.PassphraseEnv = "", ""
		c.Vault.Hashicorp = hc
		c.Vault.KV = gateway.KVVaultConfig{Enabled: true}
	}})
	r.put("u-1", alex())
	r.put("u-2", alex())
	accepted(t, r.send(message("hv-1", "u-1")))
	r.drain()
	if st, reason := r.callback("hv-1"); st != gateway.StatusSent {
		t.Fatalf("hv-1: %s %s", st, reason)
	}
	accepted(t, r.send(message("hv-2", "u-2")))
	if err := r.ad.Erase(context.Background(), devenv.Brand, "u-2"); err != nil {
		t.Fatal(err)
	}
	r.drain()
	if st, _ := r.callback("hv-2"); st != gateway.StatusUnknownRecipient {
		t.Fatalf("hv-2 after erasure: %s", st)
	}
	// The gateway's own files hold no personal data: no vault.db was made,
	// and the player's address is nowhere in the data directory.
	filepath.Walk(filepath.Join(r.dir, "data"), func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		if filepath.Base(path) == "vault.db" {
			t.Errorf("an embedded vault file was created: %s", path)
		}
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(alexEmail)) {
			t.Errorf("%s holds the player's address", path)
		}
		return nil
	})
}

// A gateway configured to index tokens under a Transit token key version
// that does not exist refuses to start, naming the version, instead of
// failing every Put.
func TestGatewayRefusesATokenVersionTransitLacks(t *testing.T) {
	addr, token := startVault(t)
	t.Setenv("BP_TEST_VAULT_TOKEN", token)
	hc := hashivault.Config{Address: addr, Auth: hashivault.AuthConfig{Method: "token", TokenEnv: "BP_TEST_VAULT_TOKEN"}}
	p, err := hashivault.New(context.Background(), hc, hashivault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Setup(context.Background(), devenv.Tenant); err != nil {
		t.Fatal(err)
	}
	p.Close()
	_, err = devenv.Start(context.Background(), t.TempDir(), devenv.Options{Gateway: func(c *gateway.Config) {
		c.Vault.Embedded.KeyFile, c.Vault.Embedded.PassphraseEnv = "", ""
		c.Vault.Hashicorp = hc
		c.Vault.KV = gateway.KVVaultConfig{Enabled: true}
		c.Vault.TokenVersions.AlsoIndex = []int{2}
	}})
	if err == nil || !strings.Contains(err.Error(), "token key version 2") {
		t.Fatalf("Open with also_index [2] and no version 2 in Transit: %v", err)
	}
}
