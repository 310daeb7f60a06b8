package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the embedded store's driver, to read its file behind the gateway's back

	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/internal/testpg"
	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// DESIGN §5 and invariant 7: DELETE /v1/subjects/{brand}/{user} destroys
// the subject's data key and its token index entries in the record store,
// and cancels its queued messages; afterwards the record cannot be
// recovered from the live store, its tokens resolve nothing, and the audit
// log still verifies. Each subtest runs a real gateway on one record store,
// erases a subject that has two record versions and messages waiting, and
// then reads the store raw, as someone holding its files (or Vault's root
// token) would, for any trace of the subject.
func TestErasureLeavesNoTraceInAnyRecordStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) rawStore
	}{
		{"embedded", openEmbeddedRaw},
		{"postgres", openPostgresRaw},
		{"vault kv", openKVRaw},
	} {
		t.Run(tc.name, func(t *testing.T) { testErasure(t, tc.open(t)) })
	}
}

// rawStore is one record store as the erasure test sees it: how the
// gateway's config names it, and how to read it without going through the
// gateway.
type rawStore interface {
	// configure points the gateway's config at the store.
	configure(c *gateway.Config)
	// sealed reports whether the store seals records: then no canary is
	// in its raw image even before the erasure (on Vault KV the record is
	// JSON inside Vault's barrier).
	sealed() bool
	// row reads what the subject's current record version put in the
	// store and only its erasure may remove (its wrapped data key, its
	// sealed record, its paths), labelled with version.
	row(t *testing.T, r *rig, ref vault.Ref, version string) []needle
	// image reads everything the store holds.
	image(t *testing.T, r *rig) rawImage
	// settle checks what only this store can tell about a finished
	// erasure, after the DELETE returned. It returns why the raw store
	// cannot be scanned yet, if something outside the test keeps the
	// store from finishing ("" otherwise).
	settle(t *testing.T, r *rig, ref vault.Ref, tokens []string) (blocked string)
}

// needle is a byte string the erased subject left somewhere.
type needle struct {
	what string
	b    []byte
}

// rawImage maps a place in a store (a file, a relation, a secret version)
// to what it holds.
type rawImage map[string][]byte

// holding names the places whose name or content holds n, ignoring ASCII
// case (emails are normalised to lower case; for binary needles a false
// hit is as unlikely as any 32-byte collision).
func (img rawImage) holding(n needle) []string {
	var where []string
	for place, b := range img {
		if containsFold([]byte(place), n.b) || containsFold(b, n.b) {
			where = append(where, place)
		}
	}
	slices.Sort(where)
	return where
}

// containsFold reports whether b holds n, ignoring ASCII case only:
// bytes.ToLower would rewrite binary data's invalid UTF-8 into U+FFFD,
// differently in a needle cut from the middle of a key than in the page
// that holds the key.
func containsFold(b, n []byte) bool {
	return bytes.Contains(asciiLower(b), asciiLower(n))
}

func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// canaries are obviously fake PII, fresh per run, so that a hit can only
// come from this run's subject.
type canaries struct {
	oldEmail, email, phone, first, last string
}

func newCanaries() canaries {
	id := func() string {
		var b [6]byte
		rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}
	return canaries{
		oldEmail: "erase-" + id() + "@example.com",
		email:    "erase-" + id() + "@example.com",
		phone:    fmt.Sprintf("+1555%07d", mathrand.IntN(10_000_000)),
		first:    "Canary" + id(),
		last:     "Shred" + id(),
	}
}

// record is the subject's record with the given address.
func (c canaries) record(email string) vault.Record {
	return vault.Record{Email: email, Phone: c.phone, FirstName: c.first, LastName: c.last,
		Country: "MT", Timezone: "Europe/Malta", Consents: map[string]bool{"marketing_email": true}}
}

// needles are the canaries in every form something might have written
// them: as given, the local parts, the number without its plus.
func (c canaries) needles() []needle {
	var ns []needle
	for _, s := range []string{c.oldEmail, c.email, c.phone, c.first, c.last,
		strings.TrimSuffix(c.oldEmail, "@example.com"), strings.TrimSuffix(c.email, "@example.com"),
		strings.TrimPrefix(c.phone, "+")} {
		ns = append(ns, needle{"canary " + s, []byte(s)})
	}
	return ns
}

