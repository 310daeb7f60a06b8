package kv_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/internal/vaultdev"
)

// The tests run against a real Vault server in dev mode (in-memory storage,
// KV v2 mounted at secret/), started once per package run by TestMain.
// Without the binary they skip, loudly, except under CI=true where they
// fail.

var (
	dev        *devServer
	skipReason string
)

// devServer adds this package's shorthands to the shared dev server.
type devServer struct{ *vaultdev.Server }

func (s *devServer) client(token string) (*api.Client, error) { return s.Client(token, nil) }

func (s *devServer) clientWith(token string, configure func(*api.Config)) (*api.Client, error) {
	return s.Client(token, configure)
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	bin, err := vaultdev.Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "FAIL vault/kv: %v; under CI=true that is a failure\n", err)
			return 1
		}
		skipReason = err.Error()
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING the Vault KV tests of vault/kv: %s ***\n\n", err)
		return m.Run()
	}
	s, err := vaultdev.Start(bin, vaultdev.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL vault/kv: start Vault: %v\n", err)
		return 1
	}
	defer s.Stop()
	dev = &devServer{s}
	return m.Run()
}

func needVault(t testing.TB) *devServer {
	t.Helper()
	if dev == nil {
		t.Skip(skipReason)
	}
	return dev
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
