package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// startVault runs a real Vault dev server (scripts/vault/build-vault.sh
// builds it) with Transit mounted, and returns its address and root token.
func startVault(t *testing.T) (addr, token string) {
	t.Helper()
	bin := os.Getenv("BLINDPOST_VAULT_BIN")
	if bin == "" {
		home, _ := os.UserHomeDir()
		bin = filepath.Join(home, ".cache", "blindpost", "bin", "vault")
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no Vault binary at %s (run scripts/services.sh)", bin)
		}
		t.Skipf("no Vault binary at %s", bin)
	}
	b := make([]byte, 16)
	rand.Read(b)
	token, addr = "root-"+hex.EncodeToString(b), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "server", "-dev", "-dev-root-token-id="+token, "-dev-listen-address="+addr, "-dev-no-store-token")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	call := func(method, path, body string) (int, error) {
		req, _ := http.NewRequest(method, "http://"+addr+"/v1/"+path, strings.NewReader(body))
		req.Header.Set("X-Vault-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, err := call("GET", "sys/health", ""); err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Vault did not start:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, err := call("POST", "sys/mounts/transit", `{"type":"transit"}`); err != nil || code/100 != 2 {
		t.Fatalf("mount transit: %d %v", code, err)
	}
	return "http://" + addr, token
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
