// Package vaultdev runs a real HashiCorp Vault server in dev mode on
// loopback for tests: in-memory storage, KV v2 at secret/, a random root
// token, and optionally TLS with a generated CA. tools/vault/build-vault.sh
// builds the binary; Binary finds it.
//
// It is for tests only (the gateway never imports it), and kept apart from
// them because several packages' tests need the same server.
package vaultdev

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
	"time"

	"github.com/hashicorp/vault/api"
)

// Binary returns the Vault binary to run: $BLINDPOST_VAULT_BIN if set (no
// fallback), else the build script's ~/.cache/blindpost/bin/vault.
func Binary() (string, error) {
	var cands []string
	if env := os.Getenv("BLINDPOST_VAULT_BIN"); env != "" {
		cands = []string{env}
	} else if home, err := os.UserHomeDir(); err == nil {
		cands = []string{filepath.Join(home, ".cache", "blindpost", "bin", "vault")}
	}
	for _, c := range cands {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("no Vault binary at %s (run tools/vault/build-vault.sh, or set BLINDPOST_VAULT_BIN)", strings.Join(cands, ", "))
}

// Options configure a dev server.
type Options struct {
	// TLS serves https with a CA written to Server.CAFile (-dev-tls).
	TLS bool
}

// Server is one `vault server -dev` child process.
type Server struct {
	Addr      string // http(s)://127.0.0.1:port
	CAFile    string // with TLS: the CA that signed the server's certificate
	RootToken string
	UnsealKey string
	Root      *api.Client // with RootToken

	dir    string
	tls    bool
	cancel context.CancelFunc
	exited chan struct{}
	out    syncBuffer
}

// Start starts a dev server with bin and waits until it is unsealed and
// answers. A free port can be taken between probing and listening, so it
// tries three times.
func Start(bin string, opts Options) (*Server, error) {
	var err error
	for range 3 {
		var s *Server
		if s, err = start(bin, opts); err == nil {
			return s, nil
		}
	}
	return nil, err
}

func start(bin string, opts Options) (*Server, error) {
	dir, err := os.MkdirTemp("", "blindpost-vault-")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	token := make([]byte, 16)
	rand.Read(token)
	s := &Server{Addr: "http://127.0.0.1:" + port, RootToken: "root-" + hex.EncodeToString(token),
		dir: dir, tls: opts.TLS, exited: make(chan struct{})}
	args := []string{"server", "-dev", "-dev-root-token-id=" + s.RootToken,
		"-dev-listen-address=127.0.0.1:" + port, "-dev-no-store-token", "-log-level=warn"}
	if opts.TLS {
		s.Addr, s.CAFile = "https://127.0.0.1:"+port, filepath.Join(dir, "vault-ca.pem")
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+dir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	cmd := exec.CommandContext(ctx, bin, args...)
	// Its own HOME: dev mode would otherwise write ~/.vault-token.
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "SKIP_SETCAP=1"}
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	cmd.WaitDelay = 5 * time.Second
	killWithParent(cmd) // a test binary killed by -timeout leaves no server behind
	if err := cmd.Start(); err != nil {
		cancel()
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(20 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

var unsealRE = regexp.MustCompile(`Unseal Key: (\S+)`)

func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("vault exited early: %s", s.Output(15))
		default:
		}
		if s.Root == nil && (!s.tls || exists(s.CAFile)) {
			c, err := s.Client(s.RootToken, nil)
			if err != nil {
				return err
			}
			s.Root = c
		}
		if s.Root != nil {
			h, err := s.Root.Sys().Health()
			m := unsealRE.FindStringSubmatch(s.out.String())
			if err == nil && h.Initialized && !h.Sealed && m != nil {
				s.UnsealKey = m[1]
				return nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("vault not ready after %v: %s", limit, s.Output(15))
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// Client returns a client of this server with token, and retries off (the
// tests want Vault's first answer); configure, if not nil, adjusts the
// configuration first.
func (s *Server) Client(token string, configure func(*api.Config)) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	if s.tls {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: s.CAFile}); err != nil {
			return nil, err
		}
	}
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

// Mount enables a secrets engine (e.g. "transit") at its own name.
func (s *Server) Mount(engine string) error {
	if err := s.Root.Sys().Mount(engine, &api.MountInput{Type: engine}); err != nil {
		return fmt.Errorf("mount %s: %w", engine, err)
	}
	return nil
}

// EnableAuth enables an auth method (e.g. "approle") at its own name.
func (s *Server) EnableAuth(method string) error {
	if err := s.Root.Sys().EnableAuthWithOptions(method, &api.EnableAuthOptions{Type: method}); err != nil {
		return fmt.Errorf("enable %s: %w", method, err)
	}
	return nil
}

// Unseal unseals the server with its dev unseal key.
func (s *Server) Unseal() error {
	st, err := s.Root.Sys().Unseal(s.UnsealKey)
	if err == nil && st.Sealed {
		err = errors.New("still sealed")
	}
	return err
}

// Kill stops the server at once (SIGKILL) and waits for it.
func (s *Server) Kill() {
	s.cancel()
	<-s.exited
}

// Stop kills the server and removes its directory.
func (s *Server) Stop() {
	s.Kill()
	os.RemoveAll(s.dir)
}

// Output returns the last n lines the server printed.
func (s *Server) Output(n int) string {
	lines := strings.Split(strings.TrimSpace(s.out.String()), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
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