// windows are 32-byte slices of b at its start, middle and end, each a
// trace on its own: a record cut into chunks (TOAST, overflow pages) never
// appears whole, and a leftover piece of it is a trace too.
func windows(what string, b []byte) []needle {
	const n = 32
	if len(b) <= n {
		return []needle{{what, b}}
	}
	return []needle{
		{what + " (start)", b[:n]},
		{what + " (middle)", b[len(b)/2-n/2 : len(b)/2+n/2]},
		{what + " (end)", b[len(b)-n:]},
	}
}

func testErasure(t *testing.T, s rawStore) {
	r := newRig(t, devenv.Options{Gateway: s.configure})
	ctx := context.Background()
	c := newCanaries()
	const erased, survivor = "u-erased", "u-survivor"
	ref := vault.Ref{Tenant: devenv.Tenant, Brand: devenv.Brand, User: erased}
	survivorEmail := "survivor-" + strings.TrimPrefix(c.email, "erase-")

	// Two versions of the subject, with different addresses: the erasure
	// must take every version's data key and every token either indexed.
	v1 := r.put(erased, c.record(c.oldEmail))
	traces := s.row(t, r, ref, "v1")
	sub := r.put(erased, c.record(c.email))
	traces = append(traces, s.row(t, r, ref, "v2")...)
	kept := r.put(survivor, vault.Record{Email: survivorEmail, FirstName: "Survivor", Country: "MT", Timezone: "Europe/Malta"})
	if sub.Pseudonym != v1.Pseudonym || sub.Tokens[vault.KindEmail] == v1.Tokens[vault.KindEmail] {
		t.Fatalf("test premise: v2 keeps the pseudonym (%v) and has a new email token (%v)",
			sub.Pseudonym == v1.Pseudonym, sub.Tokens[vault.KindEmail] != v1.Tokens[vault.KindEmail])
	}
	tokens := []string{v1.Tokens[vault.KindEmail], sub.Tokens[vault.KindEmail], sub.Tokens[vault.KindPhone]}
	for _, tok := range tokens {
		if tok == "" {
			t.Fatalf("test premise: a token is missing: %v %v", v1.Tokens, sub.Tokens)
		}
	}
	current := []needle{{"v2 email token", []byte(tokens[1])}, {"v2 phone token", []byte(tokens[2])}}

	// The premise of every scan below: before the erasure the raw store
	// holds each trace, so a scan that finds nothing afterwards found
	// nothing because it is gone, not because it never looked.
	before := s.image(t, r)
	for _, n := range append(slices.Clone(traces), current...) {
		if len(before.holding(n)) == 0 {
			t.Fatalf("test premise: the raw store does not hold the %s before the erasure", n.what)
		}
	}
	for _, n := range c.needles() {
		if where := before.holding(n); s.sealed() && len(where) > 0 {
			t.Errorf("%v hold the %s in clear, although the store seals records", where, n.what)
		}
	}
	if !s.sealed() && len(before.holding(needle{"email", []byte(c.email)})) == 0 {
		t.Fatal("test premise: the store's raw image does not hold the plaintext record")
	}

	// One delivery before the erasure, so the gateway did handle the
	// canaries (logs, audit, callbacks had the chance to leak them).
	accepted(t, r.send(message("m-before", erased)))
	r.drain()
	if st, reason := r.callback("m-before"); st != gateway.StatusSent {
		t.Fatalf("test premise: m-before = %s %s, want sent", st, reason)
	}
	if n := mailsTo(t, r, c.email); n != 1 {
		t.Fatalf("test premise: %d mails to the subject before the erasure, want 1", n)
	}

	// Queued and not yet sendable: the rig's workers only run when the
	// test drains, and m-later waits for an hour besides.
	byToken := message("m-token", "")
	byToken.To = envelope.Recipient{Token: sub.Tokens[vault.KindEmail]}
	later := message("m-later", erased)
	at := time.Now().Add(time.Hour)
	later.NotBefore = &at
	survivorByToken := message("m-survivor-token", "")
	survivorByToken.To = envelope.Recipient{Token: kept.Tokens[vault.KindEmail]}
	accepted(t, r.send(message("m-subject", erased), byToken, later, message("m-survivor", survivor), survivorByToken))

	if err := r.ad.Erase(ctx, devenv.Brand, erased); err != nil {
		t.Fatalf("DELETE the subject: %v", err)
	}
	// The admin API never returns a record, so a second DELETE is how it
	// says the subject is gone: the store has nothing to erase.
	if err := r.ad.Erase(ctx, devenv.Brand, erased); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("second DELETE: %v, want 404 not_found", err)
	}

	// Messages by subject end at once, without a send attempt.
	r.env.Gateway.PostCallbacks(ctx, 50)
	for _, id := range []string{"m-subject", "m-later"} {
		if st, reason := r.callback(id); st != gateway.StatusUnknownRecipient || reason != "erased" {
			t.Errorf("%s right after the erasure: %q %q, want unknown_recipient erased", id, st, reason)
		}
	}
	if st, _ := r.callback("m-token"); st != "" {
		t.Errorf("m-token reported %q before any send attempt; a message by token is only known at send time", st)
	}

	// The store resolves nothing of the subject, and still the survivor.
	store := r.env.Gateway.Store()
	if _, err := store.Resolve(ctx, ref); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Resolve of the erased subject: %v, want not found", err)
	}
	for _, tok := range tokens {
		if got, err := store.Lookup(ctx, devenv.Tenant, devenv.Brand, tok); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Lookup of an erased token: %v %v, want not found", got, err)
		}
	}
	survivorRef := vault.Ref{Tenant: devenv.Tenant, Brand: devenv.Brand, User: survivor}
	if rec, err := store.Resolve(ctx, survivorRef); err != nil || rec.Email != survivorEmail {
		t.Errorf("Resolve of the survivor: %q, %v", rec.Email, err)
	}
	if got, err := store.Lookup(ctx, devenv.Tenant, devenv.Brand, kept.Tokens[vault.KindEmail]); err != nil || got != survivorRef {
		t.Errorf("Lookup of the survivor's token: %v, %v", got, err)
	}

	// New messages for the erased subject are taken (the door cannot
	// know) and end unknown_recipient at send time, like the one by token
	// queued before; the survivor gets both of its messages.
	newByToken := message("m-token-new", "")
	newByToken.To = byToken.To
	accepted(t, r.send(newByToken, message("m-subject-new", erased)))
	r.drain()
	for _, id := range []string{"m-token", "m-token-new", "m-subject-new"} {
		if st, reason := r.callback(id); st != gateway.StatusUnknownRecipient {
			t.Errorf("%s after the erasure: %q %q, want unknown_recipient", id, st, reason)
		}
	}
	for _, id := range []string{"m-survivor", "m-survivor-token"} {
		if st, reason := r.callback(id); st != gateway.StatusSent {
			t.Errorf("%s: %q %q, want sent", id, st, reason)
		}
	}
	if n := mailsTo(t, r, c.email); n != 1 {
		t.Errorf("%d mails to the erased subject, want only the one sent before the erasure", n)
	}
	if n := mailsTo(t, r, survivorEmail); n != 2 {
		t.Errorf("%d mails to the survivor, want 2", n)
	}
	if n := r.env.Capture.Count(); n != 3 {
		t.Errorf("the SMTP capture holds %d mails, want 3", n)
	}

	blocked := s.settle(t, r, ref, tokens)
	gone := append(append(slices.Clone(traces), c.needles()...),
		needle{"v1 email token", []byte(tokens[0])}, current[0], current[1])
	scan := func(when string) {
		if blocked != "" {
			return
		}
		img := s.image(t, r)
		for _, n := range gone {
			if where := img.holding(n); len(where) > 0 {
				t.Errorf("%s, %v still hold the %s", when, where, n.what)
			}
		}
	}
	scan("after the erasure")

	witnessed, _ := r.env.Core.Witness().Latest()
	if witnessed == nil {
		t.Fatal("the core holds no checkpoint of the gateway's log")
	}
	origin := r.env.Gateway.AuditOrigin()
	r.stop()
	scan("after the gateway closed")
	checkAuditAfterErasure(t, r, origin, witnessed, sub.Pseudonym, erased)

	// Nothing the gateway wrote outside the vault names the subject: its
	// logs, the callbacks, the queue, every file of the audit log.
	for place, b := range gatewayOutput(t, r) {
		for _, n := range c.needles() {
			if containsFold(b, n.b) {
				t.Errorf("%s holds the %s", place, n.what)
			}
		}
		// The queue held requests addressed by the erased tokens; once
		// they ended, the file keeps no copy of them, not even in free
		// pages (secure_delete).
		if strings.HasPrefix(filepath.Base(place), "queue.db") {
			for i, tok := range tokens {
				if bytes.Contains(b, []byte(tok)) {
					t.Errorf("%s still holds erased token %d", place, i)
				}
			}
		}
	}
	if blocked != "" {
		// Everything else was checked; the raw scan was not.
		t.Skipf("the raw store was not scanned: %s", blocked)
	}
}

