package hashivault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// The tests run against a real Vault server in dev mode, started once per
// package run by TestMain (and a second, disposable one for the tests that
// seal and kill it). Its binary is built by the repository's tools script;
// without it the tests skip, loudly, except under CI=true where they fail.

var (
	shared     *devServer
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	bin, err := findVault()
	if err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "FAIL vault/hashivault: %v (CI=true: a missing Vault binary is a failure)\n", err)
			return 1
		}
		skipReason = "no Vault binary: " + err.Error()
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING the Vault tests of vault/hashivault: %s ***\n\n", skipReason)
		return m.Run()
	}
	s, err := startDevServer(bin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL vault/hashivault: start Vault: %v\n", err)
		return 1
	}
	defer s.stop()
	shared = s
	return m.Run()
}

// findVault looks for the Vault binary: $BLINDPOST_VAULT_BIN, the build
// cache of tools/ (~/.cache/blindpost/bin/vault), then /tmp/vaultbuild.
func findVault() (string, error) {
	var tried, cands []string
	if env := os.Getenv("BLINDPOST_VAULT_BIN"); env != "" {
		cands = []string{env} // named explicitly: no fallback
	} else {
		if home, err := os.UserHomeDir(); err == nil {
			cands = append(cands, filepath.Join(home, ".cache", "blindpost", "bin", "vault"))
		}
		cands = append(cands, "/tmp/vaultbuild/vault")
	}
	for _, c := range cands {
		tried = append(tried, c)
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("none of %s (set BLINDPOST_VAULT_BIN)", strings.Join(tried, ", "))
}

func needVault(t testing.TB) *devServer {
	t.Helper()
	if shared == nil {
		t.Skip(skipReason)
	}
	return shared
}

// devServer is one `vault server -dev -dev-tls` child process on loopback.
type devServer struct {
	bin, dir  string
	addr      string // https://127.0.0.1:port
	caFile    string
	rootToken string
	unsealKey string
	root      *api.Client

	cmd    *exec.Cmd
	cancel context.CancelFunc
	exited chan struct{}
	out    *syncBuffer
}

func startDevServer(bin string) (*devServer, error) {
	var lastErr error
	for range 3 { // a free port can be taken between probe and listen
		s, err := tryStart(bin)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryStart(bin string) (*devServer, error) {
	dir, err := os.MkdirTemp("", "blindpost-vault-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &devServer{
		bin: bin, dir: dir,
		addr:      "https://127.0.0.1:" + strconv.Itoa(port),
		caFile:    filepath.Join(dir, "vault-ca.pem"),
		rootToken: "root-" + randomHex(16),
		exited:    make(chan struct{}),
		out:       &syncBuffer{},
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.cmd = exec.CommandContext(ctx, bin, "server", "-dev",
		"-dev-root-token-id="+s.rootToken,
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port),
		"-dev-tls", "-dev-tls-cert-dir="+dir,
		"-log-level=warn")
	// Its own HOME: dev mode writes ~/.vault-token.
	s.cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "SKIP_SETCAP=1"}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.WaitDelay = 5 * time.Second
	if err := s.cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(20 * time.Second); err != nil {
		s.stop()
		return nil, err
	}
	if err := s.enableEngines(); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

var unsealRE = regexp.MustCompile(`Unseal Key: (\S+)`)

func (s *devServer) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("vault exited early: %s", lastLines(s.out.String(), 15))
		default:
		}
		if s.root == nil {
			if _, err := os.Stat(s.caFile); err == nil {
				c, err := s.client(s.rootToken)
				if err != nil {
					return err
				}
				s.root = c
			}
		}
		if s.root != nil {
			h, err := s.root.Sys().Health()
			m := unsealRE.FindStringSubmatch(s.out.String())
			if err == nil && h.Initialized && !h.Sealed && m != nil {
				s.unsealKey = m[1]
				return nil
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
	return fmt.Errorf("vault not ready after %v: %s", limit, lastLines(s.out.String(), 15))
}

func (s *devServer) enableEngines() error {
	if err := s.root.Sys().Mount("transit", &api.MountInput{Type: "transit"}); err != nil {
		return fmt.Errorf("mount transit: %w", err)
	}
	if err := s.root.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
		return fmt.Errorf("enable approle: %w", err)
	}
	return nil
}

// client returns an API client for this server with the given token.
func (s *devServer) client(token string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = s.addr
	cfg.MaxRetries = 0
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: s.caFile}); err != nil {
		return nil, err
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	c.ClearNamespace()
	return c, nil
}

// kill stops the server at once (SIGKILL) and waits for it.
func (s *devServer) kill() {
	s.cancel()
	<-s.exited
}

func (s *devServer) stop() {
	s.kill()
	os.RemoveAll(s.dir)
}

func (s *devServer) seal(t testing.TB) {
	t.Helper()
	if err := s.root.Sys().Seal(); err != nil {
		t.Fatalf("seal: %v", err)
	}
}

func (s *devServer) unseal(t testing.TB) {
	t.Helper()
	st, err := s.root.Sys().Unseal(s.unsealKey)
	if err != nil || st.Sealed {
		t.Fatalf("unseal: %v (sealed %v)", err, st != nil && st.Sealed)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// isHTTPStatus reports whether err is a Vault response with that status.
func isHTTPStatus(err error, status int) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == status
}
