package embedded_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
)

var ctx = context.Background()

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

func mustOpen(t testing.TB, path string, kp vault.KeyProvider, opts embedded.Options) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(path, kp, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newStore(t testing.TB) (*embedded.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vault.db")
	return mustOpen(t, path, newKey(t), embedded.Options{}), path
}

func mustPut(t testing.TB, s vault.Store, ref vault.Ref, rec vault.Record) vault.Subject {
	t.Helper()
	sub, err := s.Put(ctx, ref, rec)
	if err != nil {
		t.Fatalf("Put(%v): %v", ref, err)
	}
	return sub
}

// rawDB opens a second, independent connection to the file, as an attacker
// with write access to the disk would.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var (
	acmeAlice = vault.Ref{Tenant: "acme", Brand: "casino-1", User: "u-1001"}
	acmeBob   = vault.Ref{Tenant: "acme", Brand: "casino-1", User: "u-1002"}
	alice     = vault.Record{
		Email: "Alice.Canary@Example.com", Phone: "+1 555 010 0001", TelegramChatID: "123456789",
		FirstName: "Alice", LastName: "Canary", Locale: "en-GB", Country: "mt", Timezone: "Europe/Malta",
		Consents: map[string]bool{"marketing_email": true},
		OptOuts:  map[string]bool{"core_is_sms_disabled": true},
	}
)

func TestPutThenResolveReturnsTheNormalisedRecord(t *testing.T) {
	s, _ := newStore(t)
	sub := mustPut(t, s, acmeAlice, alice)
	if sub.Ref != acmeAlice || len(sub.Pseudonym) != vault.PseudonymLen || len(sub.Tokens) != 3 {
		t.Fatalf("Put = %+v", sub)
	}
	got, err := s.Resolve(ctx, acmeAlice)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := alice.Normalize()
	want.Pseudonym = sub.Pseudonym
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Fatalf("Resolve =\n%s\nwant\n%s", g, w)
	}
	if _, err := s.Resolve(ctx, acmeBob); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Resolve(unknown) err = %v, want ErrNotFound", err)
	}
}

func mustJSON(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPutRejectsAnInvalidRecordByField(t *testing.T) {
	s, _ := newStore(t)
	_, err := s.Put(ctx, acmeAlice, vault.Record{Email: "alice-at-example.com"})
	var fe *vault.FieldError
	if !errors.Is(err, vault.ErrInvalid) || !errors.As(err, &fe) || fe.Field != "email" {
		t.Fatalf("Put err = %v", err)
	}
	if strings.Contains(err.Error(), "alice-at-example.com") {
		t.Fatalf("error %q quotes the value", err)
	}
	if _, err := s.Put(ctx, vault.Ref{Tenant: "acme", Brand: "b\n", User: "u"}, alice); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("Put with a bad ref err = %v", err)
	}
}

func TestPseudonymIsKeptAcrossUpdates(t *testing.T) {
	s, _ := newStore(t)
	first := mustPut(t, s, acmeAlice, alice)
	upd := alice
	upd.Email = "alice.new@example.com"
	upd.Pseudonym = "aaaaaaaaaaaaaaaaaaaaaaaaaa" // ignored: the store owns it
	second := mustPut(t, s, acmeAlice, upd)
	if second.Pseudonym != first.Pseudonym {
		t.Fatalf("pseudonym changed: %s → %s", first.Pseudonym, second.Pseudonym)
	}
	rec, _ := s.Resolve(ctx, acmeAlice)
	if rec.Pseudonym != first.Pseudonym || rec.Email != "alice.new@example.com" {
		t.Fatalf("Resolve = %+v", rec)
	}
	if other := mustPut(t, s, acmeBob, alice); other.Pseudonym == first.Pseudonym {
		t.Fatal("two subjects share a pseudonym")
	}
}

