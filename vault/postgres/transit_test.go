package postgres_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"

	"github.com/blindpost/blindpost/internal/vaultdev"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// The re-wrap tests also run against a real Vault dev server's Transit,
// started on first use and stopped when the package's tests end.
var transit struct {
	once sync.Once
	srv  *vaultdev.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if transit.srv != nil {
		transit.srv.Stop()
	}
	os.Exit(code)
}

func needTransit(t testing.TB) *vaultdev.Server {
	t.Helper()
	transit.once.Do(func() {
		bin, err := vaultdev.Binary()
		if err != nil {
			transit.err = err
			return
		}
		if transit.srv, transit.err = vaultdev.Start(bin, vaultdev.Options{}); transit.err == nil {
			transit.err = transit.srv.Mount("transit")
		}
	})
	if transit.err != nil {
		skipOrFail(t, "no Vault dev server: %v", transit.err)
	}
	return transit.srv
}

// transitTenant returns a Provider with the root token and a tenant of its
// own, its keys set up.
func transitTenant(t testing.TB) (*hashivault.Provider, string) {
	t.Helper()
	srv := needTransit(t)
	p, err := hashivault.New(ctx, hashivault.Config{
		Address: srv.Addr,
		Auth:    hashivault.AuthConfig{Method: hashivault.AuthToken, TokenEnv: "BP_TEST_TOKEN"},
	}, hashivault.Options{Getenv: func(string) string { return srv.RootToken }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	var b [4]byte
	rand.Read(b[:])
	tenant := "pg-" + hex.EncodeToString(b[:])
	if _, err := p.Setup(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	return p, tenant
}

// transitKeys rotates and trims the tenant's Transit KEK.
type transitKeys struct {
	t testing.TB
	*hashivault.Provider
	tenant string
}

func (k *transitKeys) rotate() int {
	v, err := k.RotateKEK(ctx, k.tenant)
	if err != nil {
		k.t.Fatal(err)
	}
	return v
}

func (k *transitKeys) retire(below int) {
	if err := k.SetMinDecryptionVersion(ctx, k.tenant, below); err != nil {
		k.t.Fatal(err)
	}
	if err := k.TrimKEK(ctx, k.tenant, below); err != nil {
		k.t.Fatal(err)
	}
}
