// Package testpg gives tests the PostgreSQL server they run against
// (scripts/services.sh starts it on 127.0.0.1:5432): its DSN, and fresh
// schemas that are dropped when the test ends.
package testpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// DefaultDSN is the test server when $BLINDPOST_TEST_POSTGRES names none.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DSN returns the test server's connection string. When the server cannot
// be reached the test fails under CI (which must run every test) and is
// skipped elsewhere.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("BLINDPOST_TEST_POSTGRES")
	if dsn == "" {
		dsn = DefaultDSN
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

// Schema returns the name of a schema no other test uses, prefix_<random>,
// and drops it, with everything in it, when the test ends. The schema
// itself is left for the code under test to create.
func Schema(t testing.TB, dsn, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := prefix + "_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if conn, err := pgx.Connect(context.Background(), dsn); err == nil {
			conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE")
			conn.Close(context.Background())
		}
	})
	return name
}