func TestTokensAreDeterministicAcrossPutAndTokenize(t *testing.T) {
	s, _ := newStore(t)
	sub := mustPut(t, s, acmeAlice, alice)
	for kind, value := range map[vault.Kind]string{
		vault.KindEmail: " ALICE.CANARY@example.COM", vault.KindPhone: "001-555-010-0001", vault.KindTelegram: " 123456789\n",
	} {
		tok, err := s.Tokenize(ctx, "acme", kind, value)
		if err != nil || tok != sub.Tokens[kind] {
			t.Errorf("Tokenize(%s) = %q, %v; Put gave %q", kind, tok, err, sub.Tokens[kind])
		}
	}
	// Same record for another brand of the tenant: same tokens, so the
	// core can match a player across brands without the address.
	other := mustPut(t, s, vault.Ref{Tenant: "acme", Brand: "casino-2", User: "x"}, alice)
	if fmt.Sprint(other.Tokens) != fmt.Sprint(sub.Tokens) {
		t.Errorf("tokens differ across brands of one tenant: %v vs %v", other.Tokens, sub.Tokens)
	}
}

func TestTokensDifferPerTenant(t *testing.T) {
	s, _ := newStore(t)
	a := mustPut(t, s, acmeAlice, alice)
	g := mustPut(t, s, vault.Ref{Tenant: "globex", Brand: acmeAlice.Brand, User: acmeAlice.User}, alice)
	for kind := range a.Tokens {
		if a.Tokens[kind] == g.Tokens[kind] {
			t.Errorf("%s token is the same for two tenants", kind)
		}
	}
}

func TestTokensMatchTheDerivationVectors(t *testing.T) {
	var doc struct {
		MasterHex string `json:"master_hex"`
		Vectors   []struct {
			Tenant  string     `json:"tenant"`
			Version int        `json:"version"`
			Kind    vault.Kind `json:"kind"`
			Value   string     `json:"value"`
			Token   string     `json:"token"`
		} `json:"vectors"`
	}
	b, err := os.ReadFile("testdata/derivation.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(keyPath, []byte("# TEST-ONLY\n"+doc.MasterHex+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kp, err := embedded.NewKeyFileProvider(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stores := map[int]*embedded.Store{
		1: mustOpen(t, filepath.Join(dir, "v1.db"), kp, embedded.Options{}),
		2: mustOpen(t, filepath.Join(dir, "v2.db"), kp, embedded.Options{TokenVersion: 2}),
	}
	for _, v := range doc.Vectors {
		got, err := stores[v.Version].Tokenize(ctx, v.Tenant, v.Kind, v.Value)
		if err != nil || got != v.Token {
			t.Errorf("%s v%d %s: Tokenize = %q, %v; want %q", v.Tenant, v.Version, v.Kind, got, err, v.Token)
		}
	}
}

func TestLookupFindsTheSubjectOfATokenWithinItsBrand(t *testing.T) {
	s, _ := newStore(t)
	sub := mustPut(t, s, acmeAlice, alice)
	for kind, tok := range sub.Tokens {
		ref, err := s.Lookup(ctx, "acme", acmeAlice.Brand, tok)
		if err != nil || ref != acmeAlice {
			t.Errorf("Lookup(%s) = %v, %v", kind, ref, err)
		}
	}
	tok := sub.Tokens[vault.KindEmail]
	for name, q := range map[string][2]string{
		"other brand":  {"acme", "casino-2"},
		"other tenant": {"globex", acmeAlice.Brand},
	} {
		if _, err := s.Lookup(ctx, q[0], q[1], tok); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", name, err)
		}
	}
	if _, err := s.Lookup(ctx, "acme", acmeAlice.Brand, "alice.canary@example.com"); !errors.Is(err, vault.ErrInvalid) {
		t.Errorf("Lookup of a non-token err = %v, want ErrInvalid", err)
	}
}

func TestPutRemovesStaleTokens(t *testing.T) {
	s, _ := newStore(t)
	old := mustPut(t, s, acmeAlice, alice)
	upd := alice
	upd.Email, upd.Phone = "alice.new@example.com", ""
	cur := mustPut(t, s, acmeAlice, upd)
	for _, tok := range []string{old.Tokens[vault.KindEmail], old.Tokens[vault.KindPhone]} {
		if _, err := s.Lookup(ctx, "acme", acmeAlice.Brand, tok); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("stale token still resolves: %v", err)
		}
	}
	if _, ok := cur.Tokens[vault.KindPhone]; ok {
		t.Error("Put reported a phone token for a record without a phone")
	}
	if ref, err := s.Lookup(ctx, "acme", acmeAlice.Brand, cur.Tokens[vault.KindEmail]); err != nil || ref != acmeAlice {
		t.Errorf("new token: %v, %v", ref, err)
	}
}

