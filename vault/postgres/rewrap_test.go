package postgres_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/postgres"
)

// versionedKeys is a key provider with one KEK per version, which a test
// rotates and retires: what a key server does, without one. A wrapped key
// is "kek<N>:" and the data key sealed under version N.
type versionedKeys struct {
	mu     sync.Mutex
	keks   map[int][]byte
	latest int
	token  []byte
	// onUnwrap, if set, runs at the start of every Unwrap.
	onUnwrap func(ad []byte)
}

var _ vault.KEKVersioner = (*versionedKeys)(nil)

func newVersionedKeys(t testing.TB) *versionedKeys {
	t.Helper()
	k := &versionedKeys{keks: map[int][]byte{}, token: make([]byte, 32)}
	rand.Read(k.token)
	k.rotate()
	return k
}

// rotate adds a version and returns it.
func (k *versionedKeys) rotate() int {
	kek := make([]byte, 32)
	rand.Read(kek)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.latest++
	k.keks[k.latest] = kek
	return k.latest
}

// retire destroys every version below v.
func (k *versionedKeys) retire(v int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for n := range k.keks {
		if n < v {
			delete(k.keks, n)
		}
	}
}

func (k *versionedKeys) Wrap(_ context.Context, tenant string, dk, ad []byte) ([]byte, error) {
	k.mu.Lock()
	v, kek := k.latest, k.keks[k.latest]
	k.mu.Unlock()
	sealed, err := vault.Seal(kek, dk, append([]byte(tenant+"\x00"), ad...))
	if err != nil {
		return nil, err
	}
	return append([]byte("kek"+strconv.Itoa(v)+":"), sealed...), nil
}

func (k *versionedKeys) Unwrap(_ context.Context, tenant string, wrapped, ad []byte) ([]byte, error) {
	if f := k.onUnwrap; f != nil {
		f(ad)
	}
	v, err := wrappedVersion(wrapped)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	kek := k.keks[v]
	k.mu.Unlock()
	if kek == nil {
		return nil, fmt.Errorf("%w: KEK version %d is retired", vault.ErrCorrupt, v)
	}
	_, sealed, _ := bytes.Cut(wrapped, []byte(":"))
	return vault.Open(kek, sealed, append([]byte(tenant+"\x00"), ad...))
}

func (k *versionedKeys) KEKVersion(_ context.Context, _ string, wrapped []byte) (int, int, error) {
	v, err := wrappedVersion(wrapped)
	k.mu.Lock()
	defer k.mu.Unlock()
	return v, k.latest, err
}

func wrappedVersion(wrapped []byte) (int, error) {
	rest, ok := bytes.CutPrefix(wrapped, []byte("kek"))
	num, _, ok2 := bytes.Cut(rest, []byte(":"))
	v, err := strconv.Atoi(string(num))
	if !ok || !ok2 || err != nil || v < 1 {
		return 0, fmt.Errorf("%w: not a wrapped key", vault.ErrCorrupt)
	}
	return v, nil
}

func (k *versionedKeys) TokenMAC(_ context.Context, tenant string, version int, msg []byte) ([]byte, error) {
	m := hmac.New(sha256.New, k.token)
	fmt.Fprintf(m, "%s\x00%d\x00", tenant, version)
	m.Write(msg)
	return m.Sum(nil), nil
}

func (k *versionedKeys) TokenVersion() int { return 1 }

// plainKeys hides every method but the KeyProvider's: a provider that
// cannot tell KEK versions apart.
type plainKeys struct{ vault.KeyProvider }

func rewrapRef(i int) vault.Ref { return tenantRef("acme", i) }

func tenantRef(tenant string, i int) vault.Ref {
	return vault.Ref{Tenant: tenant, Brand: "casino-" + strconv.Itoa(i%3), User: "u-" + strconv.Itoa(i)}
}

func rewrapRecord(i, gen int) vault.Record {
	return vault.Record{Email: fmt.Sprintf("player%d.%d@example.com", i, gen), FirstName: "Gen" + strconv.Itoa(gen)}
}

// putAll puts subjects 0..n-1 of acme, from a few goroutines.
func putAll(t testing.TB, s vault.Store, n int) { putAllOf(t, s, "acme", n) }

