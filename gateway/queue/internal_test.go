package queue

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestFileIsDurableAndOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, name := range []string{path, path + "-wal"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want owner-only", filepath.Base(name), fi.Mode().Perm())
		}
	}
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"synchronous":  "2", // FULL
		"busy_timeout": "10000",
		"user_version": strconv.Itoa(len(migrations)),
	} {
		var got string
		if err := q.db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}

func TestPathMayHoldURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?x=1#frag%20")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Len(context.Background()); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("queue file not at its path: %v", err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if q, err := Open(path, Options{}); err == nil {
		q.Close()
		t.Fatal("Open accepted a file written by a newer schema")
	}
}

// A queue file written by the first schema opens with the current one, and
// its queued entries keep their place.
func TestMigrateFromFirstSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "queue.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{migrations[0], "PRAGMA user_version = 1",
		`INSERT INTO entries (ext_id, tenant, msg_id, brand, user, request, not_before, expires_at, attempts, created, due)
		 VALUES ('ext_1', 't1', 'm1', 'b1', 'u1', x'7b7d', 0, 0, 0, 1, 0)`} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%.40s: %v", stmt, err)
		}
	}
	db.Close()
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	es, err := q.Claim(ctx, 10, 0)
	if err != nil || len(es) != 1 || es[0].ExtID != "ext_1" || es[0].CallbackURL != "" {
		t.Fatalf("claim after migration: %+v %v", es, err)
	}
	var v int
	q.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	if v != len(migrations) {
		t.Errorf("user_version %d, want %d", v, len(migrations))
	}
}