func TestLookupOfAnAddressSharedBySubjectsIsAmbiguous(t *testing.T) {
	s, _ := newStore(t)
	sub := mustPut(t, s, acmeAlice, alice)
	mustPut(t, s, acmeBob, alice)
	_, err := s.Lookup(ctx, "acme", acmeAlice.Brand, sub.Tokens[vault.KindEmail])
	if !errors.Is(err, vault.ErrAmbiguous) || !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("err = %v, want ErrAmbiguous and ErrInvalid", err)
	}
}

func TestARecordRowMovedToAnotherSubjectFailsToOpen(t *testing.T) {
	for _, c := range []struct {
		name string
		to   vault.Ref
	}{
		{"to another user", vault.Ref{Tenant: "acme", Brand: "casino-1", User: "u-2"}},
		{"to another brand", vault.Ref{Tenant: "acme", Brand: "casino-2", User: "u-1001"}},
		{"to another tenant", vault.Ref{Tenant: "globex", Brand: "casino-1", User: "u-1001"}},
		{"to a user whose id shifts a boundary", vault.Ref{Tenant: "acme", Brand: "casino-", User: "1u-1001"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, path := newStore(t)
			mustPut(t, s, acmeAlice, alice)
			mustPut(t, s, c.to, vault.Record{FirstName: "Mallory"})
			db := rawDB(t, path)
			_, err := db.Exec(`UPDATE subjects SET
				wrapped_key   = (SELECT wrapped_key   FROM subjects WHERE tenant = ? AND brand = ? AND user = ?),
				sealed_record = (SELECT sealed_record FROM subjects WHERE tenant = ? AND brand = ? AND user = ?),
				version       = (SELECT version       FROM subjects WHERE tenant = ? AND brand = ? AND user = ?)
				WHERE tenant = ? AND brand = ? AND user = ?`,
				acmeAlice.Tenant, acmeAlice.Brand, acmeAlice.User,
				acmeAlice.Tenant, acmeAlice.Brand, acmeAlice.User,
				acmeAlice.Tenant, acmeAlice.Brand, acmeAlice.User,
				c.to.Tenant, c.to.Brand, c.to.User)
			if err != nil {
				t.Fatal(err)
			}
			if rec, err := s.Resolve(ctx, c.to); !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("Resolve = %+v, %v; want ErrCorrupt", rec, err)
			}
			if _, err := s.Resolve(ctx, acmeAlice); err != nil {
				t.Fatalf("the original row no longer opens: %v", err)
			}
		})
	}
}

func TestAnOldVersionWrittenOverANewOneFailsToOpen(t *testing.T) {
	s, path := newStore(t)
	mustPut(t, s, acmeAlice, alice)
	db := rawDB(t, path)
	var wrapped, sealed []byte
	if err := db.QueryRow(`SELECT wrapped_key, sealed_record FROM subjects`).Scan(&wrapped, &sealed); err != nil {
		t.Fatal(err)
	}
	upd := alice
	upd.OptOuts = map[string]bool{"core_is_email_disabled": true}
	mustPut(t, s, acmeAlice, upd)
	if _, err := db.Exec(`UPDATE subjects SET wrapped_key = ?, sealed_record = ?`, wrapped, sealed); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Resolve(ctx, acmeAlice); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Resolve = %+v, %v; want ErrCorrupt (the opt-out must not be rolled back silently)", rec, err)
	}
}

func TestATamperedRowFailsToOpen(t *testing.T) {
	for _, col := range []string{"wrapped_key", "sealed_record"} {
		t.Run(col, func(t *testing.T) {
			s, path := newStore(t)
			mustPut(t, s, acmeAlice, alice)
			db := rawDB(t, path)
			var b []byte
			if err := db.QueryRow(`SELECT ` + col + ` FROM subjects`).Scan(&b); err != nil {
				t.Fatal(err)
			}
			b[len(b)-1] ^= 1
			if _, err := db.Exec(`UPDATE subjects SET `+col+` = ?`, b); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Resolve(ctx, acmeAlice); !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("Resolve err = %v, want ErrCorrupt", err)
			}
		})
	}
}

