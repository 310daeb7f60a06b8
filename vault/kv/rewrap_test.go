package kv_test

import (
	"errors"
	"testing"

	"github.com/blindpost/blindpost/vault"
)

// The KV store seals nothing with the KEK: a re-wrap pass has nothing to
// do, and the records are there, unchanged, before and after it.
func TestRewrapHasNoDataKeysToMove(t *testing.T) {
	e := newEnv(t)
	ref := vault.Ref{Tenant: "acme", Brand: "casino-1", User: "u-1"}
	mustPut(t, e.s, ref, vault.Record{Email: "kv.rewrap@example.com"})
	var rw vault.Rewrapper = e.s
	st, err := rw.Rewrap(ctx, "acme", vault.RewrapOptions{})
	if err != nil || st != (vault.RewrapStats{}) {
		t.Fatalf("Rewrap = %+v, %v; want zero stats", st, err)
	}
	rec, err := e.s.Resolve(ctx, ref)
	if err != nil || rec.Email != "kv.rewrap@example.com" {
		t.Fatalf("Resolve after Rewrap: %v", err)
	}
	if _, err := rw.Rewrap(ctx, "", vault.RewrapOptions{}); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("Rewrap of an empty tenant id: %v", err)
	}
}
