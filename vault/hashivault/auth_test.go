package hashivault_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// appRole creates an AppRole role holding policy and returns its role id
// and a fresh secret id.
func appRole(t testing.TB, s *devServer, policy string, opts map[string]any) (roleID, secretID string) {
	t.Helper()
	pname := "p-" + randomHex(4)
	if err := s.Root.Sys().PutPolicy(pname, policy); err != nil {
		t.Fatal(err)
	}
	role := "r-" + randomHex(4)
	body := map[string]any{"token_policies": pname, "token_no_default_policy": true}
	for k, v := range opts {
		body[k] = v
	}
	if _, err := s.Root.Logical().Write("auth/approle/role/"+role, body); err != nil {
		t.Fatal(err)
	}
	sec, err := s.Root.Logical().Read("auth/approle/role/" + role + "/role-id")
	if err != nil {
		t.Fatal(err)
	}
	roleID = sec.Data["role_id"].(string)
	sec, err = s.Root.Logical().Write("auth/approle/role/"+role+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	return roleID, sec.Data["secret_id"].(string)
}

func appRoleConfig(t testing.TB, s *devServer, roleID, secretID string) hashivault.Config {
	cfg := baseConfig(s)
	cfg.Auth = hashivault.AuthConfig{
		Method:       hashivault.AuthAppRole,
		RoleID:       roleID,
		SecretIDFile: writeFile(t, "secret-id", secretID+"\n"),
	}
	return cfg
}

func TestAppRoleLeastPrivilege(t *testing.T) {
	s := needVault(t)
	root := rootProvider(t, s)
	tenant := setupTenant(t, root, "acme")
	other := setupTenant(t, root, "other")
	notSetUp := newTenant("later")
	policy, err := hashivault.GatewayPolicy(baseConfig(s), tenant, notSetUp)
	if err != nil {
		t.Fatal(err)
	}
	roleID, secretID := appRole(t, s, policy, nil)
	cfg := appRoleConfig(t, s, roleID, secretID)
	p := mustNew(t, cfg, hashivault.Options{})

	dk, ad := dataKey(t), refAD(tenant, "u-1", 1)
	w, err := p.Wrap(ctx, tenant, dk, ad)
	if err != nil {
		t.Fatalf("Wrap with the gateway policy: %v", err)
	}
	if got, err := p.Unwrap(ctx, tenant, w, ad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("Unwrap with the gateway policy: %v", err)
	}
	if _, err := vault.Tokenize(ctx, p, tenant, p.TokenVersion(), vault.KindPhone, "+15550100001"); err != nil {
		t.Fatalf("Tokenize with the gateway policy: %v", err)
	}

	forbidden := map[string]func() error{
		"wrap for another tenant": func() error { _, err := p.Wrap(ctx, other, dk, ad); return err },
		"hmac for another tenant": func() error { _, err := p.TokenMAC(ctx, other, 1, []byte("m")); return err },
		// update only on encrypt: Transit cannot create a missing key on
		// first use with default settings.
		"wrap creating a key": func() error { _, err := p.Wrap(ctx, notSetUp, dk, ad); return err },
		"setup":               func() error { _, err := p.Setup(ctx, tenant); return err },
		"rotate":              func() error { _, err := p.RotateKEK(ctx, tenant); return err },
		"trim":                func() error { return p.SetMinDecryptionVersion(ctx, tenant, 1) },
	}
	for name, f := range forbidden {
		t.Run(name, func(t *testing.T) {
			err := f()
			wantKind(t, err, vault.ErrUnavailable, dk, []byte(secretID), []byte(roleID))
			var e *hashivault.Error
			if !errors.As(err, &e) || e.Status != 403 || !strings.Contains(err.Error(), "permission denied") {
				t.Fatalf("err %v: want a 403 that says permission denied", err)
			}
		})
	}
	if _, err := root.KeyStatus(ctx, "blindpost-"+notSetUp+"-kek"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the forbidden wrap created a key: %v", err)
	}

	// Close revokes the token the AppRole login made.
	tok := p.Client().Token()
	p.Close()
	c, _ := s.client(tok)
	if _, err := c.Auth().Token().LookupSelf(); !isHTTPStatus(err, 403) {
		t.Fatalf("token still valid after Close: %v", err)
	}
	if _, err := p.Wrap(ctx, tenant, dk, ad); !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("Wrap after Close: %v", err)
	}
}