// files returns the database and its WAL and shared-memory files.
func files(t *testing.T, path string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

func assertAbsent(t *testing.T, path, what string, needles ...[]byte) {
	t.Helper()
	for name, b := range files(t, path) {
		for _, n := range needles {
			if len(n) > 0 && bytes.Contains(b, n) {
				t.Errorf("%s holds %s", name, what)
			}
		}
	}
}

func piiNeedles(rec vault.Record) [][]byte {
	n, _ := rec.Normalize()
	return [][]byte{
		[]byte(rec.Email), []byte(n.Email), []byte(strings.ToUpper(n.Email)), []byte("canary"),
		[]byte(n.Phone), []byte(n.Phone[1:]), []byte(n.TelegramChatID),
	}
}

func TestTheDatabaseNeverHoldsTheEmailInClear(t *testing.T) {
	s, path := newStore(t)
	for i := range 20 {
		rec := alice
		rec.FirstName = fmt.Sprint("Player", i)
		mustPut(t, s, vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("u-", i)}, vault.Record{FirstName: "Other"})
		mustPut(t, s, acmeAlice, rec)
	}
	assertAbsent(t, path, "the record's PII in clear", piiNeedles(alice)...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	assertAbsent(t, path, "the record's PII in clear after close", piiNeedles(alice)...)
}

func TestEraseMakesTheRecordUnrecoverable(t *testing.T) {
	s, path := newStore(t)
	for i := range 30 {
		mustPut(t, s, vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("other-", i)},
			vault.Record{Email: fmt.Sprintf("other%d@example.com", i), FirstName: "Other"})
	}
	sub := mustPut(t, s, acmeAlice, alice)
	sub = mustPut(t, s, acmeAlice, alice) // a second version in the WAL
	var wrapped, sealed []byte
	if err := rawDB(t, path).QueryRow(`SELECT wrapped_key, sealed_record FROM subjects WHERE user = ?`,
		acmeAlice.User).Scan(&wrapped, &sealed); err != nil {
		t.Fatal(err)
	}
	held := false
	for _, b := range files(t, path) {
		held = held || bytes.Contains(b, sealed[1:])
	}
	if !held {
		t.Fatal("test premise: the files do not hold the sealed record before erase")
	}

	if err := s.Erase(ctx, acmeAlice); err != nil {
		t.Fatal(err)
	}

	if _, err := s.Resolve(ctx, acmeAlice); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Resolve after erase: %v, want ErrNotFound", err)
	}
	for kind, tok := range sub.Tokens {
		if _, err := s.Lookup(ctx, "acme", acmeAlice.Brand, tok); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Lookup(%s) after erase: %v, want ErrNotFound", kind, err)
		}
	}
	if err := s.Erase(ctx, acmeAlice); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("second Erase: %v, want ErrNotFound", err)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Errorf("WAL is %d bytes after erase, want truncated", fi.Size())
	}
	assertAbsent(t, path, "the erased record's PII", piiNeedles(alice)...)
	assertAbsent(t, path, "the erased record's wrapped key", wrapped[1:])
	assertAbsent(t, path, "the erased record's ciphertext", sealed[1:], sealed[len(sealed)-64:])
	for _, tok := range sub.Tokens {
		assertAbsent(t, path, "an erased token", []byte(tok))
	}
	// The other subjects are untouched.
	if _, err := s.Resolve(ctx, vault.Ref{Tenant: "acme", Brand: "casino-1", User: "other-7"}); err != nil {
		t.Errorf("another subject no longer resolves: %v", err)
	}
}

