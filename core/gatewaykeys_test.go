package core_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/core"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/tokenmap"
)

// A core configured with the gateway's signing.pub (a relative path in
// core.yaml) applies a token pairs file through its admin API: the player
// the events API fed with an old token holds the new one.
func TestTokenPairsThroughTheAdminAPI(t *testing.T) {
	dir := t.TempDir()
	if err := envelope.WriteGatewayKeys(filepath.Join(dir, "gw"), nil); err != nil {
		t.Fatal(err)
	}
	yaml := "data_dir: data\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ngateway_keys: [gw/signing.pub]\n"
	if err := os.WriteFile(filepath.Join(dir, "core.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := core.LoadConfig(filepath.Join(dir, "core.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "gw", "signing.pub"); len(cfg.GatewayKeys) != 1 || cfg.GatewayKeys[0] != want {
		t.Fatalf("gateway_keys = %v, want [%s]", cfg.GatewayKeys, want)
	}
	n := start(t, cfg, nil)
	key := n.setupLabel(t, "acme", "acme-casino", "reject")

	oldTok := "tok_email_v1_" + strings.Repeat("m", 32)
	newTok := "tok_email_v2_" + strings.Repeat("n", 32)
	if code, r, raw := n.post(t, key, ev("11111111-1111-4111-8111-111111111111", "acme-casino", "u1", "update_profile",
		map[string]any{"email_token": oldTok})); code != http.StatusOK || r.ErrCode != 0 {
		t.Fatalf("events API: %d %s", code, raw)
	}

	gw, err := envelope.LoadSigningKey(filepath.Join(dir, "gw", "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	var data bytes.Buffer
	w := tokenmap.NewWriter(&data)
	if err := w.Write(tokenmap.Pair{Tenant: "acme", Kind: "email", Old: oldTok, New: newTok}); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	sig, err := tokenmap.Sign(gw, "pairs.ndjson", w.Sum())
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for name, b := range map[string][]byte{"pairs": data.Bytes(), "sig": sig} {
		pw, _ := mw.CreateFormFile(name, name)
		pw.Write(b)
	}
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.AdminAddr()+"/v1/labels/acme/token-pairs", &body)
	req.Header.Set("Authorization", "Bearer "+n.token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), `"players":1`) {
		t.Fatalf("token-pairs: %d %s", resp.StatusCode, raw)
	}
	var p struct {
		Properties map[string]any `json:"properties"`
	}
	if code := n.adminDo(t, "GET", "/api/players/acme-casino/u1?label=acme", "", &p); code != http.StatusOK || p.Properties["email_token"] != newTok {
		t.Fatalf("player: %d %v", code, p.Properties)
	}
}

func TestGatewayKeysConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, field string
	}{
		{"empty path", "data_dir: /d\ngateway_keys: ['']", "gateway_keys[0]"},
		{"twice", "data_dir: /d\ngateway_keys: [/k/signing.pub, /k/signing.pub]", "gateway_keys[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := core.ParseConfig(strings.NewReader(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); !errors.Is(err, core.ErrConfig) || !strings.Contains(err.Error(), tc.field+": ") {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}

	// A key file that does not load stops the core from starting.
	cfg := testConfig(t)
	notAKey := filepath.Join(t.TempDir(), "signing.pub")
	os.WriteFile(notAKey, []byte("not a key\n"), 0o600)
	for i, p := range []string{filepath.Join(t.TempDir(), "missing.pub"), notAKey} {
		cfg.GatewayKeys = []string{p}
		co, err := core.Open(context.Background(), cfg, core.Options{AdminTokens: []string{randomToken()}})
		if err == nil {
			co.Close()
			t.Fatalf("case %d: Open with an unloadable gateway key succeeded", i)
		}
		if !errors.Is(err, core.ErrConfig) || !strings.Contains(err.Error(), "gateway_keys[0]") {
			t.Errorf("case %d: %v, want an error naming gateway_keys[0]", i, err)
		}
	}
	// A public key of another type is no signing key.
	dir := t.TempDir()
	if err := envelope.WriteGatewayKeys(dir, nil); err != nil {
		t.Fatal(err)
	}
	cfg.GatewayKeys = []string{filepath.Join(dir, envelope.FileHPKEPub)}
	if _, err := cfg.LoadGatewayKeys(); err == nil {
		t.Error("an HPKE public key loaded as a gateway signing key")
	}
}