// mailsTo counts the captured mails addressed to addr.
func mailsTo(t *testing.T, r *rig, addr string) int {
	t.Helper()
	n := 0
	for _, m := range r.mails() {
		if strings.Contains(strings.ToLower(m.Header.Get("To")), strings.ToLower(addr)) {
			n++
		}
	}
	return n
}

// checkAuditAfterErasure verifies the closed gateway's audit log against
// its public key and the core's witness copy, and checks that it holds one
// erasure record, naming the subject by pseudonym only. (gatewayOutput
// scans the log's files for the canaries.)
func checkAuditAfterErasure(t *testing.T, r *rig, origin string, witnessed []byte, pseudonym, user string) {
	t.Helper()
	pub, err := envelope.LoadVerifyingKey(r.in.GatewaySigningPub)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(r.in.AuditLog, pub.Public, origin, witnessed)
	if err != nil {
		t.Fatalf("the audit log does not verify after the erasure: %v", err)
	}
	if rep.Unsigned != 0 {
		t.Errorf("%d audit entries are not covered by a signed checkpoint after Close", rep.Unsigned)
	}
	if rep.ByKind[audit.KindErasure] != 1 {
		t.Errorf("%d erasure records, want 1 (all: %v)", rep.ByKind[audit.KindErasure], rep.ByKind)
	}
	rd, err := audit.OpenReader(r.in.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for rec, err := range rd.Records() {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Kind != audit.KindErasure {
			continue
		}
		found = true
		var d audit.ErasureData
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			t.Fatal(err)
		}
		if rec.Pseudonym != pseudonym || rec.Tenant != devenv.Tenant || d.Brand != devenv.Brand {
			t.Errorf("erasure record names %q/%q/%q, want the subject's pseudonym, tenant and brand", rec.Pseudonym, rec.Tenant, d.Brand)
		}
		b, err := rec.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(user)) {
			t.Errorf("the erasure record names the user id; records name subjects by pseudonym only: %s", b)
		}
	}
	if !found {
		t.Error("no erasure record in the audit log")
	}
}

