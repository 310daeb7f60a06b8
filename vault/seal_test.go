package vault_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/blindpost/blindpost/vault"
)

// Seal's output opens only under the same key and associated data; any
// change to it, or a foreign format byte, is ErrCorrupt.
func TestSealOpen(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	ad := vault.AssociatedData(vault.Ref{Tenant: "t", Brand: "b", User: "u"}, 1)
	sealed, err := vault.Seal(key, []byte("record"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := vault.Open(key, sealed, ad); err != nil || string(pt) != "record" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	otherAD := vault.AssociatedData(vault.Ref{Tenant: "t", Brand: "b", User: "v"}, 1)
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	format := bytes.Clone(sealed)
	format[0] = 2
	for name, c := range map[string]struct{ key, sealed, ad []byte }{
		"another subject": {key, sealed, otherAD},
		"another key":     {bytes.Repeat([]byte{8}, 32), sealed, ad},
		"flipped bit":     {key, flipped, ad},
		"unknown format":  {key, format, ad},
		"truncated":       {key, sealed[:20], ad},
	} {
		if _, err := vault.Open(c.key, c.sealed, c.ad); !errors.Is(err, vault.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}
