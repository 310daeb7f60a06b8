package gateway_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/internal/testpg"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// The production example runs: deploy/examples/gateway-vault-postgres.yaml's
// vault, cluster and send sections, as written, carry messages from
// acceptance to delivery against a real Vault (Transit keys) and a real
// PostgreSQL (records and shared state). Only what names the operator's
// hosts and secrets is swapped for this test's: the Vault address and
// auth (a dev server's root token instead of AppRole), the schemas (fresh
// ones), and the listeners, keys and relay of the dev rig.
func TestDeployExampleVaultPostgresRuns(t *testing.T) {
	dsn := testpg.DSN(t)
	addr, token := startVault(t)
	f, err := os.Open(filepath.Join("..", "deploy", "examples", "gateway-vault-postgres.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := gateway.ParseConfig(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !ex.Clustered() || ex.Vault.Postgres.DSNEnv == "" || ex.Vault.Hashicorp.Address == "" {
		t.Fatal("the example no longer configures Vault Transit, PostgreSQL records and a cluster")
	}

	vaultSchema := testpg.Schema(t, dsn, "bp_example_vault")
	queueSchema := testpg.Schema(t, dsn, "bp_example_queue")
	t.Setenv(ex.Vault.Postgres.DSNEnv, dsn)
	t.Setenv(ex.Cluster.Postgres.DSNEnv, dsn)
	ex.Vault.Postgres.Schema, ex.Cluster.Postgres.Schema = vaultSchema, queueSchema

	const tokenEnv = "BP_TEST_EXAMPLE_VAULT_TOKEN"
	t.Setenv(tokenEnv, token)
	ex.Vault.Hashicorp.Address, ex.Vault.Hashicorp.CAFile = addr, ""
	ex.Vault.Hashicorp.Auth = hashivault.AuthConfig{Method: "token", TokenEnv: tokenEnv}
	// What `blindpost vault setup --config` does first.
	p, err := hashivault.New(context.Background(), ex.Vault.Hashicorp, hashivault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Setup(context.Background(), devenv.Tenant); err != nil {
		t.Fatal(err)
	}
	p.Close()

	unsubKey := filepath.Join(t.TempDir(), "unsubscribe.key")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(unsubKey, key, 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) {
		c.Vault = ex.Vault
		c.Cluster = ex.Cluster
		c.Send.Lease = ex.Send.Lease
		c.Public.KeyFile = unsubKey // the file every node shares
	}})
	if got, want := r.env.Gateway.AuditOrigin(), "/"+ex.Cluster.Node; len(got) < len(want) || got[len(got)-len(want):] != want {
		t.Errorf("audit origin %q does not name the node %q", got, ex.Cluster.Node)
	}
	r.put("u-1", alex())
	accepted(t, r.send(message("ex-1", "u-1")))
	r.drain()
	if st, reason := r.callback("ex-1"); st != gateway.StatusSent {
		t.Fatalf("ex-1: %s %s", st, reason)
	}
	// The queue and the records are in PostgreSQL, not in data_dir.
	for _, name := range []string{"queue.db", "vault.db"} {
		if _, err := os.Stat(filepath.Join(r.dir, "data", name)); err == nil {
			t.Errorf("data_dir holds %s; the example keeps it in PostgreSQL", name)
		}
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var subjects, answers int
	if err := conn.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM "+vaultSchema+".subjects), (SELECT count(*) FROM "+queueSchema+".answers)").
		Scan(&subjects, &answers); err != nil {
		t.Fatal(err)
	}
	if subjects != 1 || answers != 1 {
		t.Errorf("PostgreSQL holds %d subjects and %d answers, want 1 and 1", subjects, answers)
	}
}
