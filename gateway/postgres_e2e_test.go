package gateway_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/internal/testpg"
)

// The gateway on the PostgreSQL record store: a message is resolved from
// it and sent; erasure cancels the subject's queued messages and is
// shredded at once when shred_on_erase is set.
func TestGatewayOnThePostgresRecordStore(t *testing.T) {
	dsn := testpg.DSN(t)
	schema := testpg.Schema(t, dsn, "bp_gw_test")
	t.Setenv("BP_TEST_PG_DSN", dsn)
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) {
		c.Vault.Postgres = gateway.PostgresVaultConfig{DSNEnv: "BP_TEST_PG_DSN", Schema: schema, ShredOnErase: true}
	}})
	r.put("u-1", alex())
	r.put("u-2", alex())
	accepted(t, r.send(message("pg-1", "u-1")))
	r.drain()
	if st, reason := r.callback("pg-1"); st != gateway.StatusSent {
		t.Fatalf("pg-1: %s %s", st, reason)
	}
	accepted(t, r.send(message("pg-2", "u-2")))
	if err := r.ad.Erase(context.Background(), devenv.Brand, "u-2"); err != nil {
		t.Fatal(err)
	}
	r.drain()
	if st, _ := r.callback("pg-2"); st != gateway.StatusUnknownRecipient {
		t.Fatalf("pg-2 after erasure: %s", st)
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var subjects, pending int
	if err := conn.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM "+schema+".subjects), (SELECT count(*) FROM "+schema+".shred_pending)").
		Scan(&subjects, &pending); err != nil {
		t.Fatal(err)
	}
	if subjects != 1 || pending != 0 {
		t.Errorf("subjects %d (want 1), pending shreds %d (want 0)", subjects, pending)
	}
}
