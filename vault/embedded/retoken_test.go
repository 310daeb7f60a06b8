package embedded_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
)

// retokenRecord is subject i's record: an email of its own, a phone
// number for every other subject, and for subjects 0 and 1 the same
// Telegram chat id (a shared address, in two brands).
func retokenRecord(i int) vault.Record {
	rec := vault.Record{Email: fmt.Sprintf("player%d@example.com", i)}
	if i%2 == 0 {
		rec.Phone = fmt.Sprintf("+1555%07d", i)
	}
	if i < 2 {
		rec.TelegramChatID = "4242"
	}
	return rec
}

// addresses counts the addresses of subjects 0..n-1.
func addresses(n int) int {
	c := 0
	for i := range n {
		r := retokenRecord(i)
		for _, a := range []string{r.Email, r.Phone, r.TelegramChatID} {
			if a != "" {
				c++
			}
		}
	}
	return c
}

// tokensOf returns subject i's tokens of the given version.
func tokensOf(t *testing.T, kp vault.KeyProvider, i, version int) map[vault.Kind]string {
	t.Helper()
	toks, err := vault.RecordTokens(ctx, kp, "acme", version, retokenRecord(i))
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// wantResolves checks that every token of subject i of the given version
// looks up subject i.
func wantResolves(t *testing.T, s vault.Store, kp vault.KeyProvider, i, version int) {
	t.Helper()
	ref := subjectRef("acme", i)
	for kind, tok := range tokensOf(t, kp, i, version) {
		got, err := s.Lookup(ctx, ref.Tenant, ref.Brand, tok)
		if err != nil || got != ref {
			t.Fatalf("Lookup(subject %d, %s v%d) = %v, %v", i, kind, version, got, err)
		}
	}
}

func wantNotFound(t *testing.T, s vault.Store, kp vault.KeyProvider, i, version int) {
	t.Helper()
	ref := subjectRef("acme", i)
	for kind, tok := range tokensOf(t, kp, i, version) {
		if _, err := s.Lookup(ctx, ref.Tenant, ref.Brand, tok); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("Lookup(subject %d, %s v%d): %v, want ErrNotFound", i, kind, version, err)
		}
	}
}

// rawTokens counts the index rows of a token key version (0: all), read
// from the file as an attacker with the disk would.
func rawTokens(t *testing.T, dbPath, user string, version int) int {
	t.Helper()
	db := rawDB(t, dbPath)
	defer db.Close()
	like := vault.TokenLike("", version)
	if version == 0 {
		like = "%"
	}
	q := `SELECT count(*) FROM tokens WHERE token LIKE ? ESCAPE '\'`
	args := []any{like}
	if user != "" {
		q += ` AND user = ?`
		args = append(args, user)
	}
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
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

func TestRetokenizeIndexesBothVersionsThenTheOldOneIsDropped(t *testing.T) {
	ks := newKeyedStore(t)
	const n = 23
	for i := range n {
		mustPut(t, ks.s, subjectRef("acme", i), retokenRecord(i))
	}
	mustPut(t, ks.s, subjectRef("globex", 0), retokenRecord(0)) // another tenant, untouched
	ks.s.Close()

	// Every node restarts indexing version 2 as well.
	both := mustOpen(t, ks.dbPath, ks.kp, embedded.Options{ExtraTokenVersions: []int{2}})
	var pairs []vault.TokenPair
	st, err := both.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2, Batch: 5}, collect(&pairs))
	if err != nil {
		t.Fatal(err)
	}
	want := vault.RetokenStats{Scanned: n, Added: addresses(n), Pairs: addresses(n)}
	if st != want {
		t.Fatalf("Retokenize = %+v, want %+v", st, want)
	}
	emitted := map[string]string{}
	for _, p := range pairs {
		emitted[p.Old] = p.New
	}
	for i := range n {
		old, cur := tokensOf(t, ks.kp, i, 1), tokensOf(t, ks.kp, i, 2)
		for kind, tok := range old {
			if emitted[tok] != cur[kind] {
				t.Fatalf("subject %d %s: pair %s → %q, want %s", i, kind, tok, emitted[tok], cur[kind])
			}
		}
		wantResolves(t, both, ks.kp, i, 1)
		wantResolves(t, both, ks.kp, i, 2)
	}
	if got := rawTokens(t, ks.dbPath, "", 2); got != addresses(n) {
		t.Fatalf("%d index rows of version 2, want %d", got, addresses(n))
	}
	// A second pass adds nothing and emits the same pairs again.
	var again []vault.TokenPair
	if st, err := both.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2}, collect(&again)); err != nil || st.Added != 0 || len(again) != len(pairs) {
		t.Fatalf("second pass: %+v, %d pairs, %v", st, len(again), err)
	}
	both.Close()

	// The pin moves to 2, version 1 still indexed; then version 1 goes.
	switched := mustOpen(t, ks.dbPath, ks.kp, embedded.Options{TokenVersion: 2, ExtraTokenVersions: []int{1}})
	if _, err := switched.DropTokenVersion(ctx, "acme", 1); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("dropping a version still indexed on Put: %v, want ErrInvalid", err)
	}
	if sub := mustPut(t, switched, subjectRef("acme", 3), retokenRecord(3)); sub.Tokens[vault.KindEmail] != tokensOf(t, ks.kp, 3, 2)[vault.KindEmail] {
		t.Fatalf("a Put after the switch reports %v, want version 2 tokens", sub.Tokens)
	}
	switched.Close()
	pinned := mustOpen(t, ks.dbPath, ks.kp, embedded.Options{TokenVersion: 2})
	if _, err := pinned.DropTokenVersion(ctx, "acme", 2); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("dropping the pinned version: %v, want ErrInvalid", err)
	}
	dropped, err := pinned.DropTokenVersion(ctx, "acme", 1)
	if err != nil || dropped != addresses(n) {
		t.Fatalf("DropTokenVersion = %d, %v; want %d", dropped, err, addresses(n))
	}
	for i := range n {
		wantNotFound(t, pinned, ks.kp, i, 1)
		wantResolves(t, pinned, ks.kp, i, 2)
	}
	if got := rawTokens(t, ks.dbPath, "", 1); got != addresses(1) {
		t.Fatalf("%d index rows of version 1 left, want only globex's %d", got, addresses(1))
	}
	if tok, err := pinned.Tokenize(ctx, "acme", vault.KindEmail, "player4@example.com"); err != nil || tok != tokensOf(t, ks.kp, 4, 2)[vault.KindEmail] {
		t.Fatalf("Tokenize after the switch = %q, %v", tok, err)
	}
}