func TestAppRoleLoginFailures(t *testing.T) {
	s := needVault(t)
	roleID, secretID := appRole(t, s, `path "sys/health" { capabilities = ["read"] }`, nil)
	wrong := "00000000-1111-2222-3333-" + randomHex(6)
	for _, tc := range []struct {
		name   string
		mutate func(*hashivault.Config)
		reason string
	}{
		{"wrong secret id", func(c *hashivault.Config) { c.Auth.SecretIDFile = writeFile(t, "bad", wrong) }, "login refused"},
		{"missing secret id file", func(c *hashivault.Config) { c.Auth.SecretIDFile = "/nonexistent/secret-id" }, "secret_id_file"},
		{"empty secret id env", func(c *hashivault.Config) { c.Auth.SecretIDFile, c.Auth.SecretIDEnv = "", "BP_SECRET_ID" }, "BP_SECRET_ID is empty"},
		{"unknown role id", func(c *hashivault.Config) { c.Auth.RoleID = wrong }, "login refused"},
		{"wrong mount", func(c *hashivault.Config) { c.Auth.Mount = "nosuchauth" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := appRoleConfig(t, s, roleID, secretID)
			tc.mutate(&cfg)
			p, err := hashivault.New(ctx, cfg, hashivault.Options{Getenv: envWith()})
			if p != nil {
				p.Close()
				t.Fatal("New succeeded")
			}
			wantKind(t, err, vault.ErrUnavailable, []byte(secretID), []byte(wrong))
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err %q lacks %q", err, tc.reason)
			}
		})
	}
	t.Run("secret id from env", func(t *testing.T) {
		cfg := appRoleConfig(t, s, roleID, secretID)
		cfg.Auth.SecretIDFile, cfg.Auth.SecretIDEnv = "", "BP_SECRET_ID"
		cfg.Auth.RoleID, cfg.Auth.RoleIDFile = "", writeFile(t, "role-id", roleID)
		p, err := hashivault.New(ctx, cfg, hashivault.Options{Getenv: envWith("BP_SECRET_ID", secretID)})
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
	})
}

