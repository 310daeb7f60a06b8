package queue_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/blindpost/blindpost/gateway/queue"
)

// The queue's behaviour is the same on SQLite and on PostgreSQL: the tests
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
// behind the queue's back.
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
// when the test ends (after the queues in it are closed: cleanups run last
// registered first).
func newSchema(t testing.TB) string {
	t.Helper()
	requireServer(t)
	var b [6]byte
	rand.Read(b[:])
	name := "bp_queue_test_" + hex.EncodeToString(b[:])
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

// backend is one test's store: every queue it opens opens the same store,
// as a restarted node, or another node (Options.Node), would.
type backend struct {
	name string
	// spec names the store for openSpec: "sqlite:PATH" or "postgres:SCHEMA".
	spec string
	tb   testing.TB
}

var backendNames = []string{"sqlite", "postgres"}

// newBackend makes a fresh store; on PostgreSQL it skips the test (or
// fails it under CI=true) if the server is unreachable.
func newBackend(tb testing.TB, name string) backend {
	tb.Helper()
	switch name {
	case "sqlite":
		return backend{name, "sqlite:" + filepath.Join(tb.TempDir(), "queue.db"), tb}
	case "postgres":
		return backend{name, "postgres:" + newSchema(tb), tb}
	}
	tb.Fatalf("unknown backend %q", name)
	return backend{}
}

// forEachBackend runs f on a fresh store of each backend.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) { f(t, newBackend(t, name)) })
	}
}

// open opens a queue on the store, closed when the test ends.
func (b backend) open(opts queue.Options) *queue.Queue {
	b.tb.Helper()
	q, err := openSpec(b.spec, opts)
	if err != nil {
		b.tb.Fatalf("open %s queue: %v", b.name, err)
	}
	b.tb.Cleanup(func() { q.Close() })
	return q
}

// queue opens a queue on the store with c as its clock (nil: time.Now).
func (b backend) queue(c *clock) *queue.Queue {
	b.tb.Helper()
	var opts queue.Options
	if c != nil {
		opts.Now = c.Now
	}
	return b.open(opts)
}

func openSpec(spec string, opts queue.Options) (*queue.Queue, error) {
	if schema, ok := strings.CutPrefix(spec, "postgres:"); ok {
		opts.Schema = schema
		return queue.OpenPostgres(context.Background(), dsn(), opts)
	}
	return queue.Open(strings.TrimPrefix(spec, "sqlite:"), opts)
}
