package hashivault_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/hashivault"
)

func wantVersions(t *testing.T, gotV, gotLatest int, err error, v, latest int) {
	t.Helper()
	if err != nil || gotV != v || gotLatest != latest {
		t.Fatalf("KEKVersion = %d, %d, %v; want %d, %d", gotV, gotLatest, err, v, latest)
	}
}

func TestKEKVersionFollowsRotations(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	other := rootProvider(t, s) // another operator's process
	tenant := setupTenant(t, p, "kv")
	dk, ad := dataKey(t), refAD(tenant, "u-1", 1)
	v1, err := p.Wrap(ctx, tenant, dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	got, latest, err := p.KEKVersion(ctx, tenant, v1)
	wantVersions(t, got, latest, err, 1, 1)

	// This process's own rotation is seen at once, not after the cache.
	if _, err := p.RotateKEK(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	got, latest, err = p.KEKVersion(ctx, tenant, v1)
	wantVersions(t, got, latest, err, 1, 2)

	// Another process's rotation: a key wrapped by the new version makes
	// the cache look again at once.
	if _, err := other.RotateKEK(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	v3, err := other.Wrap(ctx, tenant, dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	got, latest, err = p.KEKVersion(ctx, tenant, v3)
	wantVersions(t, got, latest, err, 3, 3)
	got, latest, err = p.KEKVersion(ctx, tenant, v1)
	wantVersions(t, got, latest, err, 1, 3)

	// vault.RewrapKey leaves a current key alone and moves an old one.
	same, changed, v, err := vault.RewrapKey(ctx, p, tenant, v3, ad)
	if err != nil || changed || v != 3 || !bytes.Equal(same, v3) {
		t.Fatalf("RewrapKey(current) = changed %v, version %d, %v", changed, v, err)
	}
	moved, changed, v, err := vault.RewrapKey(ctx, p, tenant, v1, ad)
	if err != nil || !changed || v != 3 || !bytes.HasPrefix(moved, []byte("vault:v3:")) {
		t.Fatalf("RewrapKey(old) = changed %v, version %d, %.10q, %v", changed, v, moved, err)
	}
	if got, err := p.Unwrap(ctx, tenant, moved, ad); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("re-wrapped key: %v", err)
	}

	_, _, err = p.KEKVersion(ctx, tenant, []byte("not a ciphertext"))
	wantKind(t, err, vault.ErrCorrupt)
	_, _, err = p.KEKVersion(ctx, "no/such tenant", v1)
	wantKind(t, err, vault.ErrInvalid)
}

func TestKEKVersionNeedsReadOnTheKey(t *testing.T) {
	s := needVault(t)
	root := rootProvider(t, s)
	tenant := setupTenant(t, root, "kvp")
	cfg := baseConfig(s)
	policy, err := hashivault.GatewayPolicy(cfg, tenant)
	if err != nil {
		t.Fatal(err)
	}
	gw := mustNew(t, cfg, hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", policyToken(t, s, policy, nil))})
	w, err := gw.Wrap(ctx, tenant, dataKey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The gateway's own policy cannot read the key: the error says it is
	// a permission problem, retryable once fixed, not a bad key.
	_, _, err = gw.KEKVersion(ctx, tenant, w)
	wantKind(t, err, vault.ErrUnavailable)
}

func TestRewrapKeysReportsItemsAlone(t *testing.T) {
	s := needVault(t)
	p := rootProvider(t, s)
	tenant := setupTenant(t, p, "rwk")
	dk := dataKey(t)
	ad1, ad2 := refAD(tenant, "u-1", 1), refAD(tenant, "u-2", 1)
	w, err := p.Wrap(ctx, tenant, dk, ad1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.RotateKEK(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	out, errs, err := p.RewrapKeys(ctx, tenant, [][]byte{w, w, []byte("junk")}, [][]byte{ad1, ad2, ad1})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || !bytes.HasPrefix(out[0], []byte("vault:v2:")) {
		t.Fatalf("item 0: %.10q, %v", out[0], errs[0])
	}
	wantKind(t, errs[1], vault.ErrCorrupt, dk)
	wantKind(t, errs[2], vault.ErrCorrupt, dk)
	if out[1] != nil || out[2] != nil {
		t.Fatal("a failed item has a result")
	}
	if got, err := p.Unwrap(ctx, tenant, out[0], ad1); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("re-wrapped key: %v", err)
	}
	if _, _, err := p.RewrapKeys(ctx, tenant, [][]byte{w}, nil); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("RewrapKeys with too few associated data: %v", err)
	}
}
