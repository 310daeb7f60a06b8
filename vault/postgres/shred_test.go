package postgres_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/postgres"
)

var pageinspect struct {
	once sync.Once
	err  error
}

// requirePageinspect installs the pageinspect extension, which reads raw
// pages of a relation through the server: what an attacker with the
// database files would read. It needs a superuser and postgresql-contrib.
func requirePageinspect(t *testing.T, c *pgx.Conn) {
	t.Helper()
	pageinspect.once.Do(func() {
		for range 3 { // CREATE EXTENSION IF NOT EXISTS races another session's
			if _, pageinspect.err = c.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pageinspect`); pageinspect.err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if pageinspect.err != nil {
		skipOrFail(t, "the pageinspect extension is not available on %s (%v): the erasure test cannot read raw pages; "+
			"install PostgreSQL's contrib modules (Debian: postgresql-contrib) and connect as a superuser", where(), pageinspect.err)
	}
}

// relation is one relation with storage that belongs to the store: a
// table, an index, a TOAST table or a TOAST index.
type relation struct {
	name string
	heap bool
}

func storeRelations(t *testing.T, c *pgx.Conn, schema string) []relation {
	t.Helper()
	rows, err := c.Query(ctx, `
		WITH own AS (SELECT oid, reltoastrelid FROM pg_class WHERE relnamespace = $1::regnamespace)
		SELECT c.oid::regclass::text, c.relkind IN ('r', 't', 'm')
		FROM pg_class c
		WHERE c.relkind IN ('r', 'i', 't', 'm') AND (
			c.oid IN (SELECT oid FROM own) OR
			c.oid IN (SELECT reltoastrelid FROM own) OR
			c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT reltoastrelid FROM own)))
		ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	rels, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (relation, error) {
		var rel relation
		return rel, r.Scan(&rel.name, &rel.heap)
	})
	if err != nil {
		t.Fatal(err)
	}
	var toast int
	for _, r := range rels {
		if strings.HasPrefix(r.name, "pg_toast.") {
			toast++
		}
	}
	if len(rels) < 8 || toast == 0 {
		t.Fatalf("found %d relations (%d TOAST) in the store: %v", len(rels), toast, rels)
	}
	return rels
}

// pageImage is everything the server's pages of the store hold.
type pageImage struct {
	pages map[string][]byte // relation → its raw main-fork blocks, concatenated
	items map[string][]byte // heap relation → every line pointer's tuple data, live or dead
}

func readPages(t *testing.T, c *pgx.Conn, schema string) pageImage {
	t.Helper()
	img := pageImage{pages: map[string][]byte{}, items: map[string][]byte{}}
	for _, rel := range storeRelations(t, c, schema) {
		rows, err := c.Query(ctx, `SELECT get_raw_page($1::text, 'main', blk)
			FROM generate_series(0, pg_relation_size($1::regclass) / current_setting('block_size')::int - 1) blk`, rel.name)
		if err != nil {
			t.Fatal(err)
		}
		pages, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			t.Fatalf("%s: %v", rel.name, err)
		}
		img.pages[rel.name] = bytes.Join(pages, nil)
		if !rel.heap {
			continue
		}
		rows, err = c.Query(ctx, `SELECT coalesce(t_data, '') FROM generate_series(0, pg_relation_size($1::regclass) / current_setting('block_size')::int - 1) blk,
			heap_page_items(get_raw_page($1::text, 'main', blk))`, rel.name)
		if err != nil {
			t.Fatal(err)
		}
		items, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			t.Fatalf("%s: %v", rel.name, err)
		}
		img.items[rel.name] = bytes.Join(items, []byte{0})
	}
	return img
}

// holding names the relations whose pages or heap tuples hold needle.
func (img pageImage) holding(needle []byte) []string {
	var where []string
	for name, b := range img.pages {
		if bytes.Contains(b, needle) {
			where = append(where, name)
		}
	}
	for name, b := range img.items {
		if bytes.Contains(b, needle) {
			where = append(where, name+" (tuple)")
		}
	}
	return where
}

// tableText is every table of the store rendered as text by the server.
func tableText(t *testing.T, c *pgx.Conn, schema string) string {
	t.Helper()
	rows, err := c.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = $1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, table := range tables {
		rows, err := c.Query(ctx, `SELECT t::text FROM `+schema+`.`+table+` t`)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		sb.WriteString(strings.Join(lines, "\n"))
	}
	return sb.String()
}

var canary = vault.Record{
	Email: "Canary-4711@Example.com", Phone: "+1 555 010 4711", FirstName: "Canary", LastName: "Forty-Seven",
}

// clearNeedles are the canary's addresses in every form the store might
// have written them: as given, normalised, digits only.
func clearNeedles() [][]byte {
	return [][]byte{
		[]byte("canary-4711@example.com"), []byte("Canary-4711@Example.com"), []byte("canary-4711"),
		[]byte("+15550104711"), []byte("5550104711"), []byte("Forty-Seven"),
	}
}