func TestEraseRemovesTheEntriesOfEveryIndexedVersion(t *testing.T) {
	ks := newKeyedStore(t)
	ks.s.Close()
	s := mustOpen(t, ks.dbPath, ks.kp, embedded.Options{ExtraTokenVersions: []int{2}})
	for i := range 6 {
		mustPut(t, s, subjectRef("acme", i), retokenRecord(i)) // a Put indexes both versions
	}
	erased := subjectRef("acme", 4)
	if got := rawTokens(t, ks.dbPath, erased.User, 0); got != 4 {
		t.Fatalf("subject 4 has %d index rows, want 2 addresses × 2 versions", got)
	}
	if err := s.Erase(ctx, erased); err != nil {
		t.Fatal(err)
	}
	if got := rawTokens(t, ks.dbPath, erased.User, 0); got != 0 {
		t.Fatalf("after Erase subject 4 has %d index rows", got)
	}
	var needles [][]byte
	for _, v := range []int{1, 2} {
		for _, tok := range tokensOf(t, ks.kp, 4, v) {
			needles = append(needles, []byte(tok))
		}
	}
	assertAbsent(t, ks.dbPath, "a token of the erased subject", needles...)
	wantNotFound(t, s, ks.kp, 4, 1)
	wantNotFound(t, s, ks.kp, 4, 2)
	wantResolves(t, s, ks.kp, 5, 2)
}

// unwrapHook calls hook before each Unwrap, with the associated data.
type unwrapHook struct {
	*embedded.LocalKeyProvider
	hook func(ad []byte)
}

func (h unwrapHook) Unwrap(ctx context.Context, tenant string, w, ad []byte) ([]byte, error) {
	h.hook(ad)
	return h.LocalKeyProvider.Unwrap(ctx, tenant, w, ad)
}

// A Put and an Erase land between the pass's read of a record and its
// write: the Put's new addresses are indexed under both versions (by the
// Put itself) and paired, the old ones are not indexed under the new
// version, and the erased subject gets no entry back.
func TestRetokenizeNeverLosesOrResurrectsAConcurrentChange(t *testing.T) {
	ks := newKeyedStore(t)
	ks.s.Close()
	put, erase := subjectRef("acme", 4), subjectRef("acme", 7)
	updated := vault.Record{Email: "updated@example.com"}
	var s *embedded.Store
	var armed atomic.Bool
	var once sync.Map
	h := unwrapHook{LocalKeyProvider: ks.kp, hook: func(ad []byte) {
		if !armed.Load() {
			return
		}
		switch {
		case bytes.Equal(ad, vault.AssociatedData(put, 1)):
			if _, done := once.LoadOrStore("put", true); !done {
				if _, err := s.Put(ctx, put, updated); err != nil {
					t.Error(err)
				}
			}
		case bytes.Equal(ad, vault.AssociatedData(erase, 1)):
			if _, done := once.LoadOrStore("erase", true); !done {
				if err := s.Erase(ctx, erase); err != nil {
					t.Error(err)
				}
			}
		}
	}}
	const n = 10
	s = mustOpen(t, ks.dbPath, h, embedded.Options{ExtraTokenVersions: []int{2}})
	// Put under version 1 alone, before the transition.
	before := mustOpen(t, ks.dbPath, ks.kp, embedded.Options{})
	for i := range n {
		mustPut(t, before, subjectRef("acme", i), retokenRecord(i))
	}
	armed.Store(true)
	var pairs []vault.TokenPair
	st, err := s.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2, Batch: 4}, collect(&pairs))
	if err != nil {
		t.Fatal(err)
	}
	if _, fired := once.Load("erase"); !fired {
		t.Fatal("test premise: the hooks did not run")
	}
	if st.Scanned != n {
		t.Errorf("scanned %d, want %d", st.Scanned, n)
	}
	tok := func(v int, rec vault.Record) string {
		tk, err := vault.Tokenize(ctx, ks.kp, "acme", v, vault.KindEmail, rec.Email)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	for v := 1; v <= 2; v++ {
		if got, err := s.Lookup(ctx, "acme", put.Brand, tok(v, updated)); err != nil || got != put {
			t.Errorf("the concurrent Put's v%d token: %v, %v", v, got, err)
		}
		if _, err := s.Lookup(ctx, "acme", put.Brand, tok(v, retokenRecord(4))); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("the replaced address's v%d token: %v, want ErrNotFound", v, err)
		}
	}
	if got := rawTokens(t, ks.dbPath, erase.User, 0); got != 0 {
		t.Errorf("the erased subject has %d index rows again", got)
	}
	var sawUpdated bool
	for _, p := range pairs {
		switch p.Old {
		case tok(1, updated):
			sawUpdated = p.New == tok(2, updated)
		case tok(1, retokenRecord(4)), tok(1, retokenRecord(7)):
			t.Errorf("a pair of an address no record holds any more: %+v", p)
		}
	}
	if !sawUpdated {
		t.Error("no pair for the concurrent Put's address")
	}
}

