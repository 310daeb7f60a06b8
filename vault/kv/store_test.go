package kv_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
	"github.com/blindpost/blindpost/vault/kv"
)

const canaryEmail = "canary-4711@example.com"

var (
	acmeAlice = vault.Ref{Tenant: "acme", Brand: "casino-1", User: "u-1001"}
	acmeBob   = vault.Ref{Tenant: "acme", Brand: "casino-1", User: "u-1002"}
	alice     = vault.Record{
		Email: "Alice.Canary@Example.com", Phone: "+1 555 010 0001", TelegramChatID: "123456789",
		FirstName: "Alice", LastName: "Canary", Locale: "en-GB", Country: "mt", Timezone: "Europe/Malta",
		Consents: map[string]bool{"marketing_email": true},
		OptOuts:  map[string]bool{"core_is_sms_disabled": true},
	}
	bob = vault.Record{Email: "bob@example.com", Phone: "+15550100002"}
)

func TestPutThenResolveReturnsTheNormalisedRecord(t *testing.T) {
	e := newEnv(t)
	sub := mustPut(t, e.s, acmeAlice, alice)
	if len(sub.Pseudonym) != vault.PseudonymLen || len(sub.Tokens) != 3 {
		t.Fatalf("subject = %+v", sub)
	}
	got, err := e.s.Resolve(ctx, acmeAlice)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := alice.Normalize()
	want.Pseudonym = sub.Pseudonym
	if mustJSON(t, got) != mustJSON(t, want) {
		t.Fatalf("Resolve =\n%s\nwant\n%s", mustJSON(t, got), mustJSON(t, want))
	}
	if got.Email != "alice.canary@example.com" || got.Phone != "+15550100001" || got.Country != "MT" {
		t.Fatalf("record not normalised: %+v", got)
	}
}

func TestPutRejectsAnInvalidRecordByField(t *testing.T) {
	e := newEnv(t)
	_, err := e.s.Put(ctx, acmeAlice, vault.Record{Email: "not-an-address-4711"})
	wantErr(t, "Put", err, vault.ErrInvalid)
	if strings.Contains(err.Error(), "4711") {
		t.Fatalf("error quotes the value: %v", err)
	}
	_, err = e.s.Put(ctx, vault.Ref{Tenant: "acme", Brand: "b"}, bob)
	wantErr(t, "Put with an empty user", err, vault.ErrInvalid)
	if l := leaves(t, e.raw, e.prefix); len(l) != 0 {
		t.Fatalf("a rejected Put wrote %v", l)
	}
}

func TestPseudonymIsKeptAcrossUpdates(t *testing.T) {
	e := newEnv(t)
	first := mustPut(t, e.s, acmeAlice, alice)
	changed := alice
	changed.FirstName = "Alicia"
	changed.Pseudonym = "aaaaaaaaaaaaaaaaaaaaaaaaaa" // ignored
	second := mustPut(t, e.s, acmeAlice, changed)
	if second.Pseudonym != first.Pseudonym {
		t.Fatalf("pseudonym changed: %s → %s", first.Pseudonym, second.Pseudonym)
	}
	got, err := e.s.Resolve(ctx, acmeAlice)
	if err != nil || got.FirstName != "Alicia" || got.Pseudonym != first.Pseudonym {
		t.Fatalf("Resolve = %+v, %v", got, err)
	}
	if other := mustPut(t, e.s, acmeBob, bob); other.Pseudonym == first.Pseudonym {
		t.Fatal("two subjects share a pseudonym")
	}
	if _, cur := versions(t, e.raw, e.subjectKey(acmeAlice)); cur != 2 {
		t.Fatalf("subject secret at version %d after two Puts, want 2", cur)
	}
}

