package kv_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

// The tests run against a real Vault server in dev mode (in-memory storage,
// KV v2 mounted at secret/), started once per package run by TestMain on a
// free loopback port. Without the binary they skip, loudly, except under
// CI=true where they fail.

var (
	dev        *devServer
	skipReason string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	bin := os.Getenv("BLINDPOST_VAULT_BIN")
	if bin == "" {
		if home, err := os.UserHomeDir(); err == nil {
			bin = filepath.Join(home, ".cache", "blindpost", "bin", "vault-v1.21.4")
		}
	}
	if fi, err := os.Stat(bin); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		msg := fmt.Sprintf("no Vault binary at %q (build it with tools/, or set BLINDPOST_VAULT_BIN)", bin)
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "FAIL vault/kv: %s; under CI=true that is a failure\n", msg)
			return 1
		}
		skipReason = msg
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING the Vault KV tests of vault/kv: %s ***\n\n", msg)
		return m.Run()
	}
	var err error
	for range 3 { // a free port can be taken between probe and listen
		if dev, err = startDev(bin); err == nil {
			break
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL vault/kv: start Vault: %v\n", err)
		return 1
	}
	defer dev.stop()
	return m.Run()
}

func needVault(t testing.TB) *devServer {
	t.Helper()
	if dev == nil {
		t.Skip(skipReason)
	}
	return dev
}

type devServer struct {
	dir, addr, rootToken, unsealKey string
	root                            *api.Client

	cancel context.CancelFunc
	exited chan struct{}
	out    *syncBuffer
}

var unsealRE = regexp.MustCompile(`Unseal Key: (\S+)`)

func startDev(bin string) (*devServer, error) {
	dir, err := os.MkdirTemp("", "blindpost-kv-vault-")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &devServer{
		dir:       dir,
		addr:      "http://127.0.0.1:" + strconv.Itoa(port),
		rootToken: "root-" + randomHex(16),
		exited:    make(chan struct{}),
		out:       &syncBuffer{},
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	cmd := exec.CommandContext(ctx, bin, "server", "-dev",
		"-dev-root-token-id="+s.rootToken,
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port),
		"-dev-no-store-token", "-log-level=warn")
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "SKIP_SETCAP=1"}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.WaitDelay = 5 * time.Second
	killWithParent(cmd) // a test binary killed by -timeout leaves no server behind
	if err := cmd.Start(); err != nil {
		cancel()
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { cmd.Wait(); close(s.exited) }()
	if s.root, err = s.client(s.rootToken); err != nil {
		s.stop()
		return nil, err
	}
	if err := s.waitReady(20 * time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *devServer) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("vault exited early: %s", lastLines(s.out.String(), 15))
		default:
		}
		h, err := s.root.Sys().Health()
		m := unsealRE.FindStringSubmatch(s.out.String())
		if err == nil && h.Initialized && !h.Sealed && m != nil {
			s.unsealKey = m[1]
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("vault not ready after %v: %s", limit, lastLines(s.out.String(), 15))
}

// client returns a client of this server with the given token. Retries
// are off: the tests want Vault's first answer, and a sealed Vault
// answered at once.
func (s *devServer) client(token string) (*api.Client, error) {
	return s.clientWith(token, nil)
}

// clientWith is client with a hook to change the configuration first.
func (s *devServer) clientWith(token string, configure func(*api.Config)) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = s.addr
	cfg.MaxRetries = 0
	if configure != nil {
		configure(cfg)
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	c.ClearNamespace()
	return c, nil
}

func (s *devServer) stop() {
	s.cancel()
	<-s.exited
	os.RemoveAll(s.dir)
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