func TestRetokenizeRefusesAVersionPutsDoNotIndex(t *testing.T) {
	s, _ := newStore(t)
	mustPut(t, s, subjectRef("acme", 1), retokenRecord(1))
	for _, opts := range []vault.RetokenOptions{{From: 1, To: 2}, {From: 1, To: 1}, {From: 0, To: 1}} {
		if _, err := s.Retokenize(ctx, "acme", opts, collect(new([]vault.TokenPair))); !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("Retokenize(%+v): %v, want ErrInvalid", opts, err)
		}
	}
	if _, err := embedded.Open(filepath.Join(t.TempDir(), "v.db"), newKey(t), embedded.Options{ExtraTokenVersions: []int{1}}); !errors.Is(err, vault.ErrInvalid) {
		t.Errorf("an extra version equal to the pinned one: %v, want ErrInvalid", err)
	}
}

// A node that did not index version 2 puts a subject after the pass: the
// drop of version 1 refuses, dropping nothing, until a pass repairs it.
func TestDropTokenVersionRefusesWhileASubjectLacksThePinnedVersion(t *testing.T) {
	ks := newKeyedStore(t)
	both := mustOpen(t, ks.dbPath, ks.kp, embedded.Options{ExtraTokenVersions: []int{2}})
	for i := range 4 {
		mustPut(t, both, subjectRef("acme", i), retokenRecord(i))
	}
	mustPut(t, ks.s, subjectRef("acme", 9), retokenRecord(9)) // version 1 only
	pinned := mustOpen(t, ks.dbPath, ks.kp, embedded.Options{TokenVersion: 2})
	before := rawTokens(t, ks.dbPath, "", 1)
	if _, err := pinned.DropTokenVersion(ctx, "acme", 1); !errors.Is(err, vault.ErrNotRetokenized) {
		t.Fatalf("DropTokenVersion: %v, want ErrNotRetokenized", err)
	}
	if got := rawTokens(t, ks.dbPath, "", 1); got != before {
		t.Fatalf("a refused drop deleted %d entries", before-got)
	}
	if _, err := pinned.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2}, collect(new([]vault.TokenPair))); err != nil {
		t.Fatal(err)
	}
	if n, err := pinned.DropTokenVersion(ctx, "acme", 1); err != nil || n != before {
		t.Fatalf("DropTokenVersion after the repair = %d, %v; want %d", n, err, before)
	}
	wantResolves(t, pinned, ks.kp, 9, 2)
}

// BenchmarkRetokenize is one first pass over 1000 subjects with three
// addresses each (every iteration starts without version 2 entries);
// subjects/s is the rate an operator sees.
// Run: go test -run '^$' -bench Retokenize ./vault/embedded/
func BenchmarkRetokenize(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "vault.db")
	s := mustOpen(b, path, newKey(b), embedded.Options{ExtraTokenVersions: []int{2}})
	populate(b, s)
	db := rawDB(b, path)
	emit := func(vault.TokenPair) error { return nil }
	for b.Loop() {
		b.StopTimer()
		if _, err := db.Exec(`DELETE FROM tokens WHERE token LIKE ? ESCAPE '\'`, vault.TokenLike("", 2)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		st, err := s.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2}, emit)
		if err != nil || st.Added != 3*benchSubjects {
			b.Fatalf("Retokenize = %+v, %v", st, err)
		}
	}
	b.ReportMetric(float64(b.N*benchSubjects)/b.Elapsed().Seconds(), "subjects/s")
}
