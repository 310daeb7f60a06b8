package postgres_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/postgres"
)

func TestTwoNodesShareRecordsTokensAndErasures(t *testing.T) {
	schema, kp := newSchema(t), newKey(t)
	a := mustOpen(t, kp, postgres.Options{Schema: schema})
	b := mustOpen(t, kp, postgres.Options{Schema: schema})
	sub := mustPut(t, a, acmeAlice, alice)
	rec, err := b.Resolve(ctx, acmeAlice)
	if err != nil || rec.Pseudonym != sub.Pseudonym {
		t.Fatalf("node b: Resolve = %+v, %v", rec, err)
	}
	if ref, err := b.Lookup(ctx, "acme", acmeAlice.Brand, sub.Tokens[vault.KindEmail]); err != nil || ref != acmeAlice {
		t.Fatalf("node b: Lookup = %v, %v", ref, err)
	}
	if err := b.Erase(ctx, acmeAlice); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Resolve(ctx, acmeAlice); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("node a after node b erased: %v, want ErrNotFound", err)
	}
	// Both nodes' schedules fire at once: one shreds, the other waits.
	var wg sync.WaitGroup
	for _, s := range []*postgres.Store{a, b} {
		wg.Go(func() { mustShred(t, s) })
	}
	wg.Wait()
	if n, _, err := a.Pending(ctx); err != nil || n != 0 {
		t.Fatalf("Pending = %d, %v", n, err)
	}
}

