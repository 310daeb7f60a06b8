package hashivault_test

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/vault/hashivault"
)

var ctx = context.Background()

// newTenant returns a tenant id no other test uses, so tests sharing the
// server never see each other's keys.
func newTenant(prefix string) string { return prefix + "-" + randomHex(4) }

// baseConfig is a Config for s that logs in with token, given through
// the environment (Options.Getenv) as BP_TEST_TOKEN.
func baseConfig(s *devServer) hashivault.Config {
	return hashivault.Config{
		Address:    s.Addr,
		CAFile:     s.CAFile,
		MaxRetries: -1,
		Auth:       hashivault.AuthConfig{Method: hashivault.AuthToken, TokenEnv: "BP_TEST_TOKEN"},
	}
}

func envWith(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func mustNew(t testing.TB, cfg hashivault.Config, opts hashivault.Options) *hashivault.Provider {
	t.Helper()
	p, err := hashivault.New(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// rootProvider is a Provider with the root token, for setting up keys.
func rootProvider(t testing.TB, s *devServer) *hashivault.Provider {
	t.Helper()
	return mustNew(t, baseConfig(s), hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", s.RootToken)})
}

// setupTenant creates a fresh tenant's keys and returns it.
func setupTenant(t testing.TB, p *hashivault.Provider, prefix string) string {
	t.Helper()
	tenant := newTenant(prefix)
	created, err := p.Setup(ctx, tenant)
	if err != nil {
		t.Fatalf("Setup(%s): %v", tenant, err)
	}
	if len(created) != 2 {
		t.Fatalf("Setup created %v, want both keys", created)
	}
	return tenant
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantKind fails unless err matches kind, and checks that its text holds
// none of the secrets.
func wantKind(t testing.TB, err, kind error, secrets ...[]byte) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("err = %v, want %v", err, kind)
	}
	assertClean(t, err, secrets...)
}

// assertClean fails if err's text holds any secret, raw or in base64.
func assertClean(t testing.TB, err error, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		for _, form := range []string{string(s), base64.StdEncoding.EncodeToString(s)} {
			if len(form) >= 6 && strings.Contains(msg, form) {
				t.Fatalf("error text %q holds a secret", msg)
			}
		}
	}
}

// policyToken writes policy under a random name and returns a token
// holding only it, created with the given token options.
func policyToken(t testing.TB, s *devServer, policy string, req *api.TokenCreateRequest) string {
	t.Helper()
	name := "p-" + randomHex(4)
	if err := s.Root.Sys().PutPolicy(name, policy); err != nil {
		t.Fatalf("put policy: %v", err)
	}
	if req == nil {
		req = &api.TokenCreateRequest{}
	}
	req.Policies = []string{name}
	req.NoDefaultPolicy = true
	sec, err := s.Root.Auth().Token().Create(req)
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	return sec.Auth.ClientToken
}

// logRecorder keeps the messages of every log record.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) logger() *slog.Logger { return slog.New(r) }

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	r.mu.Lock()
	r.msgs = append(r.msgs, b.String())
	r.mu.Unlock()
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

func (r *logRecorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.msgs, "\n")
}