// gatewayOutput is everything the gateway wrote that is not its vault:
// its log lines, the callbacks the core received, and every file of its
// data directory (the queue, the audit log; the embedded vault too, whose
// records are sealed).
func gatewayOutput(t *testing.T, r *rig) map[string][]byte {
	t.Helper()
	out := map[string][]byte{"the gateway's logs": []byte(r.logs.String())}
	cb, err := os.ReadFile(r.in.CallbacksFile)
	if err != nil || len(cb) == 0 {
		t.Fatalf("no callbacks recorded: %v", err)
	}
	out["the callbacks"] = cb
	err = filepath.Walk(filepath.Join(r.dir, "data"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// embeddedRaw is the default store: data/vault.db, a SQLite file.
type embeddedRaw struct{}

func openEmbeddedRaw(*testing.T) rawStore { return embeddedRaw{} }

func (embeddedRaw) configure(*gateway.Config) {}
func (embeddedRaw) sealed() bool              { return true }

func (embeddedRaw) path(r *rig) string { return filepath.Join(r.dir, "data", "vault.db") }

// row reads the subject's row through a read-only connection of our own,
// closed before the erasure so it holds no snapshot that could keep the
// store from truncating its WAL.
func (e embeddedRaw) row(t *testing.T, r *rig, ref vault.Ref, version string) []needle {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+e.path(r)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var wrapped, sealed []byte
	if err := db.QueryRow(`SELECT wrapped_key, sealed_record FROM subjects WHERE tenant = ? AND brand = ? AND user = ?`,
		ref.Tenant, ref.Brand, ref.User).Scan(&wrapped, &sealed); err != nil {
		t.Fatalf("read the subject's row from the vault file: %v", err)
	}
	return append(windows(version+" wrapped data key", wrapped), windows(version+" sealed record", sealed)...)
}

// image is the bytes of the vault file and its -wal and -shm files.
func (e embeddedRaw) image(t *testing.T, r *rig) rawImage {
	t.Helper()
	paths, err := filepath.Glob(e.path(r) + "*")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no vault file: %v", err)
	}
	img := rawImage{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		img[filepath.Base(p)] = b
	}
	return img
}

func (embeddedRaw) settle(*testing.T, *rig, vault.Ref, []string) string { return "" }

// postgresRaw is the PostgreSQL store in a fresh schema, read page by page
// with the pageinspect extension: what the database files hold, dead
// tuples included.
type postgresRaw struct {
	conn   *pgx.Conn
	schema string
}

func openPostgresRaw(t *testing.T) rawStore {
	dsn := testpg.DSN(t)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := &postgresRaw{conn: conn, schema: fmt.Sprintf("bp_erasure_%d", mathrand.Uint32())}
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+p.schema+" CASCADE")
		conn.Close(context.Background())
	})
	var ok error
	for range 3 { // CREATE EXTENSION IF NOT EXISTS races other sessions'
		if _, ok = conn.Exec(context.Background(), `CREATE EXTENSION IF NOT EXISTS pageinspect`); ok == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ok != nil {
		msg := fmt.Sprintf("the pageinspect extension is not available (%v): raw pages cannot be read; "+
			"install PostgreSQL's contrib modules and connect as a superuser", ok)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Setenv("BP_TEST_ERASURE_PG_DSN", dsn)
	return p
}

func (p *postgresRaw) configure(c *gateway.Config) {
	c.Vault.Postgres = gateway.PostgresVaultConfig{DSNEnv: "BP_TEST_ERASURE_PG_DSN", Schema: p.schema, ShredOnErase: true}
}

func (*postgresRaw) sealed() bool { return true }

func (p *postgresRaw) row(t *testing.T, _ *rig, ref vault.Ref, version string) []needle {
	t.Helper()
	var wrapped, sealed []byte
	if err := p.conn.QueryRow(context.Background(), `SELECT k.wrapped_key, s.sealed_record
		FROM `+p.schema+`.data_keys k JOIN `+p.schema+`.subjects s USING (tenant, brand, user_id)
		WHERE tenant = $1 AND brand = $2 AND user_id = $3`, ref.Tenant, ref.Brand, ref.User).Scan(&wrapped, &sealed); err != nil {
		t.Fatalf("read the subject's row: %v", err)
	}
	return append(windows(version+" wrapped data key", wrapped), windows(version+" sealed record", sealed)...)
}

// image is every block of every relation of the store (tables, indexes,
// TOAST tables and their indexes), and every heap tuple, live or dead.
func (p *postgresRaw) image(t *testing.T, _ *rig) rawImage {
	t.Helper()
	ctx := context.Background()
	rows, err := p.conn.Query(ctx, `
		WITH own AS (SELECT oid, reltoastrelid FROM pg_class WHERE relnamespace = $1::regnamespace)
		SELECT c.oid::regclass::text, c.relkind IN ('r', 't', 'm')
		FROM pg_class c
		WHERE c.relkind IN ('r', 'i', 't', 'm') AND (
			c.oid IN (SELECT oid FROM own) OR
			c.oid IN (SELECT reltoastrelid FROM own) OR
			c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT reltoastrelid FROM own)))`, p.schema)
	if err != nil {
		t.Fatal(err)
	}
	type relation struct {
		name string
		heap bool
	}
	rels, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (relation, error) {
		var rel relation
		return rel, r.Scan(&rel.name, &rel.heap)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) < 8 {
		t.Fatalf("found only %d relations in the store: %v", len(rels), rels)
	}
	img := rawImage{}
	const blocks = `generate_series(0, pg_relation_size($1::regclass) / current_setting('block_size')::int - 1) blk`
	for _, rel := range rels {
		rows, err := p.conn.Query(ctx, `SELECT get_raw_page($1::text, 'main', blk) FROM `+blocks, rel.name)
		if err != nil {
			t.Fatal(err)
		}
		pages, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			t.Fatalf("%s: %v", rel.name, err)
		}
		img[rel.name] = bytes.Join(pages, nil)
		if !rel.heap {
			continue
		}
		rows, err = p.conn.Query(ctx, `SELECT coalesce(t_data, '') FROM `+blocks+`,
			heap_page_items(get_raw_page($1::text, 'main', blk))`, rel.name)
		if err != nil {
			t.Fatal(err)
		}
		items, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			t.Fatalf("%s: %v", rel.name, err)
		}
		img[rel.name+" (tuples)"] = bytes.Join(items, []byte{0})
	}
	return img
}

