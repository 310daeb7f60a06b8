package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/core"
	"github.com/blindpost/blindpost/core/admin"
)

var apiKeyRE = regexp.MustCompile(`bpk_[A-Za-z0-9_]+`)

func TestCoreInitThenLabelsAndKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "core")
	out, err := runCLI(t, "", "core", "init", "--data", dir, "--label", "acme", "--brand", "acme-casino")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	key := apiKeyRE.FindString(out)
	if key == "" {
		t.Fatalf("init printed no API key:\n%s", out)
	}
	cfgPath := filepath.Join(dir, "core.yaml")
	cfg, err := core.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "admin.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v %v", err, fi)
	}
	st, err := core.OpenStore(context.Background(), cfg, core.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := st.Authenticate(context.Background(), key); err != nil || l != "acme" {
		t.Fatalf("the printed key does not authenticate: %q %v", l, err)
	}
	st.Close()
	if out, err := runCLI(t, "", "core", "check", "--config", cfgPath); err != nil || !strings.Contains(out, "ok") {
		t.Errorf("check: %v %s", err, out)
	}
	if _, err := runCLI(t, "", "core", "init", "--data", dir); err == nil {
		t.Error("init over an existing config succeeded")
	}

	steps := []struct {
		args []string
		want string // in the output
	}{
		{[]string{"labels", "create", "beta", "--name", "Beta Bets"}, "label beta (Beta Bets)"},
		{[]string{"labels", "add-brand", "beta", "beta-bets"}, "beta-bets"},
		{[]string{"labels", "firewall", "beta", "strip"}, "firewall  strip"},
		{[]string{"labels", "add-type", "beta", "mission_done"}, "mission_done"},
		{[]string{"labels", "show", "acme"}, "acme-casino"},
		{[]string{"labels", "list"}, "beta"},
	}
	for _, s := range steps {
		out, err := runCLI(t, "", append(append([]string{"core"}, s.args...), "--config", cfgPath)...)
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("%v: %v\n%s", s.args, err, out)
		}
	}

	out, err = runCLI(t, "", "core", "keys", "rotate", "acme", "--config", cfgPath, "--json")
	if err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	var nk admin.NewKey
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &nk); err != nil || nk.Key == "" || len(nk.Previous) != 1 {
		t.Fatalf("rotate: %v %s", err, out)
	}
	old := nk.Previous[0].ID
	out, err = runCLI(t, "", "core", "keys", "list", "acme", "--config", cfgPath)
	if err != nil || !strings.Contains(out, old) || !strings.Contains(out, nk.Info.ID) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if apiKeyRE.MatchString(out) {
		t.Errorf("key list shows a secret:\n%s", out)
	}
	if out, err := runCLI(t, "", "core", "keys", "revoke", "acme", old, "--config", cfgPath); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	st, err = core.OpenStore(context.Background(), cfg, core.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Authenticate(context.Background(), key); err == nil {
		t.Error("revoked key still authenticates")
	}
	if l, err := st.Authenticate(context.Background(), nk.Key); err != nil || l != "acme" {
		t.Errorf("rotated key: %v", err)
	}

	for _, bad := range [][]string{
		{"core", "labels", "firewall", "acme", "off", "--config", cfgPath},
		{"core", "labels", "show", "nope", "--config", cfgPath},
		{"core", "labels", "create", "--config", cfgPath},
		{"core", "keys", "revoke", "acme", "--config", cfgPath},
		{"core", "keys", "list", "acme"},
		{"core", "frobnicate", "--config", cfgPath},
	} {
		if out, err := runCLI(t, "", bad...); err == nil {
			t.Errorf("%v succeeded:\n%s", bad, out)
		}
	}
}