func TestTokenLoginFailures(t *testing.T) {
	s := needVault(t)
	t.Run("unset env", func(t *testing.T) {
		_, err := hashivault.New(ctx, baseConfig(s), hashivault.Options{Getenv: envWith()})
		wantKind(t, err, vault.ErrUnavailable)
		if !strings.Contains(err.Error(), "BP_TEST_TOKEN") {
			t.Fatalf("err %q does not name the variable", err)
		}
	})
	t.Run("invalid token", func(t *testing.T) {
		bad := "hvs.invalid" + randomHex(8)
		_, err := hashivault.New(ctx, baseConfig(s), hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", bad)})
		wantKind(t, err, vault.ErrUnavailable, []byte(bad))
	})
	t.Run("token file", func(t *testing.T) {
		cfg := baseConfig(s)
		cfg.Auth.TokenEnv, cfg.Auth.TokenFile = "", writeFile(t, "token", s.RootToken+"\n")
		p := mustNew(t, cfg, hashivault.Options{})
		if err := p.Health(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestTokenRenewal gives the gateway a renewable token of a 3 s TTL and
// keeps calling past it: the lifetime watcher must have renewed it.
func TestTokenRenewal(t *testing.T) {
	s := needVault(t)
	t.Parallel()
	root := rootProvider(t, s)
	tenant := setupTenant(t, root, "renew")
	policy, _ := hashivault.GatewayPolicy(baseConfig(s), tenant)
	tok := policyToken(t, s, policy, &api.TokenCreateRequest{TTL: "3s", ExplicitMaxTTL: "60s", Renewable: ptr(true)})
	cfg := baseConfig(s)
	cfg.Auth.TokenEnv, cfg.Auth.TokenFile = "", writeFile(t, "token", tok)
	logs := &logRecorder{}
	p := mustNew(t, cfg, hashivault.Options{Logger: logs.logger()})

	deadline := time.Now().Add(6 * time.Second) // twice the original TTL
	for time.Now().Before(deadline) {
		if _, err := p.TokenMAC(ctx, tenant, 1, []byte("m")); err != nil {
			t.Fatalf("call failed at %v: %v\nlogs:\n%s", time.Until(deadline), err, logs.all())
		}
		time.Sleep(250 * time.Millisecond)
	}
	if n := logs.count("vault: token renewed"); n < 2 {
		t.Fatalf("%d renewals in 6 s of a 3 s token\nlogs:\n%s", n, logs.all())
	}
	c, _ := s.client(tok)
	if _, err := c.Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("token expired although its original TTL was 3 s: %v", err)
	}
}

// TestAppRoleReloginAtMaxTTL: the role's tokens live 2 s, at most 4 s;
// calls keep working for 7 s because the provider logs in again before
// each token's max TTL.
func TestAppRoleReloginAtMaxTTL(t *testing.T) {
	s := needVault(t)
	t.Parallel()
	root := rootProvider(t, s)
	tenant := setupTenant(t, root, "relogin")
	policy, _ := hashivault.GatewayPolicy(baseConfig(s), tenant)
	roleID, secretID := appRole(t, s, policy, map[string]any{"token_ttl": "2s", "token_max_ttl": "4s"})
	logs := &logRecorder{}
	p := mustNew(t, appRoleConfig(t, s, roleID, secretID), hashivault.Options{Logger: logs.logger()})
	first := p.Client().Token()

	deadline := time.Now().Add(7 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := p.TokenMAC(ctx, tenant, 1, []byte("m")); err != nil {
			t.Fatalf("call failed: %v\nlogs:\n%s", err, logs.all())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := logs.count("vault: logged in"); n < 2 {
		t.Fatalf("%d logins in 7 s with a 4 s max TTL\nlogs:\n%s", n, logs.all())
	}
	if p.Client().Token() == first {
		t.Fatal("still the first token")
	}
	if strings.Contains(logs.all(), secretID) || strings.Contains(logs.all(), first) {
		t.Fatal("a log line holds the secret id or a token")
	}
}

func TestAdminPolicy(t *testing.T) {
	s := needVault(t)
	tenant := newTenant("admin")
	policy, err := hashivault.AdminPolicy(baseConfig(s), tenant)
	if err != nil {
		t.Fatal(err)
	}
	tok := policyToken(t, s, policy, nil)
	p := mustNew(t, baseConfig(s), hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", tok)})
	if created, err := p.Setup(ctx, tenant); err != nil || len(created) != 2 {
		t.Fatalf("Setup with the admin policy: %v, %v", created, err)
	}
	dk, ad := dataKey(t), []byte("ad")
	w, err := p.Wrap(ctx, tenant, dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.RotateKEK(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := p.RotateTokenKey(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	res, err := p.Rewrap(ctx, tenant, []hashivault.Item{{Data: w, AD: ad}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("Rewrap: %v %v", err, res)
	}
	if err := p.SetMinDecryptionVersion(ctx, tenant, 2); err != nil {
		t.Fatal(err)
	}
	if err := p.TrimKEK(ctx, tenant, 2); err != nil {
		t.Fatal(err)
	}
	kek, _ := p.KEKName(tenant)
	tk, _ := p.TokenKeyName(tenant)
	c := p.Client()
	for _, f := range []struct {
		name string
		path string
		body map[string]any
	}{
		{"make the KEK exportable", "transit/keys/" + kek + "/config", map[string]any{"exportable": true}},
		{"allow deleting the KEK", "transit/keys/" + kek + "/config", map[string]any{"deletion_allowed": true}},
		{"trim the token key", "transit/keys/" + tk + "/trim", map[string]any{"min_available_version": 2}},
		{"export the KEK", "transit/export/encryption-key/" + kek, nil},
	} {
		var err error
		if f.body == nil {
			_, err = c.Logical().Read(f.path)
		} else {
			_, err = c.Logical().Write(f.path, f.body)
		}
		if !isHTTPStatus(err, 403) {
			t.Errorf("%s: %v, want 403", f.name, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestRevokedTokenLogsInAgain: an operator revokes the gateway's token
// (or a restored Vault lost it). The next call fails with ErrUnavailable;
// the 403 makes the provider check its token and log in again at once,
// not at the end of the token's one-hour lease.
func TestRevokedTokenLogsInAgain(t *testing.T) {
	s := needVault(t)
	root := rootProvider(t, s)
	tenant := setupTenant(t, root, "revoked")
	policy, _ := hashivault.GatewayPolicy(baseConfig(s), tenant)
	roleID, secretID := appRole(t, s, policy, map[string]any{"token_ttl": "1h"})
	logs := &logRecorder{}
	p := mustNew(t, appRoleConfig(t, s, roleID, secretID), hashivault.Options{Logger: logs.logger()})
	first := p.Client().Token()
	if err := s.Root.Auth().Token().RevokeTree(first); err != nil {
		t.Fatal(err)
	}
	_, err := p.TokenMAC(ctx, tenant, 1, []byte("m"))
	wantKind(t, err, vault.ErrUnavailable, []byte(first), []byte(secretID))
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = p.TokenMAC(ctx, tenant, 1, []byte("m"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 5 s after the revocation: %v\nlogs:\n%s", err, logs.all())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if p.Client().Token() == first || logs.count("vault: logged in") < 2 {
		t.Fatalf("no new login\nlogs:\n%s", logs.all())
	}
}

// TestPolicyDenialDoesNotLogIn: a 403 from a path the policy does not
// allow leaves a valid token alone.
func TestPolicyDenialDoesNotLogIn(t *testing.T) {
	s := needVault(t)
	root := rootProvider(t, s)
	tenant := setupTenant(t, root, "denied")
	policy, _ := hashivault.GatewayPolicy(baseConfig(s), tenant)
	roleID, secretID := appRole(t, s, policy, nil)
	logs := &logRecorder{}
	p := mustNew(t, appRoleConfig(t, s, roleID, secretID), hashivault.Options{Logger: logs.logger()})
	first := p.Client().Token()
	for range 3 {
		if _, err := p.RotateKEK(ctx, tenant); !errors.Is(err, vault.ErrUnavailable) {
			t.Fatalf("RotateKEK: %v", err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if p.Client().Token() != first || logs.count("vault: logged in") != 1 {
		t.Fatalf("a policy denial caused a login\nlogs:\n%s", logs.all())
	}
}
