package hashivault_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/hashivault"
)

func TestConfigValidate(t *testing.T) {
	ok := func() hashivault.Config {
		return hashivault.Config{Address: "https://vault.example.com:8200"}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*hashivault.Config)
		field  string // "" means valid
	}{
		{"defaults", func(*hashivault.Config) {}, ""},
		{"approle", func(c *hashivault.Config) {
			c.Auth = hashivault.AuthConfig{Method: "approle", RoleID: "r", SecretIDFile: "/run/secrets/sid"}
		}, ""},
		{"kubernetes", func(c *hashivault.Config) { c.Auth = hashivault.AuthConfig{Method: "kubernetes", Role: "gw"} }, ""},
		{"namespace", func(c *hashivault.Config) { c.Namespace = "ops/blindpost" }, ""},
		{"nested mount", func(c *hashivault.Config) { c.Mount = "kms/transit/" }, ""},
		{"no address", func(c *hashivault.Config) { c.Address = "" }, "address"},
		{"address without scheme", func(c *hashivault.Config) { c.Address = "vault:8200" }, "address"},
		{"ca file on http", func(c *hashivault.Config) { c.Address, c.CAFile = "http://127.0.0.1:8200", "/ca.pem" }, "address"},
		{"cert without key", func(c *hashivault.Config) { c.ClientCert = "/c.pem" }, "client_cert"},
		{"mount traversal", func(c *hashivault.Config) { c.Mount = "transit/../sys" }, "mount"},
		{"prefix with slash", func(c *hashivault.Config) { c.KeyPrefix = "a/b" }, "key_prefix"},
		{"prefix with glob", func(c *hashivault.Config) { c.KeyPrefix = "bp*" }, "key_prefix"},
		{"key type without AD", func(c *hashivault.Config) { c.KeyType = "aes256-cbc" }, "key_type"},
		{"negative token version", func(c *hashivault.Config) { c.TokenKeyVersion = -1 }, "token_key_version"},
		{"huge batch", func(c *hashivault.Config) { c.BatchSize = 100000 }, "batch_size"},
		{"bad namespace", func(c *hashivault.Config) { c.Namespace = "a//b" }, "namespace"},
		{"unknown method", func(c *hashivault.Config) { c.Auth.Method = "userpass" }, "auth.method"},
		{"token file and env", func(c *hashivault.Config) { c.Auth.TokenFile, c.Auth.TokenEnv = "/t", "T" }, "auth.token_file"},
		{"approle without role", func(c *hashivault.Config) { c.Auth = hashivault.AuthConfig{Method: "approle", SecretIDEnv: "S"} }, "auth.role_id"},
		{"approle without secret", func(c *hashivault.Config) { c.Auth = hashivault.AuthConfig{Method: "approle", RoleID: "r"} }, "auth.secret_id_file"},
		{"kubernetes without role", func(c *hashivault.Config) { c.Auth.Method = "kubernetes" }, "auth.role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.field != "" && (!errors.Is(err, hashivault.ErrConfig) || !strings.Contains(err.Error(), ": "+tc.field+": ")):
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

func TestGatewayPolicyPaths(t *testing.T) {
	cfg := hashivault.Config{Address: "https://vault.example.com", Mount: "kms"}
	pol, err := hashivault.GatewayPolicy(cfg, "acme", "beta")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`path "kms/encrypt/blindpost-acme-kek"`,
		`path "kms/decrypt/blindpost-beta-kek"`,
		`path "kms/hmac/blindpost-acme-token/sha2-256"`,
		`path "auth/token/renew-self"`,
	} {
		if !strings.Contains(pol, want) {
			t.Errorf("policy lacks %s:\n%s", want, pol)
		}
	}
	for _, never := range []string{"/keys/", "/export/", "/backup/", `"create"`, "sudo", "delete"} {
		if strings.Contains(pol, never) {
			t.Errorf("gateway policy grants %s:\n%s", never, pol)
		}
	}
	if _, err := hashivault.GatewayPolicy(cfg, "acme/../x"); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("tenant with a path: %v", err)
	}
	glob, _ := hashivault.GatewayPolicy(cfg)
	if !strings.Contains(glob, `path "kms/hmac/blindpost-*"`) {
		t.Fatalf("glob policy:\n%s", glob)
	}
	if _, err := hashivault.AdminPolicy(cfg); err == nil {
		t.Fatal("AdminPolicy without tenants")
	}
}

func TestCiphertextVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"vault:v1:abc=", 1},
		{"vault:v12:abc", 12},
		{"vault:v0:abc", 0},
		{"vault:v:abc", 0},
		{"vault:v1:", 0},
		{"vault:vx:abc", 0},
		{"vault:v1:ab\x00", 0},
		{"\x01binary", 0},
		{"", 0},
	} {
		v, err := hashivault.CiphertextVersion([]byte(tc.in))
		if v != tc.want || (tc.want == 0) != errors.Is(err, vault.ErrCorrupt) {
			t.Errorf("CiphertextVersion(%q) = %d, %v", tc.in, v, err)
		}
	}
}