// settle checks that the shred ran with the erasure (shred_on_erase). A
// transaction elsewhere on the server that predates the erasure defers it,
// rightly, and the store says so in the gateway's log; then the test
// shreds again, through the store, for a while. On a shared server such a
// transaction can last minutes (another package's test): outside CI the
// raw scan is then skipped, loudly, rather than failed.
func (p *postgresRaw) settle(t *testing.T, r *rig, _ vault.Ref, _ []string) string {
	t.Helper()
	ctx := context.Background()
	sh, ok := r.env.Gateway.Store().(interface{ Shred(context.Context) error })
	if !ok {
		t.Fatalf("the gateway's store %T cannot shred", r.env.Gateway.Store())
	}
	pending := func() int {
		var n int
		if err := p.conn.QueryRow(ctx, `SELECT count(*) FROM `+p.schema+`.shred_pending`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := pending()
	if n == 0 {
		return ""
	}
	if !strings.Contains(r.logs.String(), "vault shred after erase incomplete") {
		t.Fatalf("%d erasures wait for the shred, although shred_on_erase is set and no shred was deferred", n)
	}
	var err error
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); {
		if err = sh.Shred(ctx); err == nil {
			if n = pending(); n == 0 {
				return ""
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	// Who holds the horizon back: sessions of this database with an old
	// snapshot or transaction.
	rows, qerr := p.conn.Query(ctx, `SELECT format('pid %s (%s, %s, in a transaction for %s)', pid, application_name, state,
			date_trunc('second', now() - xact_start))
		FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database()
			AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)`)
	var holders []string
	if qerr == nil {
		holders, qerr = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	msg := fmt.Sprintf("the shred stayed deferred for 8s (%v): sessions %v (err %v) hold snapshots older than the erasure",
		err, holders, qerr)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Log(msg)
	return msg
}

// kvRaw is the Vault KV v2 store (with Transit keys) on a dev server, read
// with the root token.
type kvRaw struct {
	addr, token string
	hc          hashivault.Config
	http        *http.Client
}

func openKVRaw(t *testing.T) rawStore {
	addr, token := startVault(t)
	t.Setenv("BP_TEST_ERASURE_VAULT_TOKEN", token)
	k := &kvRaw{addr: addr, token: token, http: &http.Client{Timeout: 10 * time.Second},
		hc: hashivault.Config{Address: addr, Auth: hashivault.AuthConfig{Method: "token", TokenEnv: "BP_TEST_ERASURE_VAULT_TOKEN"}}}
	// What `blindpost vault setup` does: create the tenant's Transit keys.
	p, err := hashivault.New(context.Background(), k.hc, hashivault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Setup(context.Background(), devenv.Tenant); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kvRaw) configure(c *gateway.Config) {
	c.Vault.Embedded.KeyFile, c.Vault.Embedded.PassphraseEnv = "", ""
	c.Vault.Hashicorp = k.hc
	c.Vault.KV = gateway.KVVaultConfig{Enabled: true}
}

func (*kvRaw) sealed() bool { return false }

// do sends one request to Vault's HTTP API with the root token.
func (k *kvRaw) do(t *testing.T, method, path string, q url.Values) (int, []byte) {
	t.Helper()
	u := k.addr + "/v1/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", k.token)
	resp, err := k.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// kvSeg and the paths below follow vault/kv's layout.
func kvSeg(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func kvSubjectKey(ref vault.Ref) string {
	return "blindpost/" + kvSeg(ref.Tenant) + "/" + kvSeg(ref.Brand) + "/subjects/" + kvSeg(ref.User)
}

func kvTokenKey(ref vault.Ref, token string) string {
	return "blindpost/" + kvSeg(ref.Tenant) + "/" + kvSeg(ref.Brand) + "/tokens/" + token + "/" + kvSeg(ref.User)
}

// row is the subject's path segment, which names its secret and every
// index entry of its tokens.
func (k *kvRaw) row(t *testing.T, _ *rig, ref vault.Ref, version string) []needle {
	t.Helper()
	if st, b := k.do(t, http.MethodGet, "secret/data/"+kvSubjectKey(ref), nil); st != http.StatusOK {
		t.Fatalf("test premise: the subject's secret is not at its path: %d %s", st, b)
	}
	return []needle{{version + " subject path segment", []byte(kvSeg(ref.User))}}
}

// image is every version of every secret under the gateway's prefix, with
// its metadata, and every listing on the way.
func (k *kvRaw) image(t *testing.T, _ *rig) rawImage {
	t.Helper()
	img := rawImage{}
	var walk func(dir string)
	walk = func(dir string) {
		st, body := k.do(t, http.MethodGet, "secret/metadata/"+dir, url.Values{"list": {"true"}})
		if st == http.StatusNotFound {
			return
		}
		if st != http.StatusOK {
			t.Fatalf("list %s: %d %s", dir, st, body)
		}
		img["secret/metadata/"+dir+" (list)"] = body
		var l struct {
			Data struct {
				Keys []string `json:"keys"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &l); err != nil {
			t.Fatal(err)
		}
		for _, key := range l.Data.Keys {
			if strings.HasSuffix(key, "/") {
				walk(dir + key)
				continue
			}
			st, meta := k.do(t, http.MethodGet, "secret/metadata/"+dir+key, nil)
			if st != http.StatusOK {
				t.Fatalf("metadata of %s: %d %s", dir+key, st, meta)
			}
			img["secret/metadata/"+dir+key] = meta
			var m struct {
				Data struct {
					Versions map[string]json.RawMessage `json:"versions"`
				} `json:"data"`
			}
			if err := json.Unmarshal(meta, &m); err != nil {
				t.Fatal(err)
			}
			for v := range m.Data.Versions {
				_, b := k.do(t, http.MethodGet, "secret/data/"+dir+key, url.Values{"version": {v}})
				img["secret/data/"+dir+key+" v"+v] = b
			}
		}
	}
	walk("blindpost/")
	return img
}

// settle checks that every path the subject had, its secret and the index
// entries of both versions' tokens, is gone with every version and its
// metadata: KV v2 answers 404 where a soft delete would still show the
// version's metadata.
func (k *kvRaw) settle(t *testing.T, _ *rig, ref vault.Ref, tokens []string) string {
	t.Helper()
	keys := []string{kvSubjectKey(ref)}
	for _, tok := range tokens {
		keys = append(keys, kvTokenKey(ref, tok))
	}
	for _, key := range keys {
		for _, req := range []struct {
			path string
			q    url.Values
		}{
			{"secret/metadata/" + key, nil},
			{"secret/data/" + key, nil},
			{"secret/data/" + key, url.Values{"version": {"1"}}},
			{"secret/data/" + key, url.Values{"version": {"2"}}},
			{"secret/data/" + key, url.Values{"version": {"3"}}},
		} {
			if st, b := k.do(t, http.MethodGet, req.path, req.q); st != http.StatusNotFound {
				t.Errorf("GET %s?%s after the erasure: %d %s, want 404", req.path, req.q.Encode(), st, b)
			}
		}
	}
	for _, tok := range tokens {
		dir := strings.TrimSuffix(kvTokenKey(ref, tok), kvSeg(ref.User))
		if st, b := k.do(t, http.MethodGet, "secret/metadata/"+dir, url.Values{"list": {"true"}}); st != http.StatusNotFound {
			t.Errorf("LIST of an erased token's index folder: %d %s, want 404", st, b)
		}
	}
	return ""
}