// bigCanary is the canary with enough devices that its sealed record is
// stored out of line, in the TOAST table.
func bigCanary() vault.Record {
	rec := canary
	for i := range 6 {
		rec.PushTokens = append(rec.PushTokens, vault.PushToken{
			Token: fmt.Sprintf("device-%d-%s", i, strings.Repeat("x", 1000)), DeviceType: "android",
		})
	}
	return rec
}

// windows are 32-byte slices of b at its start, middle and end: a sealed
// record in TOAST is cut into chunks, so the whole of it never appears in
// one piece.
func windows(b []byte) [][]byte {
	const n = 32
	return [][]byte{b[1 : 1+n], b[len(b)/2 : len(b)/2+n], b[len(b)-n:]}
}

var canaryRef = vault.Ref{Tenant: "acme", Brand: "casino-1", User: "u-4711"}

func TestTheDatabaseNeverHoldsTheEmailInClear(t *testing.T) {
	s, schema := newStore(t)
	c := admin(t)
	requirePageinspect(t, c)
	for i := range 20 {
		mustPut(t, s, vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("u-", i)},
			vault.Record{Email: fmt.Sprintf("player%d@example.com", i), FirstName: "Other"})
	}
	mustPut(t, s, canaryRef, canary)
	mustPut(t, s, canaryRef, bigCanary()) // a second version, out of line
	if rec, err := s.Resolve(ctx, canaryRef); err != nil || rec.Email != "canary-4711@example.com" {
		t.Fatalf("test premise: Resolve = %q, %v", rec.Email, err)
	}
	img := readPages(t, c, schema)
	text := tableText(t, c, schema)
	for _, n := range clearNeedles() {
		if where := img.holding(n); len(where) > 0 {
			t.Errorf("the pages of %v hold %q in clear", where, n)
		}
		if bytes.Contains([]byte(text), n) {
			t.Errorf("a table of the store holds %q in clear", n)
		}
	}
}