func putAllOf(t testing.TB, s vault.Store, tenant string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if _, err := s.Put(ctx, tenantRef(tenant, i), rewrapRecord(i, 0)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func mustResolveAll(t testing.TB, s vault.Store, n int, gen func(i int) int) {
	t.Helper()
	mustResolveAllOf(t, s, "acme", n, gen)
}

func mustResolveAllOf(t testing.TB, s vault.Store, tenant string, n int, gen func(i int) int) {
	t.Helper()
	for i := range n {
		rec, err := s.Resolve(ctx, tenantRef(tenant, i))
		if err != nil {
			t.Fatalf("Resolve(%d): %v", i, err)
		}
		if want := rewrapRecord(i, gen(i)); rec.Email != want.Email {
			t.Fatalf("Resolve(%d) = generation %s, want %s", i, rec.FirstName, want.FirstName)
		}
	}
}

// rotatingKeys is a key provider whose KEK a test rotates and retires.
type rotatingKeys interface {
	vault.KeyProvider
	rotate() int
	retire(below int)
}

// keyBackends are the providers the re-wrap tests run against, each with
// the tenant to use: versionedKeys (in the test; its re-wrap goes key by
// key) and Vault's Transit (in batches), if a Vault binary is there.
func keyBackends(t *testing.T) map[string]func(t *testing.T) (rotatingKeys, string) {
	return map[string]func(t *testing.T) (rotatingKeys, string){
		"local": func(t *testing.T) (rotatingKeys, string) { return newVersionedKeys(t), "acme" },
		"transit": func(t *testing.T) (rotatingKeys, string) {
			p, tenant := transitTenant(t)
			return &transitKeys{t: t, Provider: p, tenant: tenant}, tenant
		},
	}
}

func mustRewrap(t testing.TB, s vault.Rewrapper, tenant string, batch int) vault.RewrapStats {
	t.Helper()
	st, err := s.Rewrap(ctx, tenant, vault.RewrapOptions{Batch: batch})
	if err != nil {
		t.Fatalf("Rewrap: %v (stats %+v)", err, st)
	}
	return st
}

func TestRewrapMovesEveryKeyToTheNewestKEKVersionSoTheOldOneCanGo(t *testing.T) {
	for name, keys := range keyBackends(t) {
		t.Run(name, func(t *testing.T) {
			const n = 150
			kp, tenant := keys(t)
			schema := newSchema(t)
			s := mustOpen(t, kp, postgres.Options{Schema: schema})
			putAllOf(t, s, tenant, n)
			_, old, _, err := s.RawRow(ctx, tenantRef(tenant, 7))
			if err != nil {
				t.Fatal(err)
			}

			if v := kp.rotate(); v != 2 {
				t.Fatalf("rotate = %d", v)
			}
			mustResolveAllOf(t, s, tenant, n, func(int) int { return 0 }) // old keys still open
			// Pages of 40 subjects: the last page is short, one page ends
			// between brands.
			st := mustRewrap(t, s, tenant, 40)
			if st != (vault.RewrapStats{Scanned: n, Rewrapped: n, Oldest: 2}) {
				t.Fatalf("first pass: %+v, want every key re-wrapped to version 2", st)
			}
			st = mustRewrap(t, s, tenant, 40)
			if st != (vault.RewrapStats{Scanned: n, Rewrapped: 0, Oldest: 2}) {
				t.Fatalf("second pass: %+v, want nothing left to do", st)
			}
			if st := mustRewrap(t, s, "nobody", 0); st != (vault.RewrapStats{}) {
				t.Fatalf("pass over a tenant without subjects: %+v", st)
			}

			kp.retire(2)
			mustResolveAllOf(t, s, tenant, n, func(int) int { return 0 })
			ad := vault.AssociatedData(tenantRef(tenant, 7), 1)
			if _, err := kp.Unwrap(ctx, tenant, old, ad); !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("a key wrapped by the retired version: %v, want ErrCorrupt", err)
			}
			// The key check was re-wrapped too: another node still starts.
			s2 := mustOpen(t, kp, postgres.Options{Schema: schema})
			if _, err := s2.Resolve(ctx, tenantRef(tenant, 1)); err != nil {
				t.Fatal(err)
			}
			if ts, err := s2.Tenants(ctx); err != nil || len(ts) != 1 || ts[0] != tenant {
				t.Fatalf("Tenants = %v, %v", ts, err)
			}
		})
	}
}

func TestRewrapLeavesARowAPutChangedMeanwhile(t *testing.T) {
	const n = 20
	schema := newSchema(t)
	kp := newVersionedKeys(t)
	s := mustOpen(t, kp, postgres.Options{Schema: schema})
	putAll(t, s, n)
	kp.rotate()
	// While the pass holds the page it read, before it writes back, a
	// gateway updates subject 3: its row now holds a new data key, bound
	// to the next record version, wrapped under version 2.
	var fired atomic.Bool
	ad := vault.AssociatedData(rewrapRef(3), 1)
	kp.onUnwrap = func(got []byte) {
		if bytes.Equal(got, ad) && fired.CompareAndSwap(false, true) {
			mustPut(t, s, rewrapRef(3), rewrapRecord(3, 1))
		}
	}
	st := mustRewrap(t, s, "acme", 0)
	kp.onUnwrap = nil
	if !fired.Load() {
		t.Fatal("the pass never unwrapped subject 3's key")
	}
	// Subject 3 was not overwritten with its old data key: the record
	// the Put wrote opens, and the pass counts it current, not re-wrapped.
	mustResolveAll(t, s, n, func(i int) int {
		if i == 3 {
			return 1
		}
		return 0
	})
	if st != (vault.RewrapStats{Scanned: n, Rewrapped: n - 1, Oldest: 2}) {
		t.Fatalf("pass: %+v", st)
	}
}

func TestRewrapConcurrentWithPutsLosesNoUpdate(t *testing.T) {
	for name, keys := range keyBackends(t) {
		t.Run(name, func(t *testing.T) {
			const n, writers = 40, 4
			kp, tenant := keys(t)
			schema := newSchema(t)
			s := mustOpen(t, kp, postgres.Options{Schema: schema})
			other := mustOpen(t, kp, postgres.Options{Schema: schema}) // a second gateway
			putAllOf(t, s, tenant, n)
			kp.rotate()

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
							if _, err := other.Put(ctx, tenantRef(tenant, i), rewrapRecord(i, gen)); err != nil {
								t.Errorf("Put: %v", err)
								return
							}
							last[i].Store(int32(gen))
						}
					}
				})
			}
			rewrapped := 0
			for range 3 {
				st, err := s.Rewrap(ctx, tenant, vault.RewrapOptions{Batch: 8})
				if err != nil {
					t.Errorf("Rewrap during Puts: %v", err)
				}
				rewrapped += st.Rewrapped
			}
			close(stop)
			wg.Wait()
			t.Logf("%d keys re-wrapped while the Puts ran", rewrapped)
			gen := func(i int) int { return int(last[i].Load()) }
			mustResolveAllOf(t, s, tenant, n, gen)
			if st := mustRewrap(t, s, tenant, 8); st.Oldest != 2 || st.Scanned != n {
				t.Fatalf("pass after the Puts: %+v, want every key on version 2", st)
			}
			kp.retire(2)
			mustResolveAllOf(t, s, tenant, n, gen)
		})
	}
}

