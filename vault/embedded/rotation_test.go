package embedded_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
)

type keyedStore struct {
	s       *embedded.Store
	kp      *embedded.LocalKeyProvider
	keyPath string
	dbPath  string
}

func newKeyedStore(t *testing.T) keyedStore {
	t.Helper()
	dir := t.TempDir()
	ks := keyedStore{keyPath: filepath.Join(dir, "vault.key"), dbPath: filepath.Join(dir, "vault.db")}
	if err := embedded.GenerateKeyFile(ks.keyPath); err != nil {
		t.Fatal(err)
	}
	var err error
	if ks.kp, err = embedded.NewKeyFileProvider(ks.keyPath); err != nil {
		t.Fatal(err)
	}
	ks.s = mustOpen(t, ks.dbPath, ks.kp, embedded.Options{})
	return ks
}

func subjectRef(tenant string, i int) vault.Ref {
	return vault.Ref{Tenant: tenant, Brand: fmt.Sprint("casino-", i%3), User: fmt.Sprint("u-", i)}
}

func subjectRecord(i int) vault.Record {
	return vault.Record{Email: fmt.Sprintf("player%d@example.com", i), FirstName: fmt.Sprint("Player", i)}
}

// storedKeys reads every wrapped key of the file, as an attacker with the
// disk would: the subjects' data keys and the tenants' key checks.
func storedKeys(t *testing.T, dbPath string) map[string][]byte {
	t.Helper()
	db := rawDB(t, dbPath)
	out := map[string][]byte{}
	rows, err := db.Query(`SELECT tenant || '/' || brand || '/' || user, wrapped_key FROM subjects
		UNION ALL SELECT 'check/' || tenant, wrapped FROM key_checks`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var w []byte
		if err := rows.Scan(&k, &w); err != nil {
			t.Fatal(err)
		}
		out[k] = w
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	return out
}

func kekVersionOf(t *testing.T, kp vault.KEKVersioner, wrapped []byte) int {
	t.Helper()
	v, _, err := kp.KEKVersion(ctx, "acme", wrapped)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustResolveAll(t *testing.T, s *embedded.Store, tenant string, n int) {
	t.Helper()
	for i := range n {
		rec, err := s.Resolve(ctx, subjectRef(tenant, i))
		if err != nil || rec.Email != subjectRecord(i).Email {
			t.Fatalf("Resolve(%s %d) = %q, %v", tenant, i, rec.Email, err)
		}
	}
}

func mustRewrap(t *testing.T, s *embedded.Store, tenant string, opts vault.RewrapOptions) vault.RewrapStats {
	t.Helper()
	st, err := s.Rewrap(ctx, tenant, opts)
	if err != nil {
		t.Fatalf("Rewrap(%s): %v", tenant, err)
	}
	return st
}

func TestKEKRotationEndToEnd(t *testing.T) {
	ks := newKeyedStore(t)
	const n = 25
	tenants := []string{"acme", "globex"}
	for _, tenant := range tenants {
		for i := range n {
			mustPut(t, ks.s, subjectRef(tenant, i), subjectRecord(i))
		}
	}
	tokBefore, _ := ks.s.Tokenize(ctx, "acme", vault.KindEmail, "player1@example.com")
	v1Keys := storedKeys(t, ks.dbPath)
	for k, w := range v1Keys {
		if kekVersionOf(t, ks.kp, w) != 1 {
			t.Fatalf("%s: not wrapped by version 1 before the rotation", k)
		}
	}
	if st := mustRewrap(t, ks.s, "acme", vault.RewrapOptions{}); st.Rewrapped != 0 || st.Scanned != n+1 || st.Oldest != 1 {
		t.Fatalf("Rewrap before any rotation = %+v", st)
	}

	if v, err := embedded.RotateKeyFile(ks.keyPath); err != nil || v != 2 {
		t.Fatalf("RotateKeyFile = %d, %v", v, err)
	}
	mustResolveAll(t, ks.s, "acme", n)
	// A Put after the rotation wraps with version 2 at once.
	mustPut(t, ks.s, subjectRef("acme", 0), subjectRecord(0))
	if w := storedKeys(t, ks.dbPath)["acme/"+subjectRef("acme", 0).Brand+"/u-0"]; kekVersionOf(t, ks.kp, w) != 2 {
		t.Fatal("a Put after the rotation did not use version 2")
	}

	for _, tenant := range tenants {
		st := mustRewrap(t, ks.s, tenant, vault.RewrapOptions{Batch: 7})
		want := vault.RewrapStats{Scanned: n + 1, Rewrapped: n + 1, Oldest: 2}
		if tenant == "acme" {
			want.Rewrapped = n // u-0 was already on version 2
		}
		if st != want {
			t.Errorf("Rewrap(%s) = %+v, want %+v", tenant, st, want)
		}
		if st := mustRewrap(t, ks.s, tenant, vault.RewrapOptions{}); st.Rewrapped != 0 || st.Oldest != 2 {
			t.Errorf("second Rewrap(%s) = %+v", tenant, st)
		}
	}
	for k, w := range storedKeys(t, ks.dbPath) {
		if kekVersionOf(t, ks.kp, w) != 2 {
			t.Errorf("%s: still on an old version after Rewrap", k)
		}
	}
	mustResolveAll(t, ks.s, "acme", n)
	mustResolveAll(t, ks.s, "globex", n)

	if err := embedded.RetireKeyVersion(ks.keyPath, 1); err != nil {
		t.Fatal(err)
	}
	mustResolveAll(t, ks.s, "acme", n)
	ref := subjectRef("globex", 3)
	old := v1Keys["globex/"+ref.Brand+"/"+ref.User]
	if _, err := ks.kp.Unwrap(ctx, "globex", old, vault.AssociatedData(ref, 1)); !errors.Is(err, vault.ErrCorrupt) || !errors.Is(err, embedded.ErrKEKVersion) {
		t.Fatalf("Unwrap of a version-1 key after retiring it: %v", err)
	}
	if tok, _ := ks.s.Tokenize(ctx, "acme", vault.KindEmail, "player1@example.com"); tok != tokBefore || tok == "" {
		t.Errorf("the rotation changed a token: %q → %q", tokBefore, tok)
	}

	// A fresh process with the trimmed key file opens the store (the key
	// checks were re-wrapped too) and reads every record.
	ks.s.Close()
	kp, err := embedded.NewKeyFileProvider(ks.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if vs, _ := kp.KEKVersions(); !slices.Equal(vs, []int{2}) {
		t.Fatalf("versions after retiring 1: %v", vs)
	}
	s := mustOpen(t, ks.dbPath, kp, embedded.Options{})
	mustResolveAll(t, s, "globex", n)
	if tenants2, err := s.Tenants(ctx); err != nil || !slices.Equal(tenants2, tenants) {
		t.Errorf("Tenants = %v, %v", tenants2, err)
	}
}

func TestAStoreWithAKeyCheckUnderARetiredVersionRefusesToOpen(t *testing.T) {
	ks := newKeyedStore(t)
	mustPut(t, ks.s, acmeAlice, alice)
	ks.s.Close()
	embedded.RotateKeyFile(ks.keyPath)
	if err := embedded.RetireKeyVersion(ks.keyPath, 1); err != nil { // without a Rewrap
		t.Fatal(err)
	}
	kp, err := embedded.NewKeyFileProvider(ks.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.Open(ks.dbPath, kp, embedded.Options{}); !errors.Is(err, vault.ErrCorrupt) || !errors.Is(err, embedded.ErrKEKVersion) {
		t.Fatalf("Open = %v, want ErrCorrupt and ErrKEKVersion", err)
	}
}

// TestRewrapLeavesNoOldWrappedKeyInTheFiles: after a Rewrap the database
// and WAL files hold none of the keys as the old version wrapped them, so
// that retiring the version leaves nothing in the live files it could open.
func TestRewrapLeavesNoOldWrappedKeyInTheFiles(t *testing.T) {
	ks := newKeyedStore(t)
	const n = 40
	for i := range n {
		mustPut(t, ks.s, subjectRef("acme", i), subjectRecord(i))
	}
	for i := range 5 { // older versions of some rows, in the WAL
		mustPut(t, ks.s, subjectRef("acme", i), subjectRecord(i))
	}
	old := storedKeys(t, ks.dbPath)
	needles := make([][]byte, 0, len(old))
	for _, w := range old {
		needles = append(needles, w[1:]) // nonce ‖ ciphertext, without the format byte
	}
	held := 0
	for _, b := range files(t, ks.dbPath) {
		for _, nd := range needles {
			if bytes.Contains(b, nd) {
				held++
			}
		}
	}
	if held < len(needles) {
		t.Fatalf("test premise: the files hold %d of %d wrapped keys before the Rewrap", held, len(needles))
	}

	embedded.RotateKeyFile(ks.keyPath)
	if st := mustRewrap(t, ks.s, "acme", vault.RewrapOptions{Batch: 16}); st.Rewrapped != n+1 || st.Oldest != 2 {
		t.Fatalf("Rewrap = %+v", st)
	}
	assertAbsent(t, ks.dbPath, "a key as version 1 wrapped it", needles...)
	if err := ks.s.Close(); err != nil {
		t.Fatal(err)
	}
	assertAbsent(t, ks.dbPath, "a key as version 1 wrapped it, after Close", needles...)
}

// hookedKeys calls hook before each Wrap, with the associated data.
type hookedKeys struct {
	*embedded.LocalKeyProvider
	hook func(ad []byte)
}

func (h hookedKeys) Wrap(ctx context.Context, tenant string, dk, ad []byte) ([]byte, error) {
	h.hook(ad)
	return h.LocalKeyProvider.Wrap(ctx, tenant, dk, ad)
}

// TestRewrapNeverOverwritesAConcurrentChange makes a Put and an Erase land
// between Rewrap's read of a row and its write.
func TestRewrapNeverOverwritesAConcurrentChange(t *testing.T) {
	dir := t.TempDir()
	keyPath, dbPath := filepath.Join(dir, "vault.key"), filepath.Join(dir, "vault.db")
	embedded.GenerateKeyFile(keyPath)
	kp, err := embedded.NewKeyFileProvider(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	var s *embedded.Store
	put, erase := subjectRef("acme", 4), subjectRef("acme", 7)
	updated := vault.Record{Email: "updated@example.com"}
	var once sync.Map
	var armed atomic.Bool
	h := hookedKeys{LocalKeyProvider: kp, hook: func(ad []byte) {
		if !armed.Load() {
			return
		}
		switch {
		case bytes.Equal(ad, vault.AssociatedData(put, 1)):
			if _, done := once.LoadOrStore("put", true); !done {
				mustPut(t, s, put, updated)
			}
		case bytes.Equal(ad, vault.AssociatedData(erase, 1)):
			if _, done := once.LoadOrStore("erase", true); !done {
				if err := s.Erase(ctx, erase); err != nil {
					t.Error(err)
				}
			}
		}
	}}
	s = mustOpen(t, dbPath, h, embedded.Options{})
	const n = 10
	for i := range n {
		mustPut(t, s, subjectRef("acme", i), subjectRecord(i))
	}
	embedded.RotateKeyFile(keyPath)
	armed.Store(true)

	st := mustRewrap(t, s, "acme", vault.RewrapOptions{Batch: 4})
	if _, fired := once.Load("erase"); !fired {
		t.Fatal("test premise: the hooks did not run")
	}
	if want := (vault.RewrapStats{Scanned: n + 1, Rewrapped: n + 1 - 2, Oldest: 2}); st != want {
		t.Errorf("Rewrap = %+v, want %+v", st, want)
	}
	if rec, err := s.Resolve(ctx, put); err != nil || rec.Email != updated.Email {
		t.Errorf("the concurrent Put was lost: %q, %v", rec.Email, err)
	}
	if _, err := s.Resolve(ctx, erase); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("the erased subject came back: %v", err)
	}
	for i := range n {
		if ref := subjectRef("acme", i); ref != put && ref != erase {
			if _, err := s.Resolve(ctx, ref); err != nil {
				t.Errorf("Resolve(%d): %v", i, err)
			}
		}
	}
}

func TestRewrapAndPutsRunTogether(t *testing.T) {
	ks := newKeyedStore(t)
	const n, writers, rounds = 60, 3, 6
	for i := range n {
		mustPut(t, ks.s, subjectRef("acme", i), subjectRecord(i))
	}
	embedded.RotateKeyFile(ks.keyPath)

	last := make([]string, n) // the last FirstName each subject was given
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				for i := w; i < n; i += writers {
					rec := subjectRecord(i)
					rec.FirstName = fmt.Sprint("Round", r)
					if _, err := ks.s.Put(ctx, subjectRef("acme", i), rec); err != nil {
						t.Error(err)
						return
					}
					last[i] = rec.FirstName
				}
			}
		})
	}
	wg.Go(func() {
		for range rounds {
			if _, err := ks.s.Rewrap(ctx, "acme", vault.RewrapOptions{Batch: 5}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()

	if st := mustRewrap(t, ks.s, "acme", vault.RewrapOptions{}); st.Oldest != 2 || st.Scanned != n+1 {
		t.Errorf("final Rewrap = %+v", st)
	}
	for i := range n {
		rec, err := ks.s.Resolve(ctx, subjectRef("acme", i))
		if err != nil || rec.FirstName != last[i] {
			t.Errorf("Resolve(%d) = %q, %v; want %q", i, rec.FirstName, err, last[i])
		}
	}
}

func TestRewrapOfAnUnknownTenantIsEmpty(t *testing.T) {
	ks := newKeyedStore(t)
	mustPut(t, ks.s, acmeAlice, alice)
	if st := mustRewrap(t, ks.s, "globex", vault.RewrapOptions{}); st != (vault.RewrapStats{}) {
		t.Errorf("Rewrap(globex) = %+v", st)
	}
	if _, err := ks.s.Rewrap(ctx, "bad\ntenant", vault.RewrapOptions{}); !errors.Is(err, vault.ErrInvalid) {
		t.Errorf("Rewrap(bad tenant) = %v, want ErrInvalid", err)
	}
}

// plainKeys hides the provider's KEK versions.
type plainKeys struct{ vault.KeyProvider }

func TestRewrapWithAProviderThatDoesNotTellVersions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	s := mustOpen(t, path, plainKeys{newKey(t)}, embedded.Options{})
	for i := range 5 {
		mustPut(t, s, subjectRef("acme", i), subjectRecord(i))
	}
	before := storedKeys(t, path)
	for range 2 {
		if st := mustRewrap(t, s, "acme", vault.RewrapOptions{Batch: 2}); st != (vault.RewrapStats{Scanned: 6, Rewrapped: 6}) {
			t.Fatalf("Rewrap = %+v, want every key wrapped again and Oldest 0", st)
		}
	}
	for k, w := range storedKeys(t, path) {
		if bytes.Equal(w, before[k]) {
			t.Errorf("%s was not wrapped again", k)
		}
	}
	mustResolveAll(t, s, "acme", 5)
}

func TestRewrapGoesPastAKeyThatDoesNotOpen(t *testing.T) {
	ks := newKeyedStore(t)
	for i := range 5 {
		mustPut(t, ks.s, subjectRef("acme", i), subjectRecord(i))
	}
	bad := subjectRef("acme", 2)
	db := rawDB(t, ks.dbPath)
	var w []byte
	if err := db.QueryRow(`SELECT wrapped_key FROM subjects WHERE brand = ? AND user = ?`, bad.Brand, bad.User).Scan(&w); err != nil {
		t.Fatal(err)
	}
	w[40] ^= 1
	if _, err := db.Exec(`UPDATE subjects SET wrapped_key = ? WHERE brand = ? AND user = ?`, w, bad.Brand, bad.User); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.kp.RotateKEK(); err != nil {
		t.Fatal(err)
	}
	st, err := ks.s.Rewrap(ctx, "acme", vault.RewrapOptions{Batch: 2})
	if !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Rewrap err = %v, want ErrCorrupt", err)
	}
	if want := (vault.RewrapStats{Scanned: 6, Rewrapped: 5, Oldest: 1}); st != want {
		t.Errorf("Rewrap = %+v, want %+v", st, want)
	}
	for i := range 5 {
		if ref := subjectRef("acme", i); ref != bad {
			if _, err := ks.s.Resolve(ctx, ref); err != nil {
				t.Errorf("Resolve(%d): %v", i, err)
			}
		}
	}
}

// Argon2id at 64 MiB is slow by design: one derivation.
func TestAPassphraseHasOneKEKVersionAndCannotRotate(t *testing.T) {
	kp, err := embedded.NewPassphraseProvider([]byte("correct horse battery staple"), filepath.Join(t.TempDir(), "salt"))
	if err != nil {
		t.Fatal(err)
	}
	dk, ad := []byte("0123456789abcdef0123456789abcdef"), []byte("ad")
	w, err := kp.Wrap(ctx, "acme", dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	if v, latest, err := kp.KEKVersion(ctx, "acme", w); err != nil || v != 1 || latest != 1 || w[0] != 1 {
		t.Fatalf("KEKVersion = %d, %d, %v (format byte %d)", v, latest, err, w[0])
	}
	if _, err := kp.RotateKEK(); !errors.Is(err, embedded.ErrNoKeyFile) {
		t.Errorf("RotateKEK = %v, want ErrNoKeyFile", err)
	}
	if err := kp.RetireKEK(1); !errors.Is(err, embedded.ErrNoKeyFile) {
		t.Errorf("RetireKEK = %v, want ErrNoKeyFile", err)
	}
}

func TestProviderRotateAndRetireTakeEffectAtOnce(t *testing.T) {
	kp := newKey(t)
	dk, ad := []byte("0123456789abcdef0123456789abcdef"), []byte("ad")
	w1, _ := kp.Wrap(ctx, "acme", dk, ad)
	if v, err := kp.RotateKEK(); err != nil || v != 2 {
		t.Fatalf("RotateKEK = %d, %v", v, err)
	}
	if vs, _ := kp.KEKVersions(); !slices.Equal(vs, []int{1, 2}) {
		t.Fatalf("versions %v", vs)
	}
	if err := kp.RetireKEK(2); !errors.Is(err, embedded.ErrRetireNewest) {
		t.Fatalf("RetireKEK(newest) = %v", err)
	}
	if err := kp.RetireKEK(1); err != nil {
		t.Fatal(err)
	}
	if _, err := kp.Unwrap(ctx, "acme", w1, ad); !errors.Is(err, embedded.ErrKEKVersion) {
		t.Fatalf("Unwrap by the retired version: %v", err)
	}
}
