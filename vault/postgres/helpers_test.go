package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
	"github.com/blindpost/blindpost/vault/postgres"
)

var ctx = context.Background()

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

func inCI() bool { return os.Getenv("CI") == "true" }

// skipOrFail skips the test locally and fails it under CI=true, where a
// missing server means a broken setup, not a choice.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if inCI() {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

var server struct {
	once sync.Once
	err  error
}

// requireServer checks once per run that the test server answers.
func requireServer(t testing.TB) {
	t.Helper()
	server.once.Do(func() {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn())
		if err == nil {
			err = c.Ping(ctx)
			c.Close(ctx)
		}
		server.err = err
	})
	if server.err != nil {
		skipOrFail(t, "PostgreSQL at %s is unreachable (%v); start it with scripts/services.sh or set BLINDPOST_TEST_POSTGRES", where(), server.err)
	}
}

// admin opens a connection of its own to the test server, as a database
// administrator (or an attacker with the same rights) would.
func admin(t testing.TB) *pgx.Conn {
	t.Helper()
	requireServer(t)
	c, err := pgx.Connect(ctx, dsn())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// newSchema returns a fresh schema name, dropped with everything in it
// when the test ends.
func newSchema(t testing.TB) string {
	t.Helper()
	requireServer(t)
	var b [6]byte
	rand.Read(b[:])
	name := "bp_test_" + hex.EncodeToString(b[:])
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

func newKey(t testing.TB) *embedded.LocalKeyProvider {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := embedded.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	kp, err := embedded.NewKeyFileProvider(path)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func mustOpen(t testing.TB, kp vault.KeyProvider, opts postgres.Options) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(ctx, dsn(), kp, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newStore opens a store in a schema of its own.
func newStore(t testing.TB) (*postgres.Store, string) {
	t.Helper()
	schema := newSchema(t)
	return mustOpen(t, newKey(t), postgres.Options{Schema: schema}), schema
}

func mustPut(t testing.TB, s vault.Store, ref vault.Ref, rec vault.Record) vault.Subject {
	t.Helper()
	sub, err := s.Put(ctx, ref, rec)
	if err != nil {
		t.Fatalf("Put(%v): %v", ref, err)
	}
	return sub
}

// mustShred runs Shred, retrying while a transaction of another test
// package on the same server holds the horizon back, as the gateway's
// schedule would.
func mustShred(t testing.TB, s *postgres.Store) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := s.Shred(ctx)
		if err == nil {
			return
		}
		if !errors.Is(err, postgres.ErrShredDeferred) || time.Now().After(deadline) {
			t.Fatalf("Shred: %v", err)
		}
		t.Logf("Shred deferred, retrying: %v", err)
	}
}

// proxy is a TCP relay on loopback in front of the test server, so a test
// can cut a store's connections as a network failure would.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

// startProxy returns the proxy and a DSN that connects through it.
func startProxy(t testing.TB) (*proxy, string) {
	t.Helper()
	u, err := url.Parse(dsn())
	if err != nil || u.Host == "" {
		t.Skipf("BLINDPOST_TEST_POSTGRES is not a URL with a host; cannot proxy it")
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	u.Host = ln.Addr().String()
	return p, u.String()
}

// cut stops accepting and drops every relayed connection.
func (p *proxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
