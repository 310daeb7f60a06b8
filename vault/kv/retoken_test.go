package kv_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/kv"
)

// storeWith returns another node's Store on the test's prefix and key,
// with these token versions.
func (e *env) storeWith(t testing.TB, pinned int, extra ...int) *kv.Store {
	t.Helper()
	s, err := kv.New(mustClient(t, needVault(t).RootToken), e.kp, kv.Options{Prefix: e.prefix, TokenVersion: pinned, ExtraTokenVersions: extra})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func retokenRef(i int) vault.Ref {
	return vault.Ref{Tenant: "acme", Brand: fmt.Sprint("casino-", i%3), User: fmt.Sprint("u-", i)}
}

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

func recordTokens(t testing.TB, kp vault.KeyProvider, rec vault.Record, version int) map[vault.Kind]string {
	t.Helper()
	toks, err := vault.RecordTokens(ctx, kp, "acme", version, rec)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// lookups checks that every token of rec of the given version looks up
// ref (want true) or nothing (want false).
func lookups(t testing.TB, s vault.Store, kp vault.KeyProvider, ref vault.Ref, rec vault.Record, version int, want bool) {
	t.Helper()
	for kind, tok := range recordTokens(t, kp, rec, version) {
		got, err := s.Lookup(ctx, ref.Tenant, ref.Brand, tok)
		switch {
		case want && (err != nil || got != ref):
			t.Fatalf("Lookup(%s %s v%d) = %v, %v; want %v", ref.User, kind, version, got, err, ref)
		case !want && !errors.Is(err, vault.ErrNotFound):
			t.Fatalf("Lookup(%s %s v%d) = %v, %v; want ErrNotFound", ref.User, kind, version, got, err)
		}
	}
}

// entries lists every index entry of the prefix (brand/token/user), read
// with the root token, as an auditor would.
func entries(t testing.TB, e *env) []string {
	t.Helper()
	var out []string
	for _, l := range leaves(t, e.raw, e.prefix) {
		if _, rest, ok := strings.Cut(l, "/tokens/"); ok {
			out = append(out, rest)
		}
	}
	return out
}

func countVersion(toks []string, v int) int {
	n := 0
	for _, t := range toks {
		if strings.Contains(t, fmt.Sprintf("_v%d_", v)) {
			n++
		}
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
	const n = 14
	e := newEnv(t)
	for i := range n {
		mustPut(t, e.s, retokenRef(i), retokenRecord(i, 0))
	}
	both := e.storeWith(t, 0, 2)
	var pairs []vault.TokenPair
	st, err := both.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2, Batch: 4}, collect(&pairs))
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
		rec := retokenRecord(i, 0)
		news := recordTokens(t, e.kp, rec, 2)
		for kind, old := range recordTokens(t, e.kp, rec, 1) {
			if emitted[old] != news[kind] {
				t.Fatalf("subject %d %s: pair %s → %q, want %s", i, kind, old, emitted[old], news[kind])
			}
		}
		lookups(t, both, e.kp, retokenRef(i), rec, 1, true)
		lookups(t, both, e.kp, retokenRef(i), rec, 2, true)
	}
	if got := countVersion(entries(t, e), 2); got != addresses(n) {
		t.Fatalf("%d index entries of version 2, want %d", got, addresses(n))
	}
	if st, err := both.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2}, collect(new([]vault.TokenPair))); err != nil || st.Added != 0 || st.Pairs != len(pairs) {
		t.Fatalf("second pass: %+v, %v; want nothing added, the same pairs", st, err)
	}

	if _, err := e.storeWith(t, 2, 1).DropTokenVersion(ctx, "acme", 1); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("dropping a version still indexed on Put: %v, want ErrInvalid", err)
	}
	pinned := e.storeWith(t, 2)
	dropped, err := pinned.DropTokenVersion(ctx, "acme", 1)
	if err != nil || dropped != addresses(n) {
		t.Fatalf("DropTokenVersion = %d, %v; want %d", dropped, err, addresses(n))
	}
	for i := range n {
		lookups(t, pinned, e.kp, retokenRef(i), retokenRecord(i, 0), 1, false)
		lookups(t, pinned, e.kp, retokenRef(i), retokenRecord(i, 0), 2, true)
	}
	if got := countVersion(entries(t, e), 1); got != 0 {
		t.Fatalf("%d index entries of version 1 left", got)
	}
	// The subjects' current secrets name no token of version 1 either.
	for i := range n {
		_, body := rawGet(t, e.raw, "secret/data/"+e.subjectKey(retokenRef(i)), nil)
		if strings.Contains(string(body), "_v1_") {
			t.Fatalf("subject %d's secret still lists a version 1 token", i)
		}
	}
}

