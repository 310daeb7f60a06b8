package postgres_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/hashivault"
	"github.com/blindpost/blindpost/vault/postgres"
)

// retokenRecord is subject i's record: an email of its own, a phone
// number for every other subject, and for subjects 0 and 1 the same
// Telegram chat id (a shared address, in two brands).
func retokenRecord(i, gen int) vault.Record {
	rec := vault.Record{Email: fmt.Sprintf("player%d.%d@example.com", i, gen)}
	if i%2 == 0 {
		rec.Phone = fmt.Sprintf("+1555%07d", i)
	}
	if i < 2 {
		rec.TelegramChatID = "4242"
	}
	return rec
}

func addresses(n int) int {
	c := 0
	for i := range n {
		r := retokenRecord(i, 0)
		for _, a := range []string{r.Email, r.Phone, r.TelegramChatID} {
			if a != "" {
				c++
			}
		}
	}
	return c
}

func recordTokens(t testing.TB, kp vault.KeyProvider, tenant string, rec vault.Record, version int) map[vault.Kind]string {
	t.Helper()
	toks, err := vault.RecordTokens(ctx, kp, tenant, version, rec)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// lookups checks that every token of rec of the given version looks up
// ref (want true) or nothing (want false).
func lookups(t testing.TB, s vault.Store, kp vault.KeyProvider, ref vault.Ref, rec vault.Record, version int, want bool) {
	t.Helper()
	for kind, tok := range recordTokens(t, kp, ref.Tenant, rec, version) {
		got, err := s.Lookup(ctx, ref.Tenant, ref.Brand, tok)
		switch {
		case want && (err != nil || got != ref):
			t.Fatalf("Lookup(%s %s v%d) = %v, %v; want %v", ref.User, kind, version, got, err, ref)
		case !want && !errors.Is(err, vault.ErrNotFound):
			t.Fatalf("Lookup(%s %s v%d) = %v, %v; want ErrNotFound", ref.User, kind, version, got, err)
		}
	}
}

// rawTokens counts the tenant's index rows of a token key version (0:
// all), of one user if user is set, with a connection of its own.
func rawTokens(t testing.TB, c *pgx.Conn, schema, tenant, user string, version int) int {
	t.Helper()
	like := vault.TokenLike("", version)
	if version == 0 {
		like = "%"
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.tokens WHERE tenant = $1 AND token LIKE $2 ESCAPE '\'
		AND ($3 = '' OR user_id = $3)`, tenant, like, user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func collect(pairs *[]vault.TokenPair) func(vault.TokenPair) error {
	var mu sync.Mutex
	return func(p vault.TokenPair) error {
		mu.Lock()
		defer mu.Unlock()
		*pairs = append(*pairs, p)
		return nil
	}
}

// tokenBackends are the key providers the re-tokenisation tests run
// against, each with its tenant: the embedded key file, and Vault's
// Transit (whose token key gets a version 2), if a Vault binary is there.
func tokenBackends() map[string]func(t *testing.T) (vault.KeyProvider, string) {
	return map[string]func(t *testing.T) (vault.KeyProvider, string){
		"keyfile": func(t *testing.T) (vault.KeyProvider, string) { return newKey(t), "acme" },
		"transit": func(t *testing.T) (vault.KeyProvider, string) {
			p, tenant := transitTenant(t)
			if v, err := p.RotateTokenKey(ctx, tenant); err != nil || v != 2 {
				t.Fatalf("RotateTokenKey = %d, %v", v, err)
			}
			return p, tenant
		},
	}
}

func TestRetokenizeIndexesBothVersionsThenTheOldOneIsDropped(t *testing.T) {
	for name, backend := range tokenBackends() {
		t.Run(name, func(t *testing.T) {
			const n = 40
			kp, tenant := backend(t)
			schema := newSchema(t)
			c := admin(t)
			before := mustOpen(t, kp, postgres.Options{Schema: schema})
			for i := range n {
				mustPut(t, before, tenantRef(tenant, i), retokenRecord(i, 0))
			}
			other := tenant + "-other" // a tenant the pass leaves alone
			if p, ok := kp.(*hashivault.Provider); ok {
				if _, err := p.Setup(ctx, other); err != nil {
					t.Fatal(err)
				}
			}
			mustPut(t, before, tenantRef(other, 0), retokenRecord(0, 0))
			before.Close()

			// Every node restarts indexing version 2 as well.
			both := mustOpen(t, kp, postgres.Options{Schema: schema, ExtraTokenVersions: []int{2}})
			var pairs []vault.TokenPair
			st, err := both.Retokenize(ctx, tenant, vault.RetokenOptions{From: 1, To: 2, Batch: 7}, collect(&pairs))
			if err != nil {
				t.Fatal(err)
			}
			if want := (vault.RetokenStats{Scanned: n, Added: addresses(n), Pairs: addresses(n)}); st != want {
				t.Fatalf("Retokenize = %+v, want %+v", st, want)
			}
			emitted := map[string]string{}
			for _, p := range pairs {
				emitted[p.Old] = p.New
			}
			for i := range n {
				ref, rec := tenantRef(tenant, i), retokenRecord(i, 0)
				news := recordTokens(t, kp, tenant, rec, 2)
				for kind, old := range recordTokens(t, kp, tenant, rec, 1) {
					if emitted[old] != news[kind] {
						t.Fatalf("subject %d %s: pair %s → %q, want %s", i, kind, old, emitted[old], news[kind])
					}
				}
				lookups(t, both, kp, ref, rec, 1, true)
				lookups(t, both, kp, ref, rec, 2, true)
			}
			if got := rawTokens(t, c, schema, tenant, "", 2); got != addresses(n) {
				t.Fatalf("%d index rows of version 2, want %d", got, addresses(n))
			}
			if st, err := both.Retokenize(ctx, tenant, vault.RetokenOptions{From: 1, To: 2}, collect(new([]vault.TokenPair))); err != nil || st.Added != 0 || st.Pairs != len(pairs) {
				t.Fatalf("second pass: %+v, %v; want nothing added, the same pairs", st, err)
			}

			// The pin moves to 2 (version 1 still indexed), then version 1
			// goes.
			switched := mustOpen(t, kp, postgres.Options{Schema: schema, TokenVersion: 2, ExtraTokenVersions: []int{1}})
			if _, err := switched.DropTokenVersion(ctx, tenant, 1); !errors.Is(err, vault.ErrInvalid) {
				t.Fatalf("dropping a version still indexed on Put: %v, want ErrInvalid", err)
			}
			pinned := mustOpen(t, kp, postgres.Options{Schema: schema, TokenVersion: 2})
			dropped, err := pinned.DropTokenVersion(ctx, tenant, 1)
			if err != nil || dropped != addresses(n) {
				t.Fatalf("DropTokenVersion = %d, %v; want %d", dropped, err, addresses(n))
			}
			for i := range n {
				ref, rec := tenantRef(tenant, i), retokenRecord(i, 0)
				lookups(t, pinned, kp, ref, rec, 1, false)
				lookups(t, pinned, kp, ref, rec, 2, true)
			}
			if got := rawTokens(t, c, schema, tenant, "", 1); got != 0 {
				t.Fatalf("%d index rows of version 1 left", got)
			}
			if got := rawTokens(t, c, schema, other, "", 1); got != addresses(1) {
				t.Fatalf("the other tenant has %d index rows of version 1, want %d", got, addresses(1))
			}
		})
	}
}

// Puts from another node keep changing subjects while the pass runs: no
// update is lost, every current address resolves under both versions, and
// no replaced address comes back under either.
func TestRetokenizeDuringPutsLosesNoUpdate(t *testing.T) {
	for name, backend := range tokenBackends() {
		t.Run(name, func(t *testing.T) {
			const n, writers = 40, 4
			kp, tenant := backend(t)
			schema := newSchema(t)
			opts := postgres.Options{Schema: schema, ExtraTokenVersions: []int{2}}
			s := mustOpen(t, kp, postgres.Options{Schema: schema})
			for i := range n {
				mustPut(t, s, tenantRef(tenant, i), retokenRecord(i, 0))
			}
			s = mustOpen(t, kp, opts)
			other := mustOpen(t, kp, opts) // a second gateway

			var last [n]atomic.Int32
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for gen := 1; ; gen++ {
						select {
						case <-stop:
							return
						default:
						}
						for i := w; i < n; i += writers {
							if _, err := other.Put(ctx, tenantRef(tenant, i), retokenRecord(i, gen)); err != nil {
								t.Errorf("Put: %v", err)
								return
							}
							last[i].Store(int32(gen))
						}
					}
				})
			}
			var pairs []vault.TokenPair
			for range 2 {
				if _, err := s.Retokenize(ctx, tenant, vault.RetokenOptions{From: 1, To: 2, Batch: 8}, collect(&pairs)); err != nil {
					t.Errorf("Retokenize during Puts: %v", err)
				}
			}
			close(stop)
			wg.Wait()
			t.Logf("%d pairs emitted while the Puts ran", len(pairs))
			for i := range n {
				ref, gen := tenantRef(tenant, i), int(last[i].Load())
				for _, v := range []int{1, 2} {
					lookups(t, s, kp, ref, retokenRecord(i, gen), v, true)
					if gen > 0 {
						// The first generation's email (the phone and chat id
						// stay) resolves under neither version.
						old := vault.Record{Email: retokenRecord(i, 0).Email}
						lookups(t, s, kp, ref, old, v, false)
					}
				}
			}
		})
	}
}

// A Put and an Erase land between the pass's read of a page and its
// write: the Put's new address is paired, its old one is not indexed
// under the new version, and the erased subject gets no entry back.
func TestRetokenizeNeverResurrectsAConcurrentChange(t *testing.T) {
	const n = 12
	kp := newVersionedKeys(t)
	schema := newSchema(t)
	c := admin(t)
	s := mustOpen(t, kp, postgres.Options{Schema: schema, ExtraTokenVersions: []int{2}})
	before := mustOpen(t, kp, postgres.Options{Schema: schema})
	for i := range n {
		mustPut(t, before, rewrapRef(i), retokenRecord(i, 0))
	}
	put, erase := rewrapRef(3), rewrapRef(5)
	var once sync.Map
	putAD, eraseAD := vault.AssociatedData(put, 1), vault.AssociatedData(erase, 1)
	kp.onUnwrap = func(ad []byte) {
		switch {
		case bytes.Equal(ad, putAD):
			if _, done := once.LoadOrStore("put", true); !done {
				if _, err := s.Put(ctx, put, retokenRecord(3, 1)); err != nil {
					t.Error(err)
				}
			}
		case bytes.Equal(ad, eraseAD):
			if _, done := once.LoadOrStore("erase", true); !done {
				if err := s.Erase(ctx, erase); err != nil {
					t.Error(err)
				}
			}
		}
	}
	var pairs []vault.TokenPair
	st, err := s.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2, Batch: 5}, collect(&pairs))
	kp.onUnwrap = nil
	if err != nil {
		t.Fatal(err)
	}
	if _, fired := once.Load("erase"); !fired {
		t.Fatal("test premise: the hooks did not run")
	}
	if st.Scanned != n {
		t.Errorf("scanned %d, want %d", st.Scanned, n)
	}
	for _, v := range []int{1, 2} {
		lookups(t, s, kp, put, retokenRecord(3, 1), v, true)
		lookups(t, s, kp, put, vault.Record{Email: retokenRecord(3, 0).Email}, v, false)
	}
	if got := rawTokens(t, c, schema, "acme", erase.User, 0); got != 0 {
		t.Errorf("the erased subject has %d index rows again", got)
	}
	newEmail := recordTokens(t, kp, "acme", retokenRecord(3, 1), 1)[vault.KindEmail]
	stale := map[string]bool{
		recordTokens(t, kp, "acme", retokenRecord(3, 0), 1)[vault.KindEmail]: true,
		recordTokens(t, kp, "acme", retokenRecord(5, 0), 1)[vault.KindEmail]: true,
	}
	var saw bool
	for _, p := range pairs {
		saw = saw || p.Old == newEmail
		if stale[p.Old] {
			t.Errorf("a pair of an address no record holds any more: %+v", p)
		}
	}
	if !saw {
		t.Error("no pair for the concurrent Put's new address")
	}
}

func TestEraseRemovesTheEntriesOfEveryIndexedVersion(t *testing.T) {
	schema := newSchema(t)
	kp := newKey(t)
	c := admin(t)
	requirePageinspect(t, c)
	s := mustOpen(t, kp, postgres.Options{Schema: schema, ExtraTokenVersions: []int{2}})
	for i := range 8 {
		mustPut(t, s, rewrapRef(i), retokenRecord(i, 0)) // a Put indexes both versions
	}
	erased := rewrapRef(4)
	if got := rawTokens(t, c, schema, "acme", erased.User, 0); got != 4 {
		t.Fatalf("subject 4 has %d index rows, want 2 addresses × 2 versions", got)
	}
	if err := s.Erase(ctx, erased); err != nil {
		t.Fatal(err)
	}
	if got := rawTokens(t, c, schema, "acme", erased.User, 0); got != 0 {
		t.Fatalf("after Erase subject 4 has %d index rows", got)
	}
	mustShred(t, s)
	img := readPages(t, c, schema)
	for _, v := range []int{1, 2} {
		for kind, tok := range recordTokens(t, kp, "acme", retokenRecord(4, 0), v) {
			if where := img.holding([]byte(tok)); len(where) != 0 {
				t.Errorf("after Erase and Shred the v%d %s token is still in %v", v, kind, where)
			}
		}
		lookups(t, s, kp, erased, retokenRecord(4, 0), v, false)
		lookups(t, s, kp, rewrapRef(5), retokenRecord(5, 0), v, true)
	}
}

// A subject a node that did not index version 2 put after the pass stops
// the drop of version 1, which then drops nothing, until a pass repairs it.
func TestDropTokenVersionRefusesWhileASubjectLacksThePinnedVersion(t *testing.T) {
	schema := newSchema(t)
	kp := newKey(t)
	c := admin(t)
	both := mustOpen(t, kp, postgres.Options{Schema: schema, ExtraTokenVersions: []int{2}})
	for i := range 4 {
		mustPut(t, both, rewrapRef(i), retokenRecord(i, 0))
	}
	stale := mustOpen(t, kp, postgres.Options{Schema: schema})
	mustPut(t, stale, rewrapRef(9), retokenRecord(9, 0)) // version 1 only
	pinned := mustOpen(t, kp, postgres.Options{Schema: schema, TokenVersion: 2})
	before := rawTokens(t, c, schema, "acme", "", 1)
	if _, err := pinned.DropTokenVersion(ctx, "acme", 1); !errors.Is(err, vault.ErrNotRetokenized) {
		t.Fatalf("DropTokenVersion: %v, want ErrNotRetokenized", err)
	}
	if got := rawTokens(t, c, schema, "acme", "", 1); got != before {
		t.Fatalf("a refused drop deleted %d entries", before-got)
	}
	if _, err := pinned.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2}, collect(new([]vault.TokenPair))); err != nil {
		t.Fatal(err)
	}
	if n, err := pinned.DropTokenVersion(ctx, "acme", 1); err != nil || n != before {
		t.Fatalf("DropTokenVersion after the repair = %d, %v; want %d", n, err, before)
	}
	lookups(t, pinned, kp, rewrapRef(9), retokenRecord(9, 0), 2, true)
	if _, err := pinned.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 3}, collect(new([]vault.TokenPair))); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("Retokenize to a version Puts do not index: %v, want ErrInvalid", err)
	}
}

// BenchmarkRetokenize is one first pass over 2,000 subjects with an email
// and a phone number each (every iteration starts without version 2
// entries), with the key file and with Transit on the local Vault dev
// server; subjects/s is the rate an operator sees.
// Run: go test -run '^$' -bench Retokenize ./vault/postgres/
func BenchmarkRetokenize(b *testing.B) {
	const subjects = 2000
	backends := map[string]func(b *testing.B) (vault.KeyProvider, string){
		"keyfile": func(b *testing.B) (vault.KeyProvider, string) { return newKey(b), "acme" },
		"transit": func(b *testing.B) (vault.KeyProvider, string) {
			p, tenant := transitTenant(b)
			if _, err := p.RotateTokenKey(ctx, tenant); err != nil {
				b.Fatal(err)
			}
			return p, tenant
		},
	}
	for _, name := range []string{"keyfile", "transit"} {
		b.Run(name, func(b *testing.B) {
			kp, tenant := backends[name](b)
			schema := newSchema(b)
			s := mustOpen(b, kp, postgres.Options{Schema: schema, ExtraTokenVersions: []int{2}})
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := w; i < subjects; i += 8 {
						rec := vault.Record{Email: fmt.Sprintf("player%d@example.com", i), Phone: fmt.Sprintf("+1555%07d", i)}
						if _, err := s.Put(ctx, tenantRef(tenant, i), rec); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			c := admin(b)
			emit := func(vault.TokenPair) error { return nil }
			for b.Loop() {
				b.StopTimer()
				if _, err := c.Exec(ctx, `DELETE FROM `+schema+`.tokens WHERE token LIKE $1 ESCAPE '\'`, vault.TokenLike("", 2)); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				st, err := s.Retokenize(ctx, tenant, vault.RetokenOptions{From: 1, To: 2}, emit)
				if err != nil || st.Added != 2*subjects {
					b.Fatalf("Retokenize = %+v, %v", st, err)
				}
			}
			b.ReportMetric(float64(b.N*subjects)/b.Elapsed().Seconds(), "subjects/s")
		})
	}
}