func TestRewrapWithAProviderWithoutVersionsRewrapsEveryKey(t *testing.T) {
	const n = 12
	kp := plainKeys{newKey(t)}
	s := mustOpen(t, kp, postgres.Options{Schema: newSchema(t)})
	putAll(t, s, n)
	for range 2 {
		if st := mustRewrap(t, s, "acme", 5); st != (vault.RewrapStats{Scanned: n, Rewrapped: n}) {
			t.Fatalf("pass: %+v, want every key re-wrapped, Oldest unknown (0)", st)
		}
	}
	mustResolveAll(t, s, n, func(int) int { return 0 })
}

func TestRewrapReportsAKeyItCannotOpenAndKeepsItsVersionInOldest(t *testing.T) {
	const n = 6
	schema := newSchema(t)
	kp := newVersionedKeys(t)
	s := mustOpen(t, kp, postgres.Options{Schema: schema})
	putAll(t, s, n)
	kp.rotate()
	// Subject 2's wrapped key now belongs to subject 1: it no longer opens.
	c := admin(t)
	if _, err := c.Exec(ctx, `UPDATE `+schema+`.data_keys SET wrapped_key = (SELECT wrapped_key FROM `+schema+`.data_keys WHERE user_id = 'u-1')
		WHERE user_id = 'u-2'`); err != nil {
		t.Fatal(err)
	}
	st, err := s.Rewrap(ctx, "acme", vault.RewrapOptions{})
	if !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("Rewrap: %v, want ErrCorrupt for the moved key", err)
	}
	if st != (vault.RewrapStats{Scanned: n, Rewrapped: n - 1, Oldest: 1}) {
		t.Fatalf("stats %+v: the moved key must keep Oldest at 1", st)
	}
}

func TestRewrapMarksTheOldKeysForShredding(t *testing.T) {
	schema := newSchema(t)
	kp := newVersionedKeys(t)
	s := mustOpen(t, kp, postgres.Options{Schema: schema})
	c := admin(t)
	requirePageinspect(t, c)
	putAll(t, s, 10)
	_, old, _, err := s.RawRow(ctx, rewrapRef(4))
	if err != nil {
		t.Fatal(err)
	}
	if n, _, _ := s.Pending(ctx); n != 0 {
		t.Fatalf("pending before the pass: %d", n)
	}
	kp.rotate()
	mustRewrap(t, s, "acme", 3) // several transactions, one pending mark
	if n, _, err := s.Pending(ctx); n != 1 || err != nil {
		t.Fatalf("pending after the pass: %d, %v; want 1", n, err)
	}
	mustRewrap(t, s, "acme", 3) // nothing changes: no new mark
	if n, _, _ := s.Pending(ctx); n != 1 {
		t.Fatalf("pending after an idle pass: %d; want 1", n)
	}
	if where := readPages(t, c, schema).holding(old); len(where) == 0 {
		t.Fatal("the replaced wrapped key is not in the pages before Shred: the test cannot see it")
	}
	mustShred(t, s)
	if where := readPages(t, c, schema).holding(old); len(where) != 0 {
		t.Fatalf("after Shred the replaced wrapped key is still in %v", where)
	}
	if n, _, _ := s.Pending(ctx); n != 0 {
		t.Fatalf("pending after Shred: %d", n)
	}
	mustResolveAll(t, s, 10, func(int) int { return 0 })
}
