package postgres_test

// The behaviours every vault.Store must show, run against this store and
// against vault/embedded in the same run, so the two cannot drift apart.
// Nothing here depends on PostgreSQL but the backends table: the table can
// move to a shared vault/storetest package when a third store needs it.

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
)

// storedRow is a subject's row as the database holds it.
type storedRow struct {
	version         int64
	wrapped, sealed []byte
}

// rawAccess reads and overwrites stored rows behind the store's back, as
// an attacker with write access to the database would.
type rawAccess interface {
	get(t *testing.T, ref vault.Ref) storedRow
	set(t *testing.T, ref vault.Ref, r storedRow)
}

type backend struct {
	name string
	open func(t *testing.T) (vault.Store, rawAccess)
}

var backends = []backend{
	{"postgres", func(t *testing.T) (vault.Store, rawAccess) {
		s, schema := newStore(t)
		return s, pgRaw{admin(t), schema}
	}},
	{"embedded", func(t *testing.T) (vault.Store, rawAccess) {
		path := filepath.Join(t.TempDir(), "vault.db")
		s, err := embedded.Open(path, newKey(t), embedded.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return s, sqliteRaw{db}
	}},
}

type pgRaw struct {
	c      *pgx.Conn
	schema string
}

func (r pgRaw) get(t *testing.T, ref vault.Ref) storedRow {
	t.Helper()
	var row storedRow
	if err := r.c.QueryRow(ctx, `SELECT s.version, k.wrapped_key, s.sealed_record
		FROM `+r.schema+`.subjects s JOIN `+r.schema+`.data_keys k USING (tenant, brand, user_id)
		WHERE tenant = $1 AND brand = $2 AND user_id = $3`,
		ref.Tenant, ref.Brand, ref.User).Scan(&row.version, &row.wrapped, &row.sealed); err != nil {
		t.Fatal(err)
	}
	return row
}

func (r pgRaw) set(t *testing.T, ref vault.Ref, row storedRow) {
	t.Helper()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE ` + r.schema + `.subjects SET version = $4, sealed_record = $5 WHERE tenant = $1 AND brand = $2 AND user_id = $3`,
			[]any{ref.Tenant, ref.Brand, ref.User, row.version, row.sealed}},
		{`UPDATE ` + r.schema + `.data_keys SET wrapped_key = $4 WHERE tenant = $1 AND brand = $2 AND user_id = $3`,
			[]any{ref.Tenant, ref.Brand, ref.User, row.wrapped}},
	} {
		tag, err := r.c.Exec(ctx, q.sql, q.args...)
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("raw update: %v, %v", tag, err)
		}
	}
}

type sqliteRaw struct{ db *sql.DB }

func (r sqliteRaw) get(t *testing.T, ref vault.Ref) storedRow {
	t.Helper()
	var row storedRow
	if err := r.db.QueryRow(`SELECT version, wrapped_key, sealed_record FROM subjects WHERE tenant = ? AND brand = ? AND user = ?`,
		ref.Tenant, ref.Brand, ref.User).Scan(&row.version, &row.wrapped, &row.sealed); err != nil {
		t.Fatal(err)
	}
	return row
}

func (r sqliteRaw) set(t *testing.T, ref vault.Ref, row storedRow) {
	t.Helper()
	res, err := r.db.Exec(`UPDATE subjects SET version = ?, wrapped_key = ?, sealed_record = ? WHERE tenant = ? AND brand = ? AND user = ?`,
		row.version, row.wrapped, row.sealed, ref.Tenant, ref.Brand, ref.User)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("raw update: %d rows, %v", n, err)
	}
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

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var behaviours = []struct {
	name string
	run  func(t *testing.T, s vault.Store, raw rawAccess)
}{
	{"put then resolve returns the normalised record", func(t *testing.T, s vault.Store, _ rawAccess) {
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
	}},
	{"resolve of an unknown subject is not found", func(t *testing.T, s vault.Store, _ rawAccess) {
		mustPut(t, s, acmeAlice, alice)
		if _, err := s.Resolve(ctx, acmeBob); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	}},
	{"put rejects an invalid record by field, without the value", func(t *testing.T, s vault.Store, _ rawAccess) {
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
	}},
	{"the pseudonym is kept across updates", func(t *testing.T, s vault.Store, _ rawAccess) {
		first := mustPut(t, s, acmeAlice, alice)
		upd := alice
		upd.Email = "alice.new@example.com"
		upd.Pseudonym = "aaaaaaaaaaaaaaaaaaaaaaaaaa" // ignored: the store owns it
		if second := mustPut(t, s, acmeAlice, upd); second.Pseudonym != first.Pseudonym {
			t.Fatalf("pseudonym changed: %s → %s", first.Pseudonym, second.Pseudonym)
		}
		rec, err := s.Resolve(ctx, acmeAlice)
		if err != nil || rec.Pseudonym != first.Pseudonym || rec.Email != "alice.new@example.com" {
			t.Fatalf("Resolve = %+v, %v", rec, err)
		}
		if other := mustPut(t, s, acmeBob, alice); other.Pseudonym == first.Pseudonym {
			t.Fatal("two subjects share a pseudonym")
		}
	}},
	{"tokens are deterministic across put, tokenize and brands", func(t *testing.T, s vault.Store, _ rawAccess) {
		sub := mustPut(t, s, acmeAlice, alice)
		for kind, value := range map[vault.Kind]string{
			vault.KindEmail: " ALICE.CANARY@example.COM", vault.KindPhone: "001-555-010-0001", vault.KindTelegram: " 123456789\n",
		} {
			if tok, err := s.Tokenize(ctx, "acme", kind, value); err != nil || tok != sub.Tokens[kind] {
				t.Errorf("Tokenize(%s) = %q, %v; Put gave %q", kind, tok, err, sub.Tokens[kind])
			}
		}
		other := mustPut(t, s, vault.Ref{Tenant: "acme", Brand: "casino-2", User: "x"}, alice)
		if fmt.Sprint(other.Tokens) != fmt.Sprint(sub.Tokens) {
			t.Errorf("tokens differ across brands of one tenant: %v vs %v", other.Tokens, sub.Tokens)
		}
		g := mustPut(t, s, vault.Ref{Tenant: "globex", Brand: acmeAlice.Brand, User: acmeAlice.User}, alice)
		for kind := range sub.Tokens {
			if g.Tokens[kind] == sub.Tokens[kind] {
				t.Errorf("%s token is the same for two tenants", kind)
			}
		}
	}},
	{"lookup finds the subject of a token within its brand only", func(t *testing.T, s vault.Store, _ rawAccess) {
		sub := mustPut(t, s, acmeAlice, alice)
		for kind, tok := range sub.Tokens {
			if ref, err := s.Lookup(ctx, "acme", acmeAlice.Brand, tok); err != nil || ref != acmeAlice {
				t.Errorf("Lookup(%s) = %v, %v", kind, ref, err)
			}
		}
		tok := sub.Tokens[vault.KindEmail]
		for name, q := range map[string][2]string{"other brand": {"acme", "casino-2"}, "other tenant": {"globex", acmeAlice.Brand}} {
			if _, err := s.Lookup(ctx, q[0], q[1], tok); !errors.Is(err, vault.ErrNotFound) {
				t.Errorf("%s: err = %v, want ErrNotFound", name, err)
			}
		}
		if _, err := s.Lookup(ctx, "acme", acmeAlice.Brand, "alice.canary@example.com"); !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("Lookup of a non-token err = %v, want ErrInvalid", err)
		}
	}},
	{"put re-indexes tokens that changed", func(t *testing.T, s vault.Store, _ rawAccess) {
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
		for _, tok := range []string{cur.Tokens[vault.KindEmail], cur.Tokens[vault.KindTelegram]} {
			if ref, err := s.Lookup(ctx, "acme", acmeAlice.Brand, tok); err != nil || ref != acmeAlice {
				t.Errorf("current token: %v, %v", ref, err)
			}
		}
	}},
	{"lookup of an address shared by two subjects is ambiguous", func(t *testing.T, s vault.Store, _ rawAccess) {
		sub := mustPut(t, s, acmeAlice, alice)
		mustPut(t, s, acmeBob, alice)
		_, err := s.Lookup(ctx, "acme", acmeAlice.Brand, sub.Tokens[vault.KindEmail])
		if !errors.Is(err, vault.ErrAmbiguous) || !errors.Is(err, vault.ErrInvalid) {
			t.Fatalf("err = %v, want ErrAmbiguous and ErrInvalid", err)
		}
	}},
	{"a row moved to another subject fails to open", func(t *testing.T, s vault.Store, raw rawAccess) {
		for _, to := range []vault.Ref{
			{Tenant: "acme", Brand: "casino-1", User: "u-2"},
			{Tenant: "acme", Brand: "casino-2", User: "u-1001"},
			{Tenant: "globex", Brand: "casino-1", User: "u-1001"},
			{Tenant: "acme", Brand: "casino-", User: "1u-1001"}, // shifts a boundary
		} {
			mustPut(t, s, acmeAlice, alice)
			mustPut(t, s, to, vault.Record{FirstName: "Mallory"})
			raw.set(t, to, raw.get(t, acmeAlice))
			if rec, err := s.Resolve(ctx, to); !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("Resolve(%v) = %+v, %v; want ErrCorrupt", to, rec, err)
			}
			if _, err := s.Put(ctx, to, vault.Record{FirstName: "Mallory"}); !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("Put over the moved row: %v, want ErrCorrupt", err)
			}
			if _, err := s.Resolve(ctx, acmeAlice); err != nil {
				t.Fatalf("the original row no longer opens: %v", err)
			}
		}
	}},
	{"an old version written over a new one fails to open", func(t *testing.T, s vault.Store, raw rawAccess) {
		mustPut(t, s, acmeAlice, alice)
		old := raw.get(t, acmeAlice)
		upd := alice
		upd.OptOuts = map[string]bool{"core_is_email_disabled": true}
		mustPut(t, s, acmeAlice, upd)
		cur := raw.get(t, acmeAlice)
		raw.set(t, acmeAlice, storedRow{version: cur.version, wrapped: old.wrapped, sealed: old.sealed})
		if rec, err := s.Resolve(ctx, acmeAlice); !errors.Is(err, vault.ErrCorrupt) {
			t.Fatalf("Resolve = %+v, %v; want ErrCorrupt (the opt-out must not be rolled back silently)", rec, err)
		}
	}},
	{"a tampered row fails to open", func(t *testing.T, s vault.Store, raw rawAccess) {
		mustPut(t, s, acmeAlice, alice)
		orig := raw.get(t, acmeAlice)
		for name, r := range map[string]storedRow{
			"wrapped key":   {orig.version, flipLast(orig.wrapped), orig.sealed},
			"sealed record": {orig.version, orig.wrapped, flipLast(orig.sealed)},
			"version":       {orig.version + 1, orig.wrapped, orig.sealed},
		} {
			raw.set(t, acmeAlice, r)
			if _, err := s.Resolve(ctx, acmeAlice); !errors.Is(err, vault.ErrCorrupt) {
				t.Errorf("%s: Resolve err = %v, want ErrCorrupt", name, err)
			}
		}
		raw.set(t, acmeAlice, orig)
		if _, err := s.Resolve(ctx, acmeAlice); err != nil {
			t.Fatalf("restored row: %v", err)
		}
	}},
	{"erase removes the record and its tokens, and nothing else", func(t *testing.T, s vault.Store, _ rawAccess) {
		other := vault.Ref{Tenant: "acme", Brand: "casino-1", User: "other"}
		mustPut(t, s, other, vault.Record{Email: "other@example.com"})
		sub := mustPut(t, s, acmeAlice, alice)
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
		if rec, err := s.Resolve(ctx, other); err != nil || rec.Email != "other@example.com" {
			t.Errorf("another subject: %+v, %v", rec, err)
		}
		// A new Put after the erase starts a new subject: new pseudonym.
		if again := mustPut(t, s, acmeAlice, alice); again.Pseudonym == sub.Pseudonym {
			t.Error("a re-created subject got the erased subject's pseudonym")
		}
	}},
	{"erase of an unknown subject is not found", func(t *testing.T, s vault.Store, _ rawAccess) {
		if err := s.Erase(ctx, acmeAlice); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	}},
	{"concurrent puts all land and agree on the pseudonym", func(t *testing.T, s vault.Store, _ rawAccess) {
		const workers, each = 4, 5
		shared := vault.Ref{Tenant: "acme", Brand: "casino-1", User: "shared"}
		var (
			wg         sync.WaitGroup
			mu         sync.Mutex
			pseudonyms = map[string]bool{}
		)
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					rec := vault.Record{Email: fmt.Sprintf("p%d.%d@example.com", w, i)}
					if _, err := s.Put(ctx, vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint(w, "-", i)}, rec); err != nil {
						t.Error(err)
					}
					sub, err := s.Put(ctx, shared, rec)
					if err != nil {
						t.Error(err)
						continue
					}
					mu.Lock()
					pseudonyms[sub.Pseudonym] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(pseudonyms) != 1 {
			t.Fatalf("concurrent Puts of one subject gave %d pseudonyms", len(pseudonyms))
		}
		for w := range workers {
			for i := range each {
				rec, err := s.Resolve(ctx, vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint(w, "-", i)})
				if err != nil || rec.Email != fmt.Sprintf("p%d.%d@example.com", w, i) {
					t.Errorf("Resolve(%d-%d) = %q, %v", w, i, rec.Email, err)
				}
			}
		}
	}},
}

func flipLast(b []byte) []byte {
	c := append([]byte(nil), b...)
	c[len(c)-1] ^= 1
	return c
}

func TestStoreBehaviours(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			for _, bh := range behaviours {
				t.Run(bh.name, func(t *testing.T) {
					s, raw := be.open(t)
					bh.run(t, s, raw)
				})
			}
		})
	}
}