// Puts of one subject from two gateway processes (two pools, so separate
// connections and no shared in-process lock) must serialise: every Put
// lands as its own version, and the token index ends up matching the last
// record exactly.
func TestConcurrentPutsOfOneSubjectFromTwoNodesLoseNoUpdate(t *testing.T) {
	schema, kp := newSchema(t), newKey(t)
	nodes := []*postgres.Store{
		mustOpen(t, kp, postgres.Options{Schema: schema}),
		mustOpen(t, kp, postgres.Options{Schema: schema}),
	}
	shared := vault.Ref{Tenant: "acme", Brand: "casino-1", User: "shared"}
	const perNode, each = 3, 6
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		puts       int
		pseudonyms = map[string]bool{}
		tokens     []string
	)
	for n, s := range nodes {
		for w := range perNode {
			wg.Go(func() {
				for i := range each {
					rec := vault.Record{Email: fmt.Sprintf("n%d.w%d.%d@example.com", n, w, i), FirstName: "Shared"}
					sub, err := s.Put(ctx, shared, rec)
					if err != nil {
						t.Error(err)
						continue
					}
					mu.Lock()
					puts++
					pseudonyms[sub.Pseudonym] = true
					tokens = append(tokens, sub.Tokens[vault.KindEmail])
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if puts != len(nodes)*perNode*each {
		t.Fatalf("%d Puts succeeded of %d", puts, len(nodes)*perNode*each)
	}
	if len(pseudonyms) != 1 {
		t.Fatalf("the subject got %d pseudonyms", len(pseudonyms))
	}
	version, _, _, err := nodes[0].RawRow(ctx, shared)
	if err != nil {
		t.Fatal(err)
	}
	if version != int64(puts) {
		t.Fatalf("record version %d after %d Puts: an update was lost", version, puts)
	}
	final, err := nodes[1].Resolve(ctx, shared)
	if err != nil {
		t.Fatal(err)
	}
	finalTok, err := nodes[1].Tokenize(ctx, "acme", vault.KindEmail, final.Email)
	if err != nil {
		t.Fatal(err)
	}
	indexed := 0
	for _, tok := range tokens {
		ref, err := nodes[0].Lookup(ctx, "acme", "casino-1", tok)
		switch {
		case tok == finalTok && (err != nil || ref != shared):
			t.Errorf("the last record's token: %v, %v", ref, err)
		case tok != finalTok && !errors.Is(err, vault.ErrNotFound):
			t.Errorf("a replaced record's token still resolves: %v, %v", ref, err)
		case err == nil:
			indexed++
		}
	}
	var rows int
	if err := admin(t).QueryRow(ctx, `SELECT count(*) FROM `+schema+`.tokens WHERE user_id = 'shared'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if indexed != 1 || rows != 1 {
		t.Fatalf("index holds %d rows (%d resolving) for the subject, want 1", rows, indexed)
	}
}

func TestNodesStartingAtOnceMigrateOnce(t *testing.T) {
	schema, kp := newSchema(t), newKey(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := postgres.Open(ctx, dsn(), kp, postgres.Options{Schema: schema})
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var n, v int
	if err := admin(t).QueryRow(ctx, `SELECT count(*), max(version) FROM `+schema+`.schema_version`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != 1 || v != 1 {
		t.Fatalf("schema_version has %d rows, max %d; want one row, version 1", n, v)
	}
}

func TestANewerSchemaIsRefused(t *testing.T) {
	s, schema := newStore(t)
	s.Close()
	if _, err := admin(t).Exec(ctx, `INSERT INTO `+schema+`.schema_version (version) VALUES (99)`); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Open(ctx, dsn(), newKey(t), postgres.Options{Schema: schema}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func TestAWrongKeyFailsWithErrCorrupt(t *testing.T) {
	s, schema := newStore(t)
	mustPut(t, s, acmeAlice, alice)
	wrong := newKey(t)
	if _, err := postgres.Open(ctx, dsn(), wrong, postgres.Options{Schema: schema}); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Open with the wrong key: %v, want ErrCorrupt", err)
	}
	// Without the key check, the records themselves refuse to open.
	if _, err := admin(t).Exec(ctx, `DELETE FROM `+schema+`.key_checks`); err != nil {
		t.Fatal(err)
	}
	w := mustOpen(t, wrong, postgres.Options{Schema: schema})
	if rec, err := w.Resolve(ctx, acmeAlice); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Resolve with the wrong key = %+v, %v; want ErrCorrupt", rec, err)
	}
	if _, err := w.Put(ctx, acmeAlice, alice); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Put over a record sealed with another key: %v, want ErrCorrupt", err)
	}
}

func TestAMissingDataKeyIsCorruptNotAbsent(t *testing.T) {
	s, schema := newStore(t)
	mustPut(t, s, acmeAlice, alice)
	// Deleting the key row alone is what a botched manual erasure would
	// do: the record must not read as "no such subject" and be re-created.
	c := admin(t)
	if _, err := c.Exec(ctx, `ALTER TABLE `+schema+`.data_keys DISABLE TRIGGER ALL`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `DELETE FROM `+schema+`.data_keys`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(ctx, acmeAlice); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Resolve = %v, want ErrCorrupt", err)
	}
}

func TestAnUnreachableServerIsUnavailableAndTheErrorHoldsNoPII(t *testing.T) {
	requireServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if _, err := postgres.Open(ctx, "postgres://postgres@"+closed+"/test?sslmode=disable&connect_timeout=2", newKey(t), postgres.Options{}); !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("Open of a closed port: %v, want ErrUnavailable", err)
	}

	p, viaProxy := startProxy(t)
	node, err := postgres.Open(ctx, viaProxy, newKey(t), postgres.Options{Schema: newSchema(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	sub := mustPut(t, node, canaryRef, canary)
	if _, err := node.Resolve(ctx, canaryRef); err != nil {
		t.Fatalf("Resolve through the proxy: %v", err)
	}
	p.cut()
	for name, call := range map[string]func() error{
		"resolve": func() error { _, err := node.Resolve(ctx, canaryRef); return err },
		"lookup": func() error {
			_, err := node.Lookup(ctx, "acme", canaryRef.Brand, sub.Tokens[vault.KindEmail])
			return err
		},
		"put":   func() error { _, err := node.Put(ctx, canaryRef, canary); return err },
		"erase": func() error { return node.Erase(ctx, canaryRef) },
		"shred": func() error { return node.Shred(ctx) },
	} {
		err := call()
		if !errors.Is(err, vault.ErrUnavailable) {
			t.Errorf("%s with the server gone: %v, want ErrUnavailable", name, err)
			continue
		}
		for _, n := range clearNeedles() {
			if strings.Contains(err.Error(), string(n)) {
				t.Errorf("%s: error %q holds PII", name, err)
			}
		}
	}
}

func TestABadSchemaNameIsRefused(t *testing.T) {
	for _, name := range []string{"Vault", "1vault", "vault; DROP TABLE x", `va"ult`, strings.Repeat("v", 64)} {
		if _, err := postgres.Open(ctx, dsn(), newKey(t), postgres.Options{Schema: name}); err == nil || errors.Is(err, vault.ErrUnavailable) {
			t.Errorf("schema %q: %v, want a configuration error", name, err)
		}
	}
}

// A generic plan is made before the planner knows how selective a token
// is. It must still reach the token through the primary key, not scan a
// whole brand through the by-subject index.
func TestLookupsGenericPlanUsesTheTokenIndex(t *testing.T) {
	s, schema := newStore(t)
	for i := range 50 {
		mustPut(t, s, vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("u-", i)},
			vault.Record{Email: fmt.Sprintf("player%d@example.com", i)})
	}
	c := admin(t)
	for _, q := range []string{
		`SET plan_cache_mode = force_generic_plan`,
		`PREPARE lookup(text, text, text) AS SELECT user_id FROM ` + schema + `.tokens WHERE tenant = $1 AND brand = $2 AND token = $3 LIMIT 2`,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := c.Query(ctx, `EXPLAIN EXECUTE lookup('acme', 'casino-1', 'tok_email_v1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')`, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "tokens_pkey") || !strings.Contains(text, "token = $3") || strings.Contains(text, "Filter") {
		t.Fatalf("Lookup's generic plan does not seek the token:\n%s", text)
	}
}

// A Put and an Erase of one subject at once queue on the subject's row:
// neither fails with a deadlock (which PostgreSQL breaks after a second).
// The slow key provider holds the Put inside its transaction long enough
// for the Erase to arrive.
func TestPutAndEraseOfOneSubjectAtOnceDoNotDeadlock(t *testing.T) {
	kp := newVersionedKeys(t)
	kp.onUnwrap = func([]byte) { time.Sleep(3 * time.Millisecond) }
	schema := newSchema(t)
	s := mustOpen(t, kp, postgres.Options{Schema: schema})
	other := mustOpen(t, kp, postgres.Options{Schema: schema})
	for i := range 10 {
		ref := rewrapRef(i)
		mustPut(t, s, ref, rewrapRecord(i, 0))
		var wg sync.WaitGroup
		var putErr, eraseErr error
		wg.Go(func() { _, putErr = s.Put(ctx, ref, rewrapRecord(i, 1)) })
		wg.Go(func() { time.Sleep(time.Millisecond); eraseErr = other.Erase(ctx, ref) })
		wg.Wait()
		if putErr != nil || eraseErr != nil && !errors.Is(eraseErr, vault.ErrNotFound) {
			t.Fatalf("Put: %v; Erase: %v", putErr, eraseErr)
		}
	}
}
