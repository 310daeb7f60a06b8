package hashivault_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/internal/vaultdev"
)

// The tests run against a real Vault server in dev mode with TLS, started
// once per package run by TestMain (and a second, disposable one for the
// test that seals and kills it). Without the binary the tests skip, loudly,
// except under CI=true where they fail.

var (
	shared     *devServer
	skipReason string
)

// devServer adds this package's shorthands to the shared dev server.
type devServer struct {
	*vaultdev.Server
	bin string
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	bin, err := vaultdev.Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "FAIL vault/hashivault: %v (CI=true: a missing Vault binary is a failure)\n", err)
			return 1
		}
		skipReason = err.Error()
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING the Vault tests of vault/hashivault: %s ***\n\n", skipReason)
		return m.Run()
	}
	s, err := startDevServer(bin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL vault/hashivault: start Vault: %v\n", err)
		return 1
	}
	defer s.Stop()
	shared = s
	return m.Run()
}

// startDevServer starts a TLS dev server with Transit and AppRole enabled.
func startDevServer(bin string) (*devServer, error) {
	s, err := vaultdev.Start(bin, vaultdev.Options{TLS: true})
	if err != nil {
		return nil, err
	}
	if err := errors.Join(s.Mount("transit"), s.EnableAuth("approle")); err != nil {
		s.Stop()
		return nil, err
	}
	return &devServer{Server: s, bin: bin}, nil
}

func needVault(t testing.TB) *devServer {
	t.Helper()
	if shared == nil {
		t.Skip(skipReason)
	}
	return shared
}

// client returns an API client for this server with the given token.
func (s *devServer) client(token string) (*api.Client, error) { return s.Client(token, nil) }

func (s *devServer) seal(t testing.TB) {
	t.Helper()
	if err := s.Root.Sys().Seal(); err != nil {
		t.Fatalf("seal: %v", err)
	}
}

func (s *devServer) unseal(t testing.TB) {
	t.Helper()
	if err := s.Unseal(); err != nil {
		t.Fatalf("unseal: %v", err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// isHTTPStatus reports whether err is a Vault response with that status.
func isHTTPStatus(err error, status int) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == status
}
