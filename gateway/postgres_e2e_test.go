package gateway_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
)

// postgresDSN is the test server (scripts/services.sh starts it); without
// one the test fails under CI and is skipped elsewhere.
func postgresDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("BLINDPOST_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL unreachable (run scripts/services.sh): %v", err)
		}
		t.Skipf("PostgreSQL unreachable: %v", err)
	}
	conn.Close(context.Background())
	return dsn
}

// The gateway on the PostgreSQL record store: a message is resolved from
// it and sent; erasure cancels the subject's queued messages and is
// shredded at once when shred_on_erase is set.
func TestGatewayOnThePostgresRecordStore(t *testing.T) {
	dsn := postgresDSN(t)
	schema := fmt.Sprintf("bp_gw_test_%d", rand.Uint32())
	t.Cleanup(func() {
		if conn, err := pgx.Connect(context.Background(), dsn); err == nil {
			conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			conn.Close(context.Background())
		}
	})
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