func TestEraseThenShredLeavesNoTraceInTheDatabasePages(t *testing.T) {
	s, schema := newStore(t)
	c := admin(t)
	requirePageinspect(t, c)
	for i := range 30 {
		mustPut(t, s, vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("other-", i)},
			vault.Record{Email: fmt.Sprintf("other%d@example.com", i), FirstName: "Other"})
	}

	// Three versions of the canary: the first inline, the others in
	// TOAST. Every one leaves its bytes in dead tuples.
	type version struct {
		wrapped []byte
		sealed  [][]byte // windows
		tokens  []string
	}
	var versions []version
	for _, rec := range []vault.Record{canary, bigCanary(), bigCanary()} {
		sub := mustPut(t, s, canaryRef, rec)
		_, wrapped, sealed, err := s.RawRow(ctx, canaryRef)
		if err != nil {
			t.Fatal(err)
		}
		v := version{wrapped: wrapped[1:], sealed: windows(sealed)}
		for _, tok := range sub.Tokens {
			v.tokens = append(v.tokens, tok)
		}
		versions = append(versions, v)
	}
	var oldFiles []string
	for _, table := range []string{"data_keys", "subjects", "tokens"} {
		var path string
		if err := c.QueryRow(ctx, `SELECT pg_relation_filepath($1::regclass)`, schema+"."+table).Scan(&path); err != nil {
			t.Fatal(err)
		}
		oldFiles = append(oldFiles, path)
	}

	if err := s.Erase(ctx, canaryRef); err != nil {
		t.Fatal(err)
	}
	if n, oldest, err := s.Pending(ctx); err != nil || n != 1 || time.Since(oldest) > time.Minute {
		t.Fatalf("Pending = %d, %v, %v; want the one erasure", n, oldest, err)
	}

	// The premise: after the DELETE, dead tuples still hold every
	// version's wrapped key, sealed record and tokens. Without it this
	// test would pass on a store that never wrote anything.
	before := readPages(t, c, schema)
	for i, v := range versions {
		if where := before.holding(v.wrapped); !contains(where, schema+".data_keys (tuple)") {
			t.Fatalf("test premise: heap_page_items does not show the dead v%d data_keys tuple (found in %v)", i+1, where)
		}
		found := false
		for _, w := range v.sealed {
			found = found || len(before.holding(w)) > 0
		}
		if !found {
			t.Fatalf("test premise: the v%d sealed record is not in the pages after DELETE", i+1)
		}
		for _, tok := range v.tokens {
			if len(before.holding([]byte(tok))) == 0 {
				t.Fatalf("test premise: a v%d token is not in the pages after DELETE", i+1)
			}
		}
	}
	toasted := false
	for _, w := range versions[2].sealed {
		for _, rel := range before.holding(w) {
			toasted = toasted || strings.HasPrefix(rel, "pg_toast.")
		}
	}
	if !toasted {
		t.Fatal("test premise: the big record is not in a TOAST table")
	}

	mustShred(t, s)

	after := readPages(t, c, schema)
	for i, v := range versions {
		if where := after.holding(v.wrapped); len(where) > 0 {
			t.Errorf("after Shred, %v still hold the v%d wrapped data key", where, i+1)
		}
		for _, w := range v.sealed {
			if where := after.holding(w); len(where) > 0 {
				t.Errorf("after Shred, %v still hold the v%d sealed record", where, i+1)
			}
		}
		for _, tok := range v.tokens {
			if where := after.holding([]byte(tok)); len(where) > 0 {
				t.Errorf("after Shred, %v still hold a v%d token", where, i+1)
			}
		}
	}
	for _, n := range clearNeedles() {
		if where := after.holding(n); len(where) > 0 {
			t.Errorf("after Shred, %v hold %q in clear", where, n)
		}
	}
	// The rewritten tables' old files are truncated at commit (and
	// unlinked at the next checkpoint): nothing of them is left to read.
	for _, path := range oldFiles {
		var size *int64
		if err := c.QueryRow(ctx, `SELECT (pg_stat_file($1, true)).size`, path).Scan(&size); err != nil {
			t.Fatal(err)
		}
		if size != nil && *size != 0 {
			t.Errorf("the old file %s of a rewritten table still holds %d bytes", path, *size)
		}
	}

	if _, err := s.Resolve(ctx, canaryRef); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Resolve after erase: %v, want ErrNotFound", err)
	}
	for _, tok := range versions[2].tokens {
		if _, err := s.Lookup(ctx, "acme", canaryRef.Brand, tok); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Lookup after erase: %v, want ErrNotFound", err)
		}
	}
	if n, _, err := s.Pending(ctx); err != nil || n != 0 {
		t.Errorf("Pending after Shred = %d, %v; want 0", n, err)
	}
	for i := range 30 {
		ref := vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("other-", i)}
		if rec, err := s.Resolve(ctx, ref); err != nil || rec.Email != fmt.Sprintf("other%d@example.com", i) {
			t.Fatalf("another subject after Shred: %q, %v", rec.Email, err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestShredIsDeferredWhileAnOlderSnapshotCanSeeTheErasedRow(t *testing.T) {
	s, schema := newStore(t)
	c := admin(t)
	requirePageinspect(t, c)
	mustPut(t, s, canaryRef, canary)
	_, wrapped, _, err := s.RawRow(ctx, canaryRef)
	if err != nil {
		t.Fatal(err)
	}

	// A report running on another connection, in a snapshot taken
	// before the erase (of any table: the horizon is database-wide): it
	// could still read the row, so VACUUM FULL must copy it into the new
	// file.
	reader := admin(t)
	tx, err := reader.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}

	if err := s.Erase(ctx, canaryRef); err != nil {
		t.Fatal(err)
	}
	err = s.Shred(ctx)
	if !errors.Is(err, postgres.ErrShredDeferred) || !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("Shred with an older snapshot open: %v, want ErrShredDeferred", err)
	}
	if where := readPages(t, c, schema).holding(wrapped[1:]); len(where) == 0 {
		t.Fatal("test premise: the rewrite dropped a row an open snapshot could see")
	}
	if n, _, _ := s.Pending(ctx); n != 1 {
		t.Fatalf("Pending = %d after a deferred Shred, want 1", n)
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	mustShred(t, s)
	if where := readPages(t, c, schema).holding(wrapped[1:]); len(where) > 0 {
		t.Fatalf("after the reader ended and Shred ran, %v still hold the wrapped key", where)
	}
}

func TestShredOnEraseShredsBeforeEraseReturns(t *testing.T) {
	schema := newSchema(t)
	s := mustOpen(t, newKey(t), postgres.Options{Schema: schema, ShredOnErase: true})
	c := admin(t)
	requirePageinspect(t, c)
	for i := range 10 {
		mustPut(t, s, vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("other-", i)}, vault.Record{FirstName: "Other"})
	}
	sub := mustPut(t, s, canaryRef, canary)
	_, wrapped, sealed, err := s.RawRow(ctx, canaryRef)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Erase(ctx, canaryRef); err != nil {
		t.Fatal(err)
	}
	t.Logf("Erase with ShredOnErase took %v", time.Since(start))
	if n, _, err := s.Pending(ctx); err != nil || n != 0 {
		// Another test package's long transaction held the horizon.
		t.Logf("Pending = %d, %v: shred deferred; running it again", n, err)
		mustShred(t, s)
	}
	img := readPages(t, c, schema)
	for what, b := range map[string][]byte{
		"wrapped key": wrapped[1:], "sealed record": sealed[1:], "email token": []byte(sub.Tokens[vault.KindEmail]),
	} {
		if where := img.holding(b); len(where) > 0 {
			t.Errorf("%v still hold the %s", where, what)
		}
	}
}

func TestShredWithNothingPendingDoesNotRewrite(t *testing.T) {
	s, schema := newStore(t)
	c := admin(t)
	mustPut(t, s, canaryRef, canary)
	file := func() string {
		var path string
		if err := c.QueryRow(ctx, `SELECT pg_relation_filepath($1::regclass)`, schema+".subjects").Scan(&path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	before := file()
	if err := s.Shred(ctx); err != nil {
		t.Fatal(err)
	}
	if after := file(); after != before {
		t.Fatalf("Shred with no erasure pending rewrote subjects: %s → %s", before, after)
	}
}
