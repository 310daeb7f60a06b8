package hashivault_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
	"github.com/blindpost/blindpost/vault/hashivault"
)

func dataKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func refAD(tenant, user string, version int64) []byte {
	return vault.AssociatedData(vault.Ref{Tenant: tenant, Brand: "brand-1", User: user}, version)
}

func TestWrapUnwrapRoundTrip(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	tenant := setupTenant(t, p, "rt")
	for _, tc := range []struct {
		name string
		ad   []byte
		size int
	}{
		{"subject AD", refAD(tenant, "u-1", 1), 32},
		{"key check AD", []byte("blindpost-keycheck-v1"), 32},
		{"long AD", bytes.Repeat([]byte{0xff, 0}, 300), 32},
		{"64-byte key", refAD(tenant, "u-2", 7), 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dk := make([]byte, tc.size)
			rand.Read(dk)
			w, err := p.Wrap(ctx, tenant, dk, tc.ad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(w, []byte("vault:v1:")) {
				t.Fatalf("wrapped key %.12q... is not a v1 Transit ciphertext", w)
			}
			if bytes.Contains(w, dk) || bytes.Contains(w, []byte(base64.StdEncoding.EncodeToString(dk))) {
				t.Fatal("wrapped key holds the data key")
			}
			if v, err := hashivault.CiphertextVersion(w); err != nil || v != 1 {
				t.Fatalf("CiphertextVersion = %d, %v", v, err)
			}
			got, err := p.Unwrap(ctx, tenant, w, tc.ad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, dk) {
				t.Fatal("unwrapped key differs")
			}
			w2, err := p.Wrap(ctx, tenant, dk, tc.ad)
			if err != nil || bytes.Equal(w, w2) {
				t.Fatalf("second wrap equal to first (nonce reuse?) or failed: %v", err)
			}
		})
	}
}

func TestUnwrapRejectsWrongBindingAsCorrupt(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	tenant := setupTenant(t, p, "bind")
	other := setupTenant(t, p, "bind-other")
	dk := dataKey(t)
	ad := refAD(tenant, "u-1", 3)
	w, err := p.Wrap(ctx, tenant, dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(w)
	i := len("vault:v1:") + 20
	tampered[i] = map[bool]byte{true: 'B', false: 'A'}[tampered[i] == 'A']
	local := filepath.Join(t.TempDir(), "k")
	if err := embedded.GenerateKeyFile(local); err != nil {
		t.Fatal(err)
	}
	lkp, err := embedded.NewKeyFileProvider(local)
	if err != nil {
		t.Fatal(err)
	}
	localWrapped, err := lkp.Wrap(ctx, tenant, dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		tenant  string
		wrapped []byte
		ad      []byte
		reason  string
	}{
		{"other user", tenant, w, refAD(tenant, "u-2", 3), "tampered, or bound to another subject"},
		{"older record version", tenant, w, refAD(tenant, "u-1", 2), "tampered, or bound"},
		{"no associated data", tenant, w, nil, "tampered, or bound"},
		{"tampered ciphertext", tenant, tampered, ad, "tampered, or bound"},
		{"other tenant's key", other, w, ad, "tampered, or bound"},
		{"truncated", tenant, w[:len(w)-8], ad, ""},
		{"not a Transit ciphertext", tenant, localWrapped, ad, "not a Transit ciphertext"},
		{"version prefix only", tenant, []byte("vault:v1:"), ad, "not a Transit ciphertext"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Unwrap(ctx, tc.tenant, tc.wrapped, tc.ad)
			if got != nil {
				t.Fatal("returned a key")
			}
			wantKind(t, err, vault.ErrCorrupt, dk, w, tc.wrapped, ad)
			if errors.Is(err, vault.ErrUnavailable) {
				t.Fatal("a decryption failure must not be retryable")
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err %q lacks %q", err, tc.reason)
			}
		})
	}
}

func TestInvalidTenantNeverReachesVault(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	for _, tenant := range []string{"", "../sys", "a/b", "acme*", "-x", "t\x00", "é", strings.Repeat("a", 65), "a.b", "a b"} {
		if _, err := p.Wrap(ctx, tenant, dataKey(t), []byte("ad")); !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("Wrap(tenant %q) = %v, want ErrInvalid", tenant, err)
		}
		if _, err := p.TokenMAC(ctx, tenant, 1, []byte("m")); !errors.Is(err, vault.ErrInvalid) {
			t.Errorf("TokenMAC(tenant %q) = %v, want ErrInvalid", tenant, err)
		}
	}
}

