package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/blindpost/blindpost/core/store"
)

// The store's behaviour is the same on SQLite and on PostgreSQL: the tests
// of that behaviour run on both, as subtests named after the backend.

const defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// dsn is the test server: BLINDPOST_TEST_POSTGRES, or the local one.
func dsn() string {
	if d := os.Getenv("BLINDPOST_TEST_POSTGRES"); d != "" {
		return d
	}
	return defaultDSN
}

// where names the server without credentials, for messages.
func where() string {
	cfg, err := pgconn.ParseConfig(dsn())
	if err != nil {
		return "(unparsable BLINDPOST_TEST_POSTGRES)"
	}
	return cfg.Host + ":" + strconv.Itoa(int(cfg.Port)) + "/" + cfg.Database
}

var server struct {
	once sync.Once
	err  error
}

// requireServer checks once per run that the test server answers; if it
// does not, the test is skipped, or fails under CI=true, where a missing
// server means a broken setup.
func requireServer(t testing.TB) {
	t.Helper()
	server.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn())
		if err == nil {
			err = c.Ping(ctx)
			c.Close(ctx)
		}
		server.err = err
	})
	if server.err == nil {
		return
	}
	const msg = "PostgreSQL at %s is unreachable (%v); start it with scripts/services.sh or set BLINDPOST_TEST_POSTGRES"
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: "+msg, where(), server.err)
	}
	t.Skipf(msg, where(), server.err)
}

// admin is a connection of the test's own to the test server, for looking
// behind the store's back.
func admin(t testing.TB) *pgx.Conn {
	t.Helper()
	requireServer(t)
	c, err := pgx.Connect(context.Background(), dsn())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// newSchema returns a fresh schema name, dropped with everything in it
// when the test ends (after the stores in it are closed: cleanups run last
// registered first).
func newSchema(t testing.TB) string {
	t.Helper()
	requireServer(t)
	var b [6]byte
	rand.Read(b[:])
	name := "bp_core_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn())
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA IF EXISTS `+name+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// backendNames are the backends the behaviour tests run on: SQLite, SQLite
// with a player cache so small that every batch evicts, and PostgreSQL.
var backendNames = []string{store.DriverSQLite, sqliteTinyCache, store.DriverPostgres}

const sqliteTinyCache = "sqlite-tinycache"

// backend is where a test's stores live: a file in the test's directory,
// or a fresh schema on the test server.
type backend struct {
	name string
	cfg  store.Config
}

func newBackend(t testing.TB, name string) *backend {
	t.Helper()
	be := &backend{name: name, cfg: store.Config{Driver: name}}
	switch name {
	case store.DriverSQLite:
		be.cfg.Path = filepath.Join(t.TempDir(), "core.db")
	case sqliteTinyCache:
		be.cfg.Driver, be.cfg.PlayerCache = store.DriverSQLite, 2
		be.cfg.Path = filepath.Join(t.TempDir(), "core.db")
	case store.DriverPostgres:
		be.cfg.DSN, be.cfg.Schema = dsn(), newSchema(t)
	}
	return be
}

// forEachBackend runs fn as a subtest on each backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, be *backend)) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			fn(t, newBackend(t, name))
		})
	}
}

// open opens a store on the backend, closed when the test ends; cfg's
// zero fields are the backend's.
func (be *backend) open(t testing.TB) *store.Store {
	t.Helper()
	return be.openWith(t, store.Config{})
}

func (be *backend) openWith(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	c := be.cfg
	c.Now, c.Logger, c.MaxConns = cfg.Now, cfg.Logger, cfg.MaxConns
	s, err := store.Open(context.Background(), c)
	if err != nil {
		t.Fatalf("open %s: %v", be.name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
