package vault_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/blindpost/blindpost/vault"
)

// versionedMAC is a KeyProvider with one token key per version.
type versionedMAC struct{ keyedMAC }

func (k versionedMAC) TokenMAC(_ context.Context, tenant string, version int, msg []byte) ([]byte, error) {
	m := hmac.New(sha256.New, k.keyedMAC)
	fmt.Fprintf(m, "%s\x00%d\x00", tenant, version)
	m.Write(msg)
	return m.Sum(nil), nil
}

// batchMAC adds TokenMACBatch, as the Transit provider has, and counts its
// calls (which may come at once).
type batchMAC struct {
	versionedMAC
	calls *atomic.Int32
}

func (k batchMAC) TokenMACBatch(ctx context.Context, tenant string, version int, msgs [][]byte) ([][]byte, error) {
	k.calls.Add(1)
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i], _ = k.TokenMAC(ctx, tenant, version, m)
	}
	return out, nil
}

// The batched pairs are the pairs Tokenize mints one by one, record by
// record, and a record with a value that does not normalise fails alone.
func TestRecordsTokenPairsInBatchesMatchTokenize(t *testing.T) {
	ctx := context.Background()
	recs := []vault.Record{
		{Email: "A.Player@Example.com", Phone: "+1 555 010 0001", TelegramChatID: "4242"},
		{FirstName: "No addresses"},
		{Email: "not an address"},
		{Phone: "0015550100002"},
	}
	single := versionedMAC{keyedMAC("a test token key")}
	var calls atomic.Int32
	for name, kp := range map[string]vault.KeyProvider{"one by one": single, "batched": batchMAC{single, &calls}} {
		t.Run(name, func(t *testing.T) {
			pairs, errs, err := vault.RecordsTokenPairs(ctx, kp, "acme", 1, 2, recs)
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(errs[2], vault.ErrInvalid) || errs[0] != nil || errs[1] != nil || errs[3] != nil {
				t.Fatalf("errs = %v; want only record 2's, matching ErrInvalid", errs)
			}
			for i, rec := range recs {
				if i == 2 {
					continue
				}
				want, err := vault.RecordTokenPairs(ctx, single, "acme", 1, 2, rec)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(pairs[i]) != fmt.Sprint(want) {
					t.Fatalf("record %d: %v, want %v", i, pairs[i], want)
				}
			}
			old, _ := vault.Tokenize(ctx, single, "acme", 1, vault.KindEmail, "a.player@example.com")
			neu, _ := vault.Tokenize(ctx, single, "acme", 2, vault.KindEmail, "a.player@example.com")
			if pairs[0][0] != (vault.TokenPair{Kind: vault.KindEmail, Old: old, New: neu}) {
				t.Fatalf("first pair %+v, want %s → %s", pairs[0][0], old, neu)
			}
		})
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d TokenMACBatch calls, want one per version", n)
	}
}

func TestTokenLikeMatchesOneVersionAndKind(t *testing.T) {
	kp := versionedMAC{keyedMAC("k")}
	tok := func(kind vault.Kind, v int) string {
		s, err := vault.Tokenize(context.Background(), kp, "acme", v, kind, map[vault.Kind]string{
			vault.KindEmail: "x@example.com", vault.KindPhone: "+15550100001", vault.KindTelegram: "42",
		}[kind])
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// LIKE with '\' as escape, as SQLite and PostgreSQL read it.
	like := func(pattern, s string) bool {
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(pattern); i++ {
			switch c := pattern[i]; c {
			case '\\':
				i++
				re.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
			case '%':
				re.WriteString(".*")
			case '_':
				re.WriteString(".")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		return regexp.MustCompile(re.String() + "$").MatchString(s)
	}
	for _, tc := range []struct {
		kind    vault.Kind
		v       int
		token   string
		matches bool
	}{
		{vault.KindEmail, 1, tok(vault.KindEmail, 1), true},
		{vault.KindEmail, 1, tok(vault.KindEmail, 12), false},
		{vault.KindEmail, 12, tok(vault.KindEmail, 1), false},
		{vault.KindEmail, 1, tok(vault.KindPhone, 1), false},
		{"", 1, tok(vault.KindTelegram, 1), true},
		{"", 1, tok(vault.KindTelegram, 2), false},
		{"", 2, tok(vault.KindPhone, 2), true},
	} {
		if got := like(vault.TokenLike(tc.kind, tc.v), tc.token); got != tc.matches {
			t.Errorf("TokenLike(%q, %d) on %s = %v", tc.kind, tc.v, tc.token, got)
		}
		if tc.matches && vault.TokenVersionOf(tc.token) != tc.v {
			t.Errorf("TokenVersionOf(%s) = %d", tc.token, vault.TokenVersionOf(tc.token))
		}
	}
}

func TestTokenVersionChecks(t *testing.T) {
	for _, tc := range []struct {
		pinned int
		extra  []int
		ok     bool
	}{
		{1, nil, true},
		{1, []int{2}, true},
		{2, []int{1, 1}, true},
		{0, nil, false},
		{1, []int{1}, false},
		{1, []int{0}, false},
	} {
		if _, err := vault.CheckTokenVersions(tc.pinned, tc.extra); (err == nil) != tc.ok {
			t.Errorf("CheckTokenVersions(%d, %v) = %v", tc.pinned, tc.extra, err)
		}
	}
	for _, tc := range []struct {
		opts vault.RetokenOptions
		ok   bool
	}{
		{vault.RetokenOptions{From: 1, To: 2}, true},  // to an extra version
		{vault.RetokenOptions{From: 2, To: 1}, true},  // to the pinned one
		{vault.RetokenOptions{From: 1, To: 3}, false}, // Puts would not index 3
		{vault.RetokenOptions{From: 1, To: 1}, false},
		{vault.RetokenOptions{From: 0, To: 2}, false},
	} {
		opts, err := vault.CheckRetoken(tc.opts, 1, []int{2}, 256)
		if (err == nil) != tc.ok || err == nil && opts.Batch != 256 {
			t.Errorf("CheckRetoken(%+v) = %+v, %v", tc.opts, opts, err)
		}
	}
	for v, ok := range map[int]bool{1: false, 2: false, 3: true, 0: false} {
		if err := vault.CheckDropVersion(v, 1, []int{2}); (err == nil) != ok {
			t.Errorf("CheckDropVersion(%d) = %v", v, err)
		}
	}
}
