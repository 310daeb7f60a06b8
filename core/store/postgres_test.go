package store_test

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/blindpost/blindpost/core/store"
)

// sqliteRaw opens a SQLite file behind the store's back.
func sqliteRaw(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// Nodes starting together on a new schema create it once, and all open.
func TestPostgresNodesStartingTogetherMigrateOnce(t *testing.T) {
	be := newBackend(t, store.DriverPostgres)
	const nodes = 4
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Go(func() {
			s, err := store.Open(context.Background(), be.cfg)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	var versions, applied int
	if err := admin(t).QueryRow(t.Context(), `SELECT count(*), max(version) FROM `+be.cfg.Schema+`.schema_version`).Scan(&applied, &versions); err != nil {
		t.Fatal(err)
	}
	if applied != versions || versions == 0 {
		t.Fatalf("%d migrations recorded for version %d", applied, versions)
	}
}

func TestPostgresNewerSchemaIsRefused(t *testing.T) {
	be := newBackend(t, store.DriverPostgres)
	be.open(t).Close()
	if _, err := admin(t).Exec(t.Context(), `INSERT INTO `+be.cfg.Schema+`.schema_version (version) VALUES (99)`); err != nil {
		t.Fatal(err)
	}
	if s, err := store.Open(t.Context(), be.cfg); err == nil {
		s.Close()
		t.Fatal("Open accepted a schema migrated by a newer binary")
	}
}

// An operator may create the schema for a role that may not create one;
// Open then only adds the tables.
func TestPostgresUsesASchemaThatExists(t *testing.T) {
	be := newBackend(t, store.DriverPostgres)
	if _, err := admin(t).Exec(t.Context(), `CREATE SCHEMA `+be.cfg.Schema); err != nil {
		t.Fatal(err)
	}
	s := be.open(t)
	mustLabel(t, s, "acme")
}

// Ingest is acknowledged once durable: a DSN that does not wait for the
// WAL to be flushed at commit is refused.
func TestPostgresRefusesSynchronousCommitOff(t *testing.T) {
	be := newBackend(t, store.DriverPostgres)
	u, err := url.Parse(dsn())
	if err != nil || u.Host == "" {
		t.Skip("BLINDPOST_TEST_POSTGRES is not a URL")
	}
	v := u.Query()
	v.Set("synchronous_commit", "off")
	u.RawQuery = v.Encode()
	cfg := be.cfg
	cfg.DSN = u.String()
	s, err := store.Open(t.Context(), cfg)
	if err == nil {
		s.Close()
		t.Fatal("Open accepted synchronous_commit=off")
	}
	if !strings.Contains(err.Error(), "synchronous_commit") {
		t.Fatalf("err = %v, want it to name synchronous_commit", err)
	}
}
