package hashivault_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// TestSealedThenKilledVaultIsUnavailable runs on a server of its own: it
// seals it (every call fails with ErrUnavailable, so the gateway waits),
// unseals it (calls work again), then kills it (ErrUnavailable again).
func TestSealedThenKilledVaultIsUnavailable(t *testing.T) {
	needVault(t)
	t.Parallel()
	s, err := startDevServer(shared.bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	p := rootProvider(t, s)
	tenant := setupTenant(t, p, "seal")
	dk, ad := dataKey(t), refAD(tenant, "u-1", 1)
	w, err := p.Wrap(ctx, tenant, dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"wrap":      func() error { _, err := p.Wrap(ctx, tenant, dk, ad); return err },
		"unwrap":    func() error { _, err := p.Unwrap(ctx, tenant, w, ad); return err },
		"token mac": func() error { _, err := p.TokenMAC(ctx, tenant, 1, []byte("m")); return err },
		"batch": func() error {
			_, err := p.UnwrapBatch(ctx, tenant, []hashivault.Item{{Data: w, AD: ad}, {Data: w, AD: ad}})
			return err
		},
		"health": func() error { return p.Health(ctx) },
	}
	expect := func(t *testing.T, reason string) {
		t.Helper()
		for name, f := range calls {
			err := f()
			if !errors.Is(err, vault.ErrUnavailable) || errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("%s: %v, want only ErrUnavailable", name, err)
			}
			assertClean(t, err, dk, w, []byte(s.RootToken))
			if !strings.Contains(err.Error(), reason) {
				t.Fatalf("%s: err %q lacks %q", name, err, reason)
			}
		}
	}

	t.Run("sealed", func(t *testing.T) {
		s.seal(t)
		expect(t, "sealed")
	})
	t.Run("unsealed again", func(t *testing.T) {
		s.unseal(t)
		for name, f := range calls {
			if err := f(); err != nil {
				t.Fatalf("%s after unseal: %v", name, err)
			}
		}
	})
	t.Run("killed", func(t *testing.T) {
		s.Kill()
		start := time.Now()
		expect(t, "cannot reach Vault")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("failing took %v", d)
		}
	})
}

func TestUntrustedCertificateIsUnavailable(t *testing.T) {
	s := needVault(t)
	cfg := baseConfig(s)
	cfg.CAFile = ""
	_, err := hashivault.New(ctx, cfg, hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", s.RootToken)})
	wantKind(t, err, vault.ErrUnavailable, []byte(s.RootToken))
	if !strings.Contains(err.Error(), "TLS certificate not trusted") {
		t.Fatalf("err %q", err)
	}
	cfg = baseConfig(s)
	cfg.TLSServerName = "vault.example.com" // not in the dev certificate
	_, err = hashivault.New(ctx, cfg, hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", s.RootToken)})
	wantKind(t, err, vault.ErrUnavailable)
}

func TestDeadlineIsUnavailable(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	tenant := setupTenant(t, p, "deadline")
	c, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	_, err := p.TokenMAC(c, tenant, 1, []byte("m"))
	wantKind(t, err, vault.ErrUnavailable)
}
