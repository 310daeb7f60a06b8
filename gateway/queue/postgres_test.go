package queue_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/blindpost/blindpost/gateway/queue"
)

// Nodes starting together on a new schema create it once, and all open.
func TestPostgresNodesStartingTogetherMigrateOnce(t *testing.T) {
	be := newBackend(t, "postgres")
	schema := strings.TrimPrefix(be.spec, "postgres:")
	const nodes = 4
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, err := queue.OpenPostgres(context.Background(), dsn(), queue.Options{Schema: schema})
			if err == nil {
				err = q.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	var versions, applied int
	if err := admin(t).QueryRow(context.Background(), `SELECT count(*), max(version) FROM `+schema+`.schema_version`).Scan(&applied, &versions); err != nil {
		t.Fatal(err)
	}
	if applied != versions {
		t.Fatalf("%d migrations recorded for version %d", applied, versions)
	}
}

func TestPostgresNewerSchemaIsRefused(t *testing.T) {
	be := newBackend(t, "postgres")
	be.open(queue.Options{}).Close()
	schema := strings.TrimPrefix(be.spec, "postgres:")
	if _, err := admin(t).Exec(context.Background(), `INSERT INTO `+schema+`.schema_version (version) VALUES (99)`); err != nil {
		t.Fatal(err)
	}
	if q, err := queue.OpenPostgres(context.Background(), dsn(), queue.Options{Schema: schema}); err == nil {
		q.Close()
		t.Fatal("OpenPostgres accepted a schema migrated by a newer binary")
	}
}

func TestPostgresSchemaNameIsChecked(t *testing.T) {
	for _, name := range []string{"Queue", "1queue", "queue; DROP TABLE x", `q"x`, strings.Repeat("q", 64)} {
		// Refused before connecting: no server needed.
		if q, err := queue.OpenPostgres(context.Background(), dsn(), queue.Options{Schema: name}); !errors.Is(err, queue.ErrInvalid) {
			if q != nil {
				q.Close()
			}
			t.Errorf("schema %q: %v, want ErrInvalid", name, err)
		}
	}
}

// An operator may create the schema for a role that may not create one;
// Open then only adds the tables.
func TestPostgresUsesASchemaThatExists(t *testing.T) {
	be := newBackend(t, "postgres")
	schema := strings.TrimPrefix(be.spec, "postgres:")
	if _, err := admin(t).Exec(context.Background(), `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	q := be.open(queue.Options{})
	mustAccept(t, q, accepted("t1", "m1", "u1", request("t1", "m1")))
	mustLen(t, q, 1)
}

// Accept is acknowledged once durable: a server (or DSN) that does not wait
// for the WAL to be flushed at commit is refused.
func TestPostgresRefusesSynchronousCommitOff(t *testing.T) {
	be := newBackend(t, "postgres")
	u, err := url.Parse(dsn())
	if err != nil || u.Host == "" {
		t.Skip("BLINDPOST_TEST_POSTGRES is not a URL")
	}
	v := u.Query()
	v.Set("synchronous_commit", "off")
	u.RawQuery = v.Encode()
	q, err := queue.OpenPostgres(context.Background(), u.String(), queue.Options{Schema: strings.TrimPrefix(be.spec, "postgres:")})
	if err == nil {
		q.Close()
		t.Fatal("OpenPostgres accepted synchronous_commit=off")
	}
	if !strings.Contains(err.Error(), "synchronous_commit") {
		t.Fatalf("err = %v, want it to name synchronous_commit", err)
	}
}