func TestTokenMACPinnedVersion(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	tenant := setupTenant(t, p, "mac")
	if p.TokenVersion() != 1 {
		t.Fatalf("TokenVersion = %d, want the default pin 1", p.TokenVersion())
	}
	msg := []byte("email\x00player@example.com")
	m1, err := p.TokenMAC(ctx, tenant, 1, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(m1) != 32 {
		t.Fatalf("MAC is %d bytes", len(m1))
	}
	again, _ := p.TokenMAC(ctx, tenant, 1, msg)
	other, _ := p.TokenMAC(ctx, tenant, 1, []byte("email\x00other@example.com"))
	if !bytes.Equal(m1, again) || bytes.Equal(m1, other) {
		t.Fatal("MAC is not a deterministic function of the message")
	}
	tok1, err := vault.Tokenize(ctx, p, tenant, p.TokenVersion(), vault.KindEmail, " Player@Example.com ")
	if err != nil || !strings.HasPrefix(tok1, "tok_email_v1_") {
		t.Fatalf("Tokenize = %q, %v", tok1, err)
	}

	// The token key's MAC of version 2 does not exist yet: a pinned
	// version ahead of the key is an operator error, retried, not minted.
	_, err = p.TokenMAC(ctx, tenant, 2, msg)
	wantKind(t, err, vault.ErrUnavailable, msg)

	v, err := p.RotateTokenKey(ctx, tenant)
	if err != nil || v != 2 {
		t.Fatalf("RotateTokenKey = %d, %v", v, err)
	}
	after, err := p.TokenMAC(ctx, tenant, 1, msg)
	if err != nil || !bytes.Equal(after, m1) {
		t.Fatalf("pinned version 1 changed after rotation (err %v)", err)
	}
	tokAfter, _ := vault.Tokenize(ctx, p, tenant, p.TokenVersion(), vault.KindEmail, "player@example.com")
	if tokAfter != tok1 {
		t.Fatalf("token changed after rotation: %s != %s", tokAfter, tok1)
	}
	m2, err := p.TokenMAC(ctx, tenant, 2, msg)
	if err != nil || bytes.Equal(m2, m1) {
		t.Fatalf("version 2 MAC equals version 1 or failed: %v", err)
	}

	// A provider pinned to version 2 mints v2 tokens.
	cfg := baseConfig(s)
	cfg.TokenKeyVersion = 2
	p2 := mustNew(t, cfg, hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", s.RootToken)})
	tok2, err := vault.Tokenize(ctx, p2, tenant, p2.TokenVersion(), vault.KindEmail, "player@example.com")
	if err != nil || !strings.HasPrefix(tok2, "tok_email_v2_") || tok2[len("tok_email_v2_"):] == tok1[len("tok_email_v1_"):] {
		t.Fatalf("v2 token %q (err %v) vs v1 %q", tok2, err, tok1)
	}
}

func TestTokenMACBatchMatchesSingle(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	tenant := setupTenant(t, p, "macb")
	msgs := make([][]byte, 300) // more than one request of BatchSize 256
	for i := range msgs {
		msgs[i] = fmt.Appendf(nil, "phone\x00+1555010%04d", i)
	}
	macs, err := p.TokenMACBatch(ctx, tenant, 1, msgs)
	if err != nil || len(macs) != len(msgs) {
		t.Fatalf("TokenMACBatch: %d, %v", len(macs), err)
	}
	for _, i := range []int{0, 255, 256, 299} {
		one, err := p.TokenMAC(ctx, tenant, 1, msgs[i])
		if err != nil || !bytes.Equal(one, macs[i]) {
			t.Fatalf("item %d: batch MAC differs from single (%v)", i, err)
		}
	}
}

func TestBatchWrapUnwrap(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	tenant := setupTenant(t, p, "batch")
	const n = 600 // three requests of BatchSize 256
	items := make([]hashivault.Item, n)
	for i := range items {
		items[i] = hashivault.Item{Data: dataKey(t), AD: refAD(tenant, fmt.Sprint("u-", i), 1)}
	}
	wrapped, err := p.WrapBatch(ctx, tenant, items)
	if err != nil || len(wrapped) != n {
		t.Fatalf("WrapBatch: %d results, %v", len(wrapped), err)
	}
	in := make([]hashivault.Item, n)
	for i, r := range wrapped {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
		in[i] = hashivault.Item{Data: r.Data, AD: items[i].AD}
	}

	t.Run("all good", func(t *testing.T) {
		got, err := p.UnwrapBatch(ctx, tenant, in)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range got {
			if r.Err != nil || !bytes.Equal(r.Data, items[i].Data) {
				t.Fatalf("item %d: %v", i, r.Err)
			}
		}
	})
	t.Run("bad items fail alone", func(t *testing.T) {
		mixed := append([]hashivault.Item(nil), in...)
		mixed[3].AD = refAD(tenant, "intruder", 1)
		mixed[300] = hashivault.Item{Data: []byte("not a ciphertext"), AD: mixed[300].AD}
		mixed[599].AD = nil
		got, err := p.UnwrapBatch(ctx, tenant, mixed)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range got {
			switch i {
			case 3, 300, 599:
				if r.Data != nil {
					t.Fatalf("item %d opened", i)
				}
				wantKind(t, r.Err, vault.ErrCorrupt, items[i].Data, in[i].Data)
			default:
				if r.Err != nil || !bytes.Equal(r.Data, items[i].Data) {
					t.Fatalf("item %d: %v", i, r.Err)
				}
			}
		}
	})
	t.Run("every item bad", func(t *testing.T) {
		// Transit answers 400 when no item succeeds; each still fails alone.
		bad := []hashivault.Item{{Data: in[0].Data, AD: in[1].AD}, {Data: in[1].Data, AD: in[0].AD}}
		got, err := p.UnwrapBatch(ctx, tenant, bad)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range got {
			wantKind(t, r.Err, vault.ErrCorrupt, items[i].Data)
		}
	})
}

func TestRotateRewrapRetireTrim(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	tenant := setupTenant(t, p, "rot")
	kek, _ := p.KEKName(tenant)
	dk := dataKey(t)
	ad := refAD(tenant, "u-1", 1)
	old, err := p.Wrap(ctx, tenant, dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.RotateKEK(ctx, tenant)
	if err != nil || v != 2 {
		t.Fatalf("RotateKEK = %d, %v", v, err)
	}
	fresh, _ := p.Wrap(ctx, tenant, dk, ad)
	if cv, _ := hashivault.CiphertextVersion(fresh); cv != 2 {
		t.Fatalf("new wraps use version %d, want 2", cv)
	}
	// Before the re-wrap, the old version still decrypts.
	if got, err := p.Unwrap(ctx, tenant, old, ad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("old version no longer unwraps before re-wrap: %v", err)
	}

	res, err := p.Rewrap(ctx, tenant, []hashivault.Item{
		{Data: old, AD: ad},
		{Data: old, AD: refAD(tenant, "u-2", 1)}, // wrong binding fails alone
	})
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, res[1].Err, vault.ErrCorrupt, dk)
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	rewrapped := res[0].Data
	if !bytes.HasPrefix(rewrapped, []byte("vault:v2:")) {
		t.Fatalf("re-wrapped key %.10q does not name version 2", rewrapped)
	}
	if got, err := p.Unwrap(ctx, tenant, rewrapped, ad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("re-wrapped key does not unwrap: %v", err)
	}
	if _, err := p.Unwrap(ctx, tenant, rewrapped, refAD(tenant, "u-2", 1)); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("re-wrap lost the binding: %v", err)
	}

	// Retire version 1: the old wrapped key is refused, the new one opens.
	if err := p.SetMinDecryptionVersion(ctx, tenant, 2); err != nil {
		t.Fatal(err)
	}
	_, err = p.Unwrap(ctx, tenant, old, ad)
	wantKind(t, err, vault.ErrCorrupt, dk, old)
	if !strings.Contains(err.Error(), "retired") {
		t.Fatalf("err %q does not say the version is retired", err)
	}
	if _, err := p.Unwrap(ctx, tenant, rewrapped, ad); err != nil {
		t.Fatal(err)
	}
	if err := p.TrimKEK(ctx, tenant, 2); err != nil {
		t.Fatal(err)
	}
	st, err := p.KeyStatus(ctx, kek)
	if err != nil || st.MinAvailableVersion != 2 || st.LatestVersion != 2 || st.MinDecryptionVersion != 2 {
		t.Fatalf("KeyStatus = %+v, %v", st, err)
	}
	// Trimmed: lowering the minimum again cannot bring version 1 back.
	if err := p.SetMinDecryptionVersion(ctx, tenant, 1); err == nil {
		if _, err := p.Unwrap(ctx, tenant, old, ad); !errors.Is(err, vault.ErrCorrupt) {
			t.Fatalf("trimmed version still unwraps: %v", err)
		}
	}
}

// TestTransitRewrapIgnoresAssociatedData documents why Rewrap decrypts and
// encrypts instead of calling transit/rewrap: this Vault's rewrap endpoint
// drops associated_data (hashicorp/vault#29532). If this test fails, Vault
// fixed it: switch Rewrap to transit/rewrap, which keeps data keys inside
// Vault.
func TestTransitRewrapIgnoresAssociatedData(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	tenant := setupTenant(t, p, "canary")
	kek, _ := p.KEKName(tenant)
	ad := []byte("subject")
	w, err := p.Wrap(ctx, tenant, dataKey(t), ad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.RotateKEK(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	adb := base64.StdEncoding.EncodeToString(ad)
	_, err = s.Root.Logical().Write("transit/rewrap/"+kek, map[string]any{"ciphertext": string(w), "associated_data": adb})
	if err == nil {
		t.Fatal("transit/rewrap now accepts associated_data: switch Rewrap to it")
	}
	if !isHTTPStatus(err, 400) || !strings.Contains(err.Error(), "message authentication failed") {
		t.Fatalf("transit/rewrap failed differently than expected: %v", err)
	}
	// In a batch, the item fails alone, for the same reason.
	sec, err := s.Root.Logical().Write("transit/rewrap/"+kek, map[string]any{
		"batch_input": []map[string]any{{"ciphertext": string(w), "associated_data": adb}},
	})
	if err != nil {
		t.Fatal(err)
	}
	item := fmt.Sprint(sec.Data["batch_results"])
	if !strings.Contains(item, "message authentication failed") {
		t.Fatalf("batch rewrap item %s: transit/rewrap may now honour associated_data: switch Rewrap to it", item)
	}
}

func TestSetupIsIdempotentAndChecksKeys(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	tenant := setupTenant(t, p, "setup")
	created, err := p.Setup(ctx, tenant)
	if err != nil || len(created) != 0 {
		t.Fatalf("second Setup created %v, %v", created, err)
	}
	kek, _ := p.KEKName(tenant)
	tk, _ := p.TokenKeyName(tenant)
	st, err := p.KeyStatus(ctx, kek)
	if err != nil || st.Type != "aes256-gcm96" || st.Exportable || st.AllowPlaintextBackup {
		t.Fatalf("KEK status %+v, %v", st, err)
	}
	st, err = p.KeyStatus(ctx, tk)
	if err != nil || st.Type != "hmac" || st.Exportable {
		t.Fatalf("token key status %+v, %v", st, err)
	}

	t.Run("pinned token version ahead of the key", func(t *testing.T) {
		cfg := baseConfig(s)
		cfg.TokenKeyVersion = 3
		p3 := mustNew(t, cfg, hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", s.RootToken)})
		_, err := p3.Setup(ctx, tenant)
		wantKind(t, err, vault.ErrInvalid)
		if !strings.Contains(err.Error(), "token_key_version 3") {
			t.Fatalf("err %q does not name the pinned version", err)
		}
	})
	t.Run("exportable key refused", func(t *testing.T) {
		bad := newTenant("exp")
		name, _ := p.KEKName(bad)
		if _, err := s.Root.Logical().Write("transit/keys/"+name, map[string]any{"type": "aes256-gcm96", "exportable": true}); err != nil {
			t.Fatal(err)
		}
		_, err := p.Setup(ctx, bad)
		wantKind(t, err, vault.ErrInvalid)
	})
	t.Run("KEK without associated data", func(t *testing.T) {
		bad := newTenant("ed")
		name, _ := p.KEKName(bad)
		if _, err := s.Root.Logical().Write("transit/keys/"+name, map[string]any{"type": "ed25519"}); err != nil {
			t.Fatal(err)
		}
		_, err := p.Setup(ctx, bad)
		wantKind(t, err, vault.ErrInvalid)
	})
	t.Run("chacha20-poly1305 KEK", func(t *testing.T) {
		cfg := baseConfig(s)
		cfg.KeyType = "chacha20-poly1305"
		pc := mustNew(t, cfg, hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", s.RootToken)})
		ten := setupTenant(t, pc, "chacha")
		name, _ := pc.KEKName(ten)
		if st, err := pc.KeyStatus(ctx, name); err != nil || st.Type != "chacha20-poly1305" {
			t.Fatalf("status %+v, %v", st, err)
		}
		dk, ad := dataKey(t), []byte("ad")
		w, err := pc.Wrap(ctx, ten, dk, ad)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := pc.Unwrap(ctx, ten, w, ad); err != nil || !bytes.Equal(got, dk) {
			t.Fatalf("round trip: %v", err)
		}
		if _, err := pc.Unwrap(ctx, ten, w, []byte("other")); !errors.Is(err, vault.ErrCorrupt) {
			t.Fatalf("wrong AD: %v", err)
		}
	})
}

func TestMissingKeyIsUnavailable(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	tenant := newTenant("nokey") // never set up
	_, err := p.Unwrap(ctx, tenant, []byte("vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), []byte("ad"))
	wantKind(t, err, vault.ErrUnavailable)
	if !strings.Contains(err.Error(), "run setup") {
		t.Fatalf("err %q does not point to setup", err)
	}
	_, err = p.TokenMAC(ctx, tenant, 1, []byte("m"))
	wantKind(t, err, vault.ErrUnavailable)
	if _, err := p.KeyStatus(ctx, "blindpost-"+tenant+"-kek"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("KeyStatus of a missing key: %v", err)
	}
}

// TestConcurrentCallsBatch sends many concurrent single calls through a
// provider that lets one request per tenant and operation fly at a time,
// so most go out in shared batch_input requests: each caller must get its
// own answer, and a bad item must fail alone.
func TestConcurrentCallsBatch(t *testing.T) {
	s := needVault(t)
	cfg := baseConfig(s)
	cfg.MaxInFlight = 1
	p := mustNew(t, cfg, hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", s.RootToken)})
	tenant := setupTenant(t, p, "conc")
	const n = 64
	keys := make([][]byte, n)
	wrapped := make([][]byte, n)
	errs := make(chan error, 3*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			keys[i] = dataKey(t)
			w, err := p.Wrap(ctx, tenant, keys[i], refAD(tenant, fmt.Sprint("u-", i), 1))
			if err != nil {
				errs <- fmt.Errorf("wrap %d: %w", i, err)
			}
			wrapped[i] = w
		})
	}
	wg.Wait()
	for i := range n {
		wg.Go(func() {
			ad := refAD(tenant, fmt.Sprint("u-", i), 1)
			if i%10 == 3 {
				ad = refAD(tenant, "someone-else", 1)
			}
			got, err := p.Unwrap(ctx, tenant, wrapped[i], ad)
			switch {
			case i%10 == 3 && !errors.Is(err, vault.ErrCorrupt):
				errs <- fmt.Errorf("unwrap %d with a wrong AD: %v", i, err)
			case i%10 != 3 && (err != nil || !bytes.Equal(got, keys[i])):
				errs <- fmt.Errorf("unwrap %d: wrong key or %v", i, err)
			}
			mac, err := p.TokenMAC(ctx, tenant, 1, fmt.Appendf(nil, "m-%d", i))
			want, _ := p.TokenMACBatch(ctx, tenant, 1, [][]byte{fmt.Appendf(nil, "m-%d", i)})
			if err != nil || len(want) != 1 || !bytes.Equal(mac, want[0]) {
				errs <- fmt.Errorf("token mac %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