// Every backend must mint the same token from the same key and value, or
// a subject moved between stores would stop resolving.
func TestTokensAreTheEmbeddedStoresTokens(t *testing.T) {
	e := newEnv(t)
	sub := mustPut(t, e.s, acmeAlice, alice)
	emb, err := embedded.Open(filepath.Join(t.TempDir(), "vault.db"), e.kp, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	want := mustPut(t, emb, acmeAlice, alice)
	if fmt.Sprint(sub.Tokens) != fmt.Sprint(want.Tokens) {
		t.Fatalf("kv tokens %v, embedded tokens %v", sub.Tokens, want.Tokens)
	}
	for kind, value := range map[vault.Kind]string{vault.KindEmail: " ALICE.canary@example.com ", vault.KindPhone: "+15550100001"} {
		tok, err := e.s.Tokenize(ctx, "acme", kind, value)
		if err != nil || tok != sub.Tokens[kind] {
			t.Fatalf("Tokenize(%s) = %q, %v; Put gave %q", kind, tok, err, sub.Tokens[kind])
		}
	}
}

func TestPutReindexesChangedTokens(t *testing.T) {
	e := newEnv(t)
	old := mustPut(t, e.s, acmeAlice, alice)
	changed := alice
	changed.Email = "alice.new@example.com"
	changed.TelegramChatID = ""
	cur := mustPut(t, e.s, acmeAlice, changed)

	for _, tok := range []string{old.Tokens[vault.KindEmail], old.Tokens[vault.KindTelegram]} {
		_, err := e.s.Lookup(ctx, "acme", "casino-1", tok)
		wantErr(t, "Lookup of a replaced token", err, vault.ErrNotFound)
		if keys := list(t, e.raw, e.tokenDir("acme", "casino-1", tok)); len(keys) != 0 {
			t.Fatalf("stale index entry left: %v", keys)
		}
	}
	for kind, tok := range cur.Tokens {
		ref, err := e.s.Lookup(ctx, "acme", "casino-1", tok)
		if err != nil || ref != acmeAlice {
			t.Fatalf("Lookup(%s) = %v, %v", kind, ref, err)
		}
	}
	if got, want := indexed(t, e, "acme", "casino-1"), tokenSet(cur.Tokens); !slices.Equal(got, want) {
		t.Fatalf("index holds %v, want %v", got, want)
	}
}

// indexed returns every token with an index entry in the brand, sorted.
func indexed(t testing.TB, e *env, tenant, brand string) []string {
	t.Helper()
	var toks []string
	dir := e.prefix + "/" + seg(tenant) + "/" + seg(brand) + "/tokens"
	for _, k := range list(t, e.raw, dir) {
		toks = append(toks, strings.TrimSuffix(k, "/"))
	}
	slices.Sort(toks)
	return toks
}

func tokenSet(m map[vault.Kind]string) []string {
	var toks []string
	for _, t := range m {
		toks = append(toks, t)
	}
	slices.Sort(toks)
	return toks
}

func TestLookupFindsTheSubjectOfATokenWithinItsBrand(t *testing.T) {
	e := newEnv(t)
	casino := vault.Ref{Tenant: "acme", Brand: "casino-1", User: "u-1"}
	sports := vault.Ref{Tenant: "acme", Brand: "sports-2", User: "u-2"}
	other := vault.Ref{Tenant: "globex", Brand: "casino-1", User: "u-1"}
	a := mustPut(t, e.s, casino, bob)
	b := mustPut(t, e.s, sports, bob)
	c := mustPut(t, e.s, other, bob)
	if a.Tokens[vault.KindEmail] != b.Tokens[vault.KindEmail] {
		t.Fatal("tokens of one tenant differ per brand")
	}
	if a.Tokens[vault.KindEmail] == c.Tokens[vault.KindEmail] {
		t.Fatal("tokens of two tenants are equal")
	}
	tok := a.Tokens[vault.KindEmail]
	for _, tc := range []struct {
		name          string
		tenant, brand string
		token         string
		want          vault.Ref
		err           error
	}{
		{"own brand", "acme", "casino-1", tok, casino, nil},
		{"sister brand", "acme", "sports-2", tok, sports, nil},
		{"brand without the address", "acme", "poker-3", tok, vault.Ref{}, vault.ErrNotFound},
		{"other tenant, own token", "globex", "casino-1", c.Tokens[vault.KindEmail], other, nil},
		{"other tenant, foreign token", "globex", "casino-1", tok, vault.Ref{}, vault.ErrNotFound},
		{"malformed token", "acme", "casino-1", "tok_email_v1_../../x", vault.Ref{}, vault.ErrInvalid},
		{"empty brand", "acme", "", tok, vault.Ref{}, vault.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.s.Lookup(ctx, tc.tenant, tc.brand, tc.token)
			if tc.err != nil {
				wantErr(t, "Lookup", err, tc.err)
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Lookup = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestLookupOfAnAddressSharedBySubjectsIsAmbiguous(t *testing.T) {
	e := newEnv(t)
	sub := mustPut(t, e.s, acmeAlice, bob)
	mustPut(t, e.s, acmeBob, bob)
	_, err := e.s.Lookup(ctx, "acme", "casino-1", sub.Tokens[vault.KindEmail])
	wantErr(t, "Lookup", err, vault.ErrAmbiguous)
	wantErr(t, "Lookup", err, vault.ErrInvalid)
	// One of them moves to another address: the token is unambiguous again.
	mustPut(t, e.s, acmeBob, vault.Record{Email: "bob.new@example.com"})
	if ref, err := e.s.Lookup(ctx, "acme", "casino-1", sub.Tokens[vault.KindEmail]); err != nil || ref != acmeAlice {
		t.Fatalf("Lookup after the move = %v, %v", ref, err)
	}
}

func TestUnknownSubjectsAreNotFound(t *testing.T) {
	e := newEnv(t)
	tok, err := e.s.Tokenize(ctx, "acme", vault.KindEmail, "nobody@example.com")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.s.Resolve(ctx, acmeAlice)
	wantErr(t, "Resolve", err, vault.ErrNotFound)
	_, err = e.s.Lookup(ctx, "acme", "casino-1", tok)
	wantErr(t, "Lookup", err, vault.ErrNotFound)
	wantErr(t, "Erase", e.s.Erase(ctx, acmeAlice), vault.ErrNotFound)
}

// Ids are the PAM's and may hold any printable character; each must stay
// one path segment, so that no id can reach another subject's secret.
func TestIDsWithAnyPrintableCharacterStayOneSegment(t *testing.T) {
	e := newEnv(t)
	plain := vault.Ref{Tenant: "acme", Brand: "b", User: "x"}
	mustPut(t, e.s, plain, bob)
	for i, user := range []string{"..", "../x", "x/../x", "a b?c#d%2F", "ü-ñ/💌", "x/", ".", "-_=+"} {
		ref := vault.Ref{Tenant: "acme", Brand: "b", User: user}
		rec := vault.Record{Email: fmt.Sprintf("user-%d@example.com", i)}
		mustPut(t, e.s, ref, rec)
		got, err := e.s.Resolve(ctx, ref)
		if err != nil || got.Email != rec.Email {
			t.Fatalf("Resolve(%q) = %+v, %v", user, got, err)
		}
		if got, err := e.s.Resolve(ctx, plain); err != nil || got.Email != bob.Email {
			t.Fatalf("Put of %q changed the subject %q: %+v, %v", user, plain.User, got, err)
		}
	}
	if n := len(list(t, e.raw, e.prefix+"/"+seg("acme")+"/"+seg("b")+"/subjects")); n != 9 {
		t.Fatalf("%d subject secrets, want 9", n)
	}
}

// Two gateway nodes, each with its own client and Store, Put the same
// subject at once with a different address each time. Check-and-set must
// keep every Put (one KV version each), every Put must agree on the
// pseudonym, and the index must end with exactly the last record's tokens.
func TestConcurrentPutsFromTwoNodesLoseNoUpdate(t *testing.T) {
	e := newEnv(t)
	nodes := []*kv.Store{e.s, e.store(t, mustClient(t, dev.RootToken))}
	const perNode = 15
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		pseudonyms = map[string]bool{}
		errs       []error
	)
	for n, s := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perNode {
				rec := vault.Record{Email: fmt.Sprintf("node%d-put%d@example.com", n, i), FirstName: fmt.Sprintf("n%d-%d", n, i)}
				sub, err := s.Put(ctx, acmeAlice, rec)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					pseudonyms[sub.Pseudonym] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d Puts failed, first: %v", len(errs), errs[0])
	}
	if len(pseudonyms) != 1 {
		t.Fatalf("Puts reported %d pseudonyms, want 1", len(pseudonyms))
	}
	if got, err := e.s.Resolve(ctx, acmeAlice); err != nil || !pseudonyms[got.Pseudonym] {
		t.Fatalf("stored pseudonym is not the one the Puts reported: %v", err)
	}
	if _, cur := versions(t, e.raw, e.subjectKey(acmeAlice)); cur != 2*perNode {
		t.Fatalf("subject at version %d after %d Puts: an update was lost", cur, 2*perNode)
	}
	final, err := e.s.Resolve(ctx, acmeAlice)
	if err != nil {
		t.Fatal(err)
	}
	finalTok, err := e.s.Tokenize(ctx, "acme", vault.KindEmail, final.Email)
	if err != nil {
		t.Fatal(err)
	}
	if got := indexed(t, e, "acme", "casino-1"); !slices.Equal(got, []string{finalTok}) {
		t.Fatalf("index holds %d tokens after the race, want only the last record's: %v", len(got), got)
	}
	for n := range nodes {
		for i := range perNode {
			email := fmt.Sprintf("node%d-put%d@example.com", n, i)
			tok, _ := e.s.Tokenize(ctx, "acme", vault.KindEmail, email)
			ref, err := nodes[1-n].Lookup(ctx, "acme", "casino-1", tok)
			if email == final.Email {
				if err != nil || ref != acmeAlice {
					t.Fatalf("Lookup of the last address = %v, %v", ref, err)
				}
			} else if !errors.Is(err, vault.ErrNotFound) {
				t.Fatalf("Lookup of a replaced address = %v, %v; want not found", ref, err)
			}
		}
	}
}

// Erasure: the subject and every token index entry it ever had are gone
// from Vault with all their versions, not soft-deleted, and no secret left
// under the prefix holds the canary address.
func TestEraseLeavesNothingInVault(t *testing.T) {
	e := newEnv(t)
	canary := vault.Record{Email: canaryEmail, Phone: "+15550104711", FirstName: "Canary"}
	keys := map[string]bool{e.subjectKey(acmeAlice): true}
	var tokens []string
	for _, rec := range []vault.Record{
		canary,
		{Email: canaryEmail, TelegramChatID: "4711"},
		{Email: "canary-4711+new@example.com", Phone: "+15550104712"},
		canary,
	} {
		sub := mustPut(t, e.s, acmeAlice, rec)
		for _, tok := range sub.Tokens {
			keys[e.tokenKey(acmeAlice, tok)] = true
			tokens = append(tokens, tok)
		}
	}
	// A node that died between its write and its index update left the
	// entry of an address the subject no longer has. Lookup must not
	// trust it, and Erase must find it through the old versions.
	orphan, err := e.s.Tokenize(ctx, "acme", vault.KindTelegram, "4711")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.raw.KVv2("secret").Put(ctx, e.tokenKey(acmeAlice, orphan), map[string]any{"user": acmeAlice.User}); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.Lookup(ctx, "acme", "casino-1", orphan)
	wantErr(t, "Lookup through a stale index entry", err, vault.ErrNotFound)
	mustPut(t, e.s, acmeBob, bob) // must survive

	before := dump(t, e.raw, e.prefix)
	if !dumpHolds(before, canaryEmail) {
		t.Fatal("the scan does not see the canary before the erase: it proves nothing")
	}
	keys[e.tokenKey(acmeAlice, orphan)] = true
	vsBefore := map[string][]int{}
	live := 0
	for key := range keys {
		if vsBefore[key], _ = versions(t, e.raw, key); len(vsBefore[key]) > 0 {
			live++
		}
	}
	// The subject's four versions, its two current tokens and the orphan;
	// the rest were dropped by the Puts that replaced them.
	if n := len(vsBefore[e.subjectKey(acmeAlice)]); n != 4 || live != 4 {
		t.Fatalf("before Erase: subject has %d versions, %d keys exist; want 4 and 4: the test reads the wrong paths", n, live)
	}

	if err := e.s.Erase(ctx, acmeAlice); err != nil {
		t.Fatal(err)
	}

	_, err = e.s.Resolve(ctx, acmeAlice)
	wantErr(t, "Resolve after Erase", err, vault.ErrNotFound)
	for _, tok := range tokens {
		_, err := e.s.Lookup(ctx, "acme", "casino-1", tok)
		wantErr(t, "Lookup after Erase", err, vault.ErrNotFound)
	}
	for key := range keys {
		if status, _ := rawGet(t, e.raw, "secret/data/"+key, nil); status != 404 {
			t.Errorf("GET data/%s = %d after Erase, want 404", key, status)
		}
		if status, _ := rawGet(t, e.raw, "secret/metadata/"+key, nil); status != 404 {
			t.Errorf("GET metadata/%s = %d after Erase, want 404 (a soft delete keeps it)", key, status)
		}
		for _, v := range vsBefore[key] {
			status, body := rawGet(t, e.raw, "secret/data/"+key, url.Values{"version": {strconv.Itoa(v)}})
			if status != 404 || bytes.Contains(bytes.ToLower(body), []byte("canary")) {
				t.Errorf("GET data/%s?version=%d = %d after Erase, want 404", key, v, status)
			}
		}
	}
	after := dump(t, e.raw, e.prefix)
	for path, body := range after {
		if bytes.Contains(bytes.ToLower(body), []byte("canary")) {
			t.Errorf("%s still holds the canary after Erase", path)
		}
		if bytes.Contains([]byte(path), []byte(seg(acmeAlice.User))) {
			t.Errorf("%s still names the erased subject", path)
		}
	}
	if !dumpHolds(after, bob.Email) {
		t.Fatal("Erase removed another subject")
	}
	if got, err := e.s.Resolve(ctx, acmeBob); err != nil || got.Email != bob.Email {
		t.Fatalf("Resolve(bob) after erasing alice = %+v, %v", got, err)
	}
	wantErr(t, "second Erase", e.s.Erase(ctx, acmeAlice), vault.ErrNotFound)
}

func dumpHolds(d map[string][]byte, s string) bool {
	for _, b := range d {
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// A secret copied from one subject's path to another's must not be served
// as the second subject's record.
func TestASecretCopiedToAnotherSubjectIsCorrupt(t *testing.T) {
	e := newEnv(t)
	mustPut(t, e.s, acmeAlice, alice)
	sec, err := e.raw.KVv2("secret").Get(ctx, e.subjectKey(acmeAlice))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.raw.KVv2("secret").Put(ctx, e.subjectKey(acmeBob), sec.Data); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.Resolve(ctx, acmeBob)
	wantErr(t, "Resolve of a copied secret", err, vault.ErrCorrupt)
	if _, err := e.raw.KVv2("secret").Put(ctx, e.subjectKey(acmeBob), map[string]any{"format": 7}); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.Resolve(ctx, acmeBob)
	wantErr(t, "Resolve of a foreign secret", err, vault.ErrCorrupt)
}

// A sealed Vault, a token Vault refuses and a missing engine are retryable
// (messages wait), and no error text quotes an id or a value.
func TestVaultFailuresAreUnavailable(t *testing.T) {
	e := newEnv(t)
	sub := mustPut(t, e.s, acmeAlice, alice)
	check := func(t *testing.T, s *kv.Store) {
		t.Helper()
		_, err := s.Resolve(ctx, acmeAlice)
		noLeak(t, "Resolve", err)
		_, err = s.Put(ctx, acmeAlice, alice)
		noLeak(t, "Put", err)
		_, err = s.Lookup(ctx, "acme", "casino-1", sub.Tokens[vault.KindEmail])
		noLeak(t, "Lookup", err)
		noLeak(t, "Erase", s.Erase(ctx, acmeAlice))
	}
	t.Run("token without a policy", func(t *testing.T) {
		tok, err := e.raw.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"default"}, TTL: "5m"})
		if err != nil {
			t.Fatal(err)
		}
		check(t, e.store(t, mustClient(t, tok.Auth.ClientToken)))
	})
	t.Run("no engine at the mount", func(t *testing.T) {
		s, err := kv.New(mustClient(t, dev.RootToken), e.kp, kv.Options{Mount: "nothing-here", Prefix: e.prefix})
		if err != nil {
			t.Fatal(err)
		}
		check(t, s)
		noLeak(t, "Check", s.Check(ctx))
	})
	t.Run("unreachable", func(t *testing.T) {
		c := mustClient(t, dev.RootToken)
		if err := c.SetAddress("http://127.0.0.1:1"); err != nil {
			t.Fatal(err)
		}
		check(t, e.store(t, c))
	})
	t.Run("sealed", func(t *testing.T) {
		if err := e.raw.Sys().Seal(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			st, err := e.raw.Sys().Unseal(dev.UnsealKey)
			if err != nil || st.Sealed {
				t.Fatalf("unseal: %v", err)
			}
			// Back in service once unsealed, with the data intact.
			var got vault.Record
			for range 200 {
				if got, err = e.s.Resolve(ctx, acmeAlice); err == nil {
					break
				}
				time.Sleep(25 * time.Millisecond)
			}
			if err != nil || got.Pseudonym != sub.Pseudonym {
				t.Fatalf("Resolve after unseal = %v", err)
			}
		}()
		check(t, e.s)
		_, err := e.s.Resolve(ctx, acmeAlice)
		if !strings.Contains(err.Error(), "sealed") {
			t.Fatalf("error does not say Vault is sealed: %v", err)
		}
	})
}

func noLeak(t *testing.T, what string, err error) {
	t.Helper()
	wantErr(t, what, err, vault.ErrUnavailable)
	if errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("%s: %v also matches ErrNotFound: the gateway would drop the message", what, err)
	}
	msg := err.Error()
	for _, s := range []string{acmeAlice.User, seg(acmeAlice.User), "alice", "Alice", "0100001", "casino-1", "secret/"} {
		if strings.Contains(msg, s) {
			t.Fatalf("%s: error text quotes %q: %v", what, s, err)
		}
	}
}

func TestCheckAcceptsOnlyKVv2(t *testing.T) {
	d := needVault(t)
	kp := newKey(t)
	if err := d.Root.Sys().Mount("kv1-"+randomHex(3), &api.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	mounts, err := d.Root.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	var v1 string
	for path := range mounts {
		if strings.HasPrefix(path, "kv1-") {
			v1 = strings.TrimSuffix(path, "/")
		}
	}
	for _, tc := range []struct {
		mount string
		err   error
	}{{"secret", nil}, {v1, vault.ErrInvalid}, {"nothing-here", vault.ErrUnavailable}} {
		s, err := kv.New(d.Root, kp, kv.Options{Mount: tc.mount})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Check(ctx)
		if tc.err == nil && err != nil || !errors.Is(err, tc.err) {
			t.Errorf("Check(%s) = %v, want %v", tc.mount, err, tc.err)
		}
		if tc.mount == v1 {
			// Writes to KV v1 would ignore the check-and-set: refused.
			_, err := s.Put(ctx, acmeAlice, bob)
			wantErr(t, "Put to KV v1", err, vault.ErrInvalid)
			if sec, err := d.Root.Logical().List(v1 + "/"); err != nil || sec != nil {
				t.Errorf("a Put to KV v1 wrote something: %v, %v", sec, err)
			}
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	d := needVault(t)
	kp := newKey(t)
	for _, o := range []kv.Options{{Mount: "a/../b"}, {Prefix: "x y"}, {Prefix: "//"}, {TokenVersion: -1}} {
		if _, err := kv.New(d.Root, kp, o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	if _, err := kv.New(nil, kp, kv.Options{}); err == nil {
		t.Error("New with a nil client accepted")
	}
	if _, err := kv.New(d.Root, kp, kv.Options{Mount: "/secret/", Prefix: "team/blindpost"}); err != nil {
		t.Errorf("New with slashes: %v", err)
	}
}

// Two nodes create the same subjects at the same moment. Without
// check-and-set both would mint a pseudonym and one would be overwritten
// after it was reported; with it the loser adopts the winner's.
func TestConcurrentFirstPutsAgreeOnThePseudonym(t *testing.T) {
	e := newEnv(t)
	nodes := []*kv.Store{e.s, e.store(t, mustClient(t, dev.RootToken))}
	const subjects = 25
	for i := range subjects {
		ref := vault.Ref{Tenant: "acme", Brand: "casino-1", User: "new-" + strconv.Itoa(i)}
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			subs  [2]vault.Subject
			errs  [2]error
		)
		for n, s := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				subs[n], errs[n] = s.Put(ctx, ref, vault.Record{Email: fmt.Sprintf("new-%d-node%d@example.com", i, n)})
			}()
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("Puts of %s: %v, %v", ref.User, errs[0], errs[1])
		}
		got, err := e.s.Resolve(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if subs[0].Pseudonym != got.Pseudonym || subs[1].Pseudonym != got.Pseudonym {
			t.Fatalf("%s: nodes reported pseudonyms %s and %s, the store holds %s: an update was lost",
				ref.User, subs[0].Pseudonym, subs[1].Pseudonym, got.Pseudonym)
		}
		if _, cur := versions(t, e.raw, e.subjectKey(ref)); cur != 2 {
			t.Fatalf("%s at version %d after two Puts", ref.User, cur)
		}
	}
}

// gate holds the first index write of a node until released: a node that
// stalls between writing the record and indexing it.
type gate struct {
	next     http.RoundTripper
	once     sync.Once
	arrived  chan struct{}
	released chan struct{}
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/tokens/") {
		g.once.Do(func() {
			close(g.arrived)
			<-g.released
		})
	}
	return g.next.RoundTrip(r)
}

// A node stalls after writing its record, another node writes a newer one
// and indexes it, then the first node's index write lands: it must notice
// the newer version and take its own entry back.
func TestASlowNodeDoesNotLeaveAStaleIndexEntry(t *testing.T) {
	e := newEnv(t)
	mustPut(t, e.s, acmeAlice, vault.Record{Email: "first@example.com"})
	g := &gate{arrived: make(chan struct{}), released: make(chan struct{})}
	slowClient, err := dev.clientWith(dev.RootToken, func(cfg *api.Config) {
		g.next = cfg.HttpClient.Transport
		cfg.HttpClient.Transport = g
	})
	if err != nil {
		t.Fatal(err)
	}
	slow := e.store(t, slowClient)

	done := make(chan error, 1)
	go func() {
		_, err := slow.Put(ctx, acmeAlice, vault.Record{Email: "slow@example.com"})
		done <- err
	}()
	select {
	case <-g.arrived:
	case err := <-done:
		t.Fatalf("the slow node's Put finished without indexing: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the slow node never indexed")
	}
	mustPut(t, e.s, acmeAlice, vault.Record{Email: "fast@example.com"})
	close(g.released)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	got, err := e.s.Resolve(ctx, acmeAlice)
	if err != nil || got.Email != "fast@example.com" {
		t.Fatalf("Resolve = %+v, %v; want the fast node's record, written last", got, err)
	}
	want, _ := e.s.Tokenize(ctx, "acme", vault.KindEmail, "fast@example.com")
	if idx := indexed(t, e, "acme", "casino-1"); !slices.Equal(idx, []string{want}) {
		t.Fatalf("index holds %v, want only %v", idx, want)
	}
}
