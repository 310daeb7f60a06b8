package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/core"
	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/store"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/tokenmap"
	"github.com/blindpost/blindpost/vault"
)

// coreWithGatewayKey makes a core (`core init`) with label and a brand,
// pinning the gateway signing key pub, and returns its config's path.
func coreWithGatewayKey(t *testing.T, label, brand, pub string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "core")
	if out, err := runCLI(t, "", "core", "init", "--data", dir, "--label", label, "--brand", brand); err != nil {
		t.Fatalf("core init: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "core.yaml")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if pub != "" {
		if _, err := f.WriteString("gateway_keys: [" + pub + "]\n"); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// withCoreStore runs fn on the store of the core config at path, closed
// after.
func withCoreStore(t *testing.T, path string, fn func(*store.Store)) {
	t.Helper()
	cfg, err := core.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := core.OpenStore(context.Background(), cfg, core.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fn(st)
}

func corePlayer(t *testing.T, path, label, brand, user string) map[string]any {
	t.Helper()
	var props map[string]any
	withCoreStore(t, path, func(st *store.Store) {
		p, err := st.Player(context.Background(), label, brand, user)
		if err != nil {
			t.Fatal(err)
		}
		props = p.Properties
	})
	return props
}

func ingestProfile(t *testing.T, st *store.Store, label, brand, user string, payload map[string]any) {
	t.Helper()
	_, err := st.Ingest(context.Background(), label, []event.Event{{EID: "eid-" + user, EventDate: 1700000000000,
		Brand: brand, User: user, Type: event.TypeUpdateProfile, Payload: payload}}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

// The loop closed: the gateway re-tokenises (keys rotate token) and writes
// the signed pairs; the core verifies them against the gateway's
// signing.pub and its player's email_token, the old token, becomes the new
// one.
func TestKeysRotateTokenThenCoreTokensApply(t *testing.T) {
	path, cfg := rotationConfig(t, func(c *gateway.Config) { c.Vault.TokenVersions.AlsoIndex = []int{2} })
	ref := vault.Ref{Tenant: devenv.Tenant, Brand: devenv.Brand, User: "player-1"}
	rec := vault.Record{Email: "player1@example.com", Phone: "+15550000001"}
	gw := openVault(t, cfg)
	sub, err := gw.Store.Put(context.Background(), ref, rec)
	if err != nil {
		t.Fatal(err)
	}
	newToks, err := vault.RecordTokens(context.Background(), gw.Keys, ref.Tenant, 2, rec)
	if err != nil {
		t.Fatal(err)
	}
	gw.Close()
	pairs := filepath.Join(t.TempDir(), "pairs.ndjson")
	out, err := runCLI(t, "", "keys", "rotate", "token", "--config", path, "--to", "2", "--out", pairs)
	wantOutput(t, out, err, "wrote "+pairs, "core tokens apply")

	pub := strings.TrimSuffix(cfg.Keys.Signing, ".key") + ".pub"
	corePath := coreWithGatewayKey(t, ref.Tenant, ref.Brand, pub)
	oldEmail, oldPhone := sub.Tokens[vault.KindEmail], sub.Tokens[vault.KindPhone]
	withCoreStore(t, corePath, func(st *store.Store) {
		ingestProfile(t, st, ref.Tenant, ref.Brand, ref.User, map[string]any{"email_token": oldEmail, "phones": []any{oldPhone}, "level": 3})
	})

	out, err = runCLI(t, "", "core", "tokens", "apply", "--config", corePath, "--pairs", pairs)
	wantOutput(t, out, err, "signed by gateway key kid=", "2 pairs of label dev", "rewrote 2 token values in 1 players")
	p := corePlayer(t, corePath, ref.Tenant, ref.Brand, ref.User)
	if p["email_token"] != newToks[vault.KindEmail] || p["email_token"] == oldEmail {
		t.Fatalf("email_token = %v, want the version 2 token", p["email_token"])
	}
	if phones, _ := p["phones"].([]any); len(phones) != 1 || phones[0] != newToks[vault.KindPhone] {
		t.Fatalf("phones = %v, want the version 2 token", p["phones"])
	}
	// Again: accepted, nothing left to do.
	out, err = runCLI(t, "", "core", "tokens", "apply", "--config", corePath, "--pairs", pairs, "--sig", pairs+".sig")
	wantOutput(t, out, err, "rewrote 0 token values in 0 players")
}

func TestCoreTokensApplyRefuses(t *testing.T) {
	keyDir := filepath.Join(t.TempDir(), "gw")
	if err := envelope.WriteGatewayKeys(keyDir, nil); err != nil {
		t.Fatal(err)
	}
	gwKey, err := envelope.LoadSigningKey(filepath.Join(keyDir, envelope.FileSigningKey))
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(keyDir, envelope.FileSigningPub)
	oldTok, newTok := "tok_email_v1_"+strings.Repeat("a", 32), "tok_email_v2_"+strings.Repeat("a", 32)
	dir := t.TempDir()
	// write writes a signed pairs file and returns its path.
	write := func(name string, key *envelope.SigningKey, ps ...tokenmap.Pair) string {
		var b bytes.Buffer
		w := tokenmap.NewWriter(&b)
		for _, p := range ps {
			if err := w.Write(p); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		sig, err := tokenmap.Sign(key, name, w.Sum())
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b.Bytes(), 0o600)
		os.WriteFile(p+".sig", sig, 0o600)
		return p
	}
	acme := write("acme.ndjson", gwKey, tokenmap.Pair{Tenant: "acme", Kind: "email", Old: oldTok, New: newTok})
	both := write("both.ndjson", gwKey, tokenmap.Pair{Tenant: "acme", Kind: "email", Old: oldTok, New: newTok},
		tokenmap.Pair{Tenant: "beta", Kind: "email", Old: oldTok, New: newTok})
	stranger, err := envelope.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	strange := write("stranger.ndjson", stranger, tokenmap.Pair{Tenant: "acme", Kind: "email", Old: oldTok, New: newTok})
	tampered := write("tampered.ndjson", gwKey, tokenmap.Pair{Tenant: "acme", Kind: "email", Old: oldTok, New: newTok})
	b, _ := os.ReadFile(tampered)
	os.WriteFile(tampered, bytes.Replace(b, []byte(`"new":"tok_email_v2_a`), []byte(`"new":"tok_email_v2_b`), 1), 0o600)

	corePath := coreWithGatewayKey(t, "acme", "acme-casino", pub)
	noKeys := coreWithGatewayKey(t, "acme", "acme-casino", "")
	if out, err := runCLI(t, "", "core", "labels", "create", "beta", "--config", corePath); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	withCoreStore(t, corePath, func(st *store.Store) {
		ingestProfile(t, st, "acme", "acme-casino", "u1", map[string]any{"email_token": oldTok})
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no gateway_keys", []string{"--config", noKeys, "--pairs", acme}, "names no gateway_keys"},
		{"a changed file", []string{"--config", corePath, "--pairs", tampered}, "SHA-256"},
		{"signed by another key", []string{"--config", corePath, "--pairs", strange}, "not among the pinned gateway keys"},
		{"another file's signature", []string{"--config", corePath, "--pairs", acme, "--sig", both + ".sig"}, "SHA-256"},
		{"no signature file", []string{"--config", corePath, "--pairs", acme, "--sig", acme + ".missing"}, "signature file"},
		{"another label", []string{"--config", corePath, "--pairs", acme, "--label", "beta"}, "another tenant"},
		{"two tenants", []string{"--config", corePath, "--pairs", both}, "several tenants"},
		{"two tenants, one named", []string{"--config", corePath, "--pairs", both, "--label", "acme"}, "another tenant"},
		{"no --pairs", []string{"--config", corePath}, "--pairs is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCLI(t, "", append([]string{"core", "tokens", "apply"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error with %q\n%s", err, tc.want, out)
			}
			if p := corePlayer(t, corePath, "acme", "acme-casino", "u1"); p["email_token"] != oldTok {
				t.Fatalf("a refused apply changed the player: %v", p)
			}
		})
	}

	// While the core ingests into its SQLite file, the CLI may not change
	// players behind its back: it points at the admin API.
	t.Run("core running", func(t *testing.T) {
		cfg, err := core.LoadConfig(corePath)
		if err != nil {
			t.Fatal(err)
		}
		st, err := core.OpenStore(context.Background(), cfg, core.StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		ingestProfile(t, st, "acme", "acme-casino", "u2", map[string]any{"level": 1}) // takes the lock
		out, err := runCLI(t, "", "core", "tokens", "apply", "--config", corePath, "--pairs", acme)
		if err == nil || !strings.Contains(err.Error(), "/v1/labels/acme/token-pairs") {
			t.Fatalf("%v, want it to point at the admin API\n%s", err, out)
		}
		if p, err := st.Player(context.Background(), "acme", "acme-casino", "u1"); err != nil || p.Properties["email_token"] != oldTok {
			t.Fatalf("player: %v, %v", p.Properties, err)
		}
	})
	out, err := runCLI(t, "", "core", "tokens", "apply", "--config", corePath, "--pairs", acme)
	wantOutput(t, out, err, "rewrote 1 token values in 1 players")
}
