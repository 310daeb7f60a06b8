package gateway_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway"
)

func TestConfigFiles(t *testing.T) {
	cases := []struct {
		file string
		// wantErr lists substrings the error must contain; empty = valid.
		wantErr []string
	}{
		{"valid.yaml", nil},
		{"unknown-field.yaml", []string{"passprase_env", "not found"}},
		{"bad-duration.yaml", []string{"forever", "not a duration"}},
		{"invalid.yaml", []string{
			"tls.cert_file: required", "data_dir: required", "keys.hpke:", "exclusive",
			"smtp.addr:", "smtp.tls:", "send.workers:", "tenants[0].id:", "tenants[0].core_keys:",
			"tenants[0].callback_url: must be https",
		}},
		{"invalid-channels.yaml", []string{
			"smtp.dkim[0]: domain, selector and key_file", "smtp.dkim[1]: tenant and brand go together",
			"smtp.throttle: concurrency", "sms.adapter: want twilio, http or smpp", "telegram.token_env:",
			"push.authorization_env:", "public.base_url: want an https URL", "public.tls: needs tls.cert_file",
			"compat.trusted_proxies:", "tenants[0].compat.secrets_env:", "tenants[0].compat.allow_ips:",
			"tenants[0].compat.callback_allow:", "tenants[0].compat.brand:", "tenants[0].compat.category:",
		}},
		{"invalid-cluster.yaml", []string{
			"cluster.node: required with cluster.postgres", "vault: a cluster needs a shared record store",
			"public.key_file: required with cluster.postgres",
		}},
		{"invalid-node.yaml", []string{"cluster.node: needs cluster.postgres.dsn_env"}},
		{"../../../deploy/examples/gateway-vault-postgres.yaml", nil},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			cfg, err := gateway.LoadConfig(filepath.Join("testdata", "config", tc.file))
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadConfig accepted %s: %+v", tc.file, cfg)
			}
			if !errors.Is(err, gateway.ErrConfig) {
				t.Errorf("error does not wrap ErrConfig: %v", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestConfigDefaultsAndRelativePaths(t *testing.T) {
	cfg, err := gateway.LoadConfig(filepath.Join("testdata", "config", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(filepath.Join("testdata", "config", "keys", "signing.key"))
	if cfg.Keys.Signing != abs {
		t.Errorf("keys.signing = %q, want %q (relative to the config file)", cfg.Keys.Signing, abs)
	}
	if cfg.Vault.Embedded.Path != "/var/lib/blindpost/vault.db" {
		t.Errorf("vault path = %q, want it under data_dir", cfg.Vault.Embedded.Path)
	}
	if time.Duration(cfg.Send.MaxAge) != 24*time.Hour || cfg.Send.MaxAttempts != 8 {
		t.Errorf("send = %+v", cfg.Send)
	}
}