func TestEraseOfAnUnknownSubjectIsNotFound(t *testing.T) {
	s, _ := newStore(t)
	if err := s.Erase(ctx, acmeAlice); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestAWrongKeyFileFailsWithErrCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	s, err := embedded.Open(path, newKey(t), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, acmeAlice, alice)
	s.Close()

	wrong := newKey(t)
	if _, err := embedded.Open(path, wrong, embedded.Options{}); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Open with the wrong key: %v, want ErrCorrupt", err)
	}
	// Without the key check, the records themselves refuse to open.
	if _, err := rawDB(t, path).Exec(`DELETE FROM key_checks`); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path, wrong, embedded.Options{})
	if rec, err := s.Resolve(ctx, acmeAlice); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Resolve with the wrong key = %+v, %v; want ErrCorrupt", rec, err)
	}
	if _, err := s.Put(ctx, acmeAlice, alice); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Put over a record sealed with another key: %v, want ErrCorrupt", err)
	}
}

// Argon2id at 64 MiB is slow by design: this is the only test that runs it.
func TestAWrongPassphraseFailsWithErrCorrupt(t *testing.T) {
	dir := t.TempDir()
	path, salt := filepath.Join(dir, "vault.db"), filepath.Join(dir, "vault.salt")
	right, err := embedded.NewPassphraseProvider([]byte("correct horse battery staple"), salt)
	if err != nil {
		t.Fatal(err)
	}
	s, err := embedded.Open(path, right, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, acmeAlice, alice)
	s.Close()

	saltBefore, err := os.ReadFile(salt)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(salt); fi.Mode().Perm() != 0o600 {
		t.Errorf("salt file mode %v, want 0600", fi.Mode().Perm())
	}
	wrong, err := embedded.NewPassphraseProvider([]byte("correct horse battery stapler"), salt)
	if err != nil {
		t.Fatal(err)
	}
	if saltAfter, _ := os.ReadFile(salt); string(saltAfter) != string(saltBefore) {
		t.Fatal("the salt file was replaced")
	}
	if _, err := embedded.Open(path, wrong, embedded.Options{}); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Open with the wrong passphrase: %v, want ErrCorrupt", err)
	}
	s = mustOpen(t, path, right, embedded.Options{})
	if rec, err := s.Resolve(ctx, acmeAlice); err != nil || rec.FirstName != "Alice" {
		t.Fatalf("Resolve with the right passphrase again: %v", err)
	}
}

func TestConcurrentPutsAllLandAndAgreeOnThePseudonym(t *testing.T) {
	s, _ := newStore(t)
	const workers, each = 6, 8
	shared := vault.Ref{Tenant: "acme", Brand: "casino-1", User: "shared"}
	var wg sync.WaitGroup
	pseudonyms := make(chan string, workers*each)
	errs := make(chan error, 2*workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				rec := vault.Record{Email: fmt.Sprintf("p%d.%d@example.com", w, i)}
				if _, err := s.Put(ctx, vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint(w, "-", i)}, rec); err != nil {
					errs <- err
				}
				sub, err := s.Put(ctx, shared, rec)
				if err != nil {
					errs <- err
					continue
				}
				pseudonyms <- sub.Pseudonym
			}
		})
	}
	wg.Wait()
	close(errs)
	close(pseudonyms)
	for err := range errs {
		t.Error(err)
	}
	first := <-pseudonyms
	for p := range pseudonyms {
		if p != first {
			t.Fatalf("concurrent Puts of one subject gave pseudonyms %s and %s", first, p)
		}
	}
	for w := range workers {
		for i := range each {
			rec, err := s.Resolve(ctx, vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint(w, "-", i)})
			if err != nil || rec.Email != fmt.Sprintf("p%d.%d@example.com", w, i) {
				t.Errorf("Resolve(%d-%d) = %q, %v", w, i, rec.Email, err)
			}
		}
	}
}

func TestDatabaseFilesArePrivate(t *testing.T) {
	s, path := newStore(t)
	mustPut(t, s, acmeAlice, alice)
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

func TestANewerSchemaIsRefused(t *testing.T) {
	s, path := newStore(t)
	s.Close()
	if _, err := rawDB(t, path).Exec(`UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.Open(path, newKey(t), embedded.Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	kp := newKey(t)
	s, err := embedded.Open(path, kp, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sub := mustPut(t, s, acmeAlice, alice)
	s.Close()
	s = mustOpen(t, path, kp, embedded.Options{})
	rec, err := s.Resolve(ctx, acmeAlice)
	if err != nil || rec.Pseudonym != sub.Pseudonym {
		t.Fatalf("Resolve after reopen = %+v, %v", rec, err)
	}
}