func TestEraseRemovesTheEntriesOfEveryIndexedVersion(t *testing.T) {
	e := newEnv(t)
	s := e.storeWith(t, 0, 2)
	for i := range 4 {
		mustPut(t, s, retokenRef(i), retokenRecord(i, 0)) // a Put indexes both versions
	}
	erased := retokenRef(2)
	var toks []string
	for _, v := range []int{1, 2} {
		for _, tok := range recordTokens(t, e.kp, retokenRecord(2, 0), v) {
			toks = append(toks, tok)
		}
	}
	before := dump(t, e.raw, e.prefix)
	for _, tok := range toks {
		if !dumpHolds(before, tok) {
			t.Fatal("the scan does not see the erased subject's tokens before the erase: it proves nothing")
		}
	}
	if err := s.Erase(ctx, erased); err != nil {
		t.Fatal(err)
	}
	after := dump(t, e.raw, e.prefix)
	for path := range after {
		for _, tok := range toks {
			if strings.Contains(path, tok) {
				t.Errorf("%s is left after Erase", path)
			}
		}
	}
	for _, v := range []int{1, 2} {
		lookups(t, s, e.kp, erased, retokenRecord(2, 0), v, false)
		lookups(t, s, e.kp, retokenRef(3), retokenRecord(3, 0), v, true)
	}
}

// Puts and Erases from another node while the pass runs: no update is
// lost, every current address resolves under both versions, no replaced
// address resolves under either, and no erased subject keeps an entry.
func TestRetokenizeDuringPutsAndErasesLosesNothingAndResurrectsNothing(t *testing.T) {
	const n = 24
	e := newEnv(t)
	for i := range n {
		mustPut(t, e.s, retokenRef(i), retokenRecord(i, 0))
	}
	s, other := e.storeWith(t, 0, 2), e.storeWith(t, 0, 2)
	var last [n]atomic.Int32
	var gone [n]atomic.Bool
	erased := map[int]bool{5: true, 11: true, 17: true}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for gen := 1; ; gen++ {
			for i := range n {
				select {
				case <-stop:
					return
				default:
				}
				if erased[i] {
					if gen == 1 {
						if err := other.Erase(ctx, retokenRef(i)); err != nil {
							t.Errorf("Erase: %v", err)
						}
						gone[i].Store(true)
					}
					continue
				}
				if _, err := other.Put(ctx, retokenRef(i), retokenRecord(i, gen)); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				last[i].Store(int32(gen))
			}
			time.Sleep(time.Millisecond)
		}
	})
	for range 2 {
		if _, err := s.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2, Batch: 5}, collect(new([]vault.TokenPair))); err != nil {
			t.Errorf("Retokenize during Puts: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	if !gone[5].Load() {
		t.Fatal("test premise: no subject was erased while the passes ran")
	}
	for i := range n {
		ref, gen := retokenRef(i), int(last[i].Load())
		for _, v := range []int{1, 2} {
			if gone[i].Load() {
				lookups(t, s, e.kp, ref, retokenRecord(i, 0), v, false)
				continue
			}
			lookups(t, s, e.kp, ref, retokenRecord(i, gen), v, true)
			if gen > 0 {
				lookups(t, s, e.kp, ref, vault.Record{Email: retokenRecord(i, 0).Email}, v, false)
			}
		}
	}
	for _, entry := range entries(t, e) {
		for i := range erased {
			if gone[i].Load() && strings.HasSuffix(entry, "/"+seg(retokenRef(i).User)) {
				t.Errorf("an erased subject kept the index entry %s", entry)
			}
		}
	}
}

// A subject a node that did not index version 2 put after the pass keeps
// its version 1 tokens, and the drop says so, until a pass repairs it.
func TestDropTokenVersionRefusesWhileASubjectLacksThePinnedVersion(t *testing.T) {
	e := newEnv(t)
	both := e.storeWith(t, 0, 2)
	for i := range 3 {
		mustPut(t, both, retokenRef(i), retokenRecord(i, 0))
	}
	mustPut(t, e.s, retokenRef(9), retokenRecord(9, 0)) // version 1 only
	pinned := e.storeWith(t, 2)
	if _, err := pinned.DropTokenVersion(ctx, "acme", 1); !errors.Is(err, vault.ErrNotRetokenized) {
		t.Fatalf("DropTokenVersion: %v, want ErrNotRetokenized", err)
	}
	lookups(t, pinned, e.kp, retokenRef(9), retokenRecord(9, 0), 1, true) // kept
	if _, err := pinned.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2}, collect(new([]vault.TokenPair))); err != nil {
		t.Fatal(err)
	}
	if n, err := pinned.DropTokenVersion(ctx, "acme", 1); err != nil || n != 1 {
		t.Fatalf("DropTokenVersion after the repair = %d, %v; want subject 9's one token", n, err)
	}
	lookups(t, pinned, e.kp, retokenRef(9), retokenRecord(9, 0), 1, false)
	lookups(t, pinned, e.kp, retokenRef(9), retokenRecord(9, 0), 2, true)
	if _, err := pinned.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 3}, collect(new([]vault.TokenPair))); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("Retokenize to a version Puts do not index: %v, want ErrInvalid", err)
	}
}

