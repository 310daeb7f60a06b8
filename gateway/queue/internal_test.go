package queue

import (
	"context"
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