// stall holds the pass's first index write until released: a pass that
// stalls between writing a subject's secret and indexing it, while
// another node changes the subject.
type stall struct {
	next     http.RoundTripper
	once     sync.Once
	arrived  chan struct{}
	released chan struct{}
}

func (g *stall) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/tokens/") {
		g.once.Do(func() {
			close(g.arrived)
			<-g.released
		})
	}
	return g.next.RoundTrip(r)
}

// The pass writes a subject's secret, then stalls; another node replaces
// or erases the subject; then the pass's index write lands. It must take
// the entries back that the newest secret does not list.
func TestRetokenizeTakesBackWhatAConcurrentChangeReplaced(t *testing.T) {
	for _, change := range []string{"put", "erase"} {
		t.Run(change, func(t *testing.T) {
			e := newEnv(t)
			ref := retokenRef(4)
			mustPut(t, e.s, ref, retokenRecord(4, 0))
			g := &stall{arrived: make(chan struct{}), released: make(chan struct{})}
			client, err := dev.clientWith(dev.RootToken, func(cfg *api.Config) {
				g.next = cfg.HttpClient.Transport
				cfg.HttpClient.Transport = g
			})
			if err != nil {
				t.Fatal(err)
			}
			pass, err := kv.New(client, e.kp, kv.Options{Prefix: e.prefix, ExtraTokenVersions: []int{2}})
			if err != nil {
				t.Fatal(err)
			}
			other := e.storeWith(t, 0, 2)
			done := make(chan error, 1)
			var pairs []vault.TokenPair
			go func() {
				_, err := pass.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2}, collect(&pairs))
				done <- err
			}()
			select {
			case <-g.arrived:
			case err := <-done:
				t.Fatalf("the pass finished without indexing: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("the pass never indexed")
			}
			if change == "put" {
				mustPut(t, other, ref, retokenRecord(4, 1))
			} else if err := other.Erase(ctx, ref); err != nil {
				t.Fatal(err)
			}
			close(g.released)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			old := vault.Record{Email: retokenRecord(4, 0).Email}
			lookups(t, other, e.kp, ref, old, 2, false)
			lookups(t, other, e.kp, ref, old, 1, false)
			if change == "put" {
				lookups(t, other, e.kp, ref, retokenRecord(4, 1), 2, true)
				if got := len(entries(t, e)); got != 2*2 {
					t.Fatalf("%d index entries, want the new record's 2 addresses × 2 versions: %v", got, entries(t, e))
				}
				return
			}
			if got := entries(t, e); len(got) != 0 {
				t.Fatalf("the erased subject has index entries again: %v", got)
			}
		})
	}
}

// BenchmarkRetokenize is one first pass over 200 subjects with an email
// and a phone number each (a fresh prefix every iteration); subjects/s is
// the rate an operator sees.
// Run: go test -run '^$' -bench Retokenize -benchtime 3x ./vault/kv/
func BenchmarkRetokenize(b *testing.B) {
	emit := func(vault.TokenPair) error { return nil }
	for b.Loop() {
		b.StopTimer()
		e := newEnv(b)
		parallelPuts(b, e.s, benchSubjects)
		s := e.storeWith(b, 0, 2)
		b.StartTimer()
		st, err := s.Retokenize(ctx, "acme", vault.RetokenOptions{From: 1, To: 2}, emit)
		if err != nil || st.Added != 2*benchSubjects {
			b.Fatalf("Retokenize = %+v, %v", st, err)
		}
	}
	b.ReportMetric(float64(b.N*benchSubjects)/b.Elapsed().Seconds(), "subjects/s")
}

func parallelPuts(b *testing.B, s vault.Store, n int) {
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if _, err := s.Put(ctx, benchRef(i), benchRecord(i, 0)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
