package compat

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
)

type nopAcceptor struct{}

func (nopAcceptor) AcceptCompat(context.Context, *Tenant, Request) (string, error) {
	return "bpm_x", nil
}

// TestAuthenticateComparesEverySecret exercises the constant-time lookup
// with the matching secret at every position of the table, several secrets
// per tenant, and near misses; the loop has no early exit, so the match's
// position cannot show in the time taken.
func TestAuthenticateComparesEverySecret(t *testing.T) {
	var ts []*Tenant
	for i := range 8 {
		ts = append(ts, &Tenant{
			ID:            fmt.Sprintf("t%d", i),
			Secrets:       [][]byte{fmt.Appendf(nil, "secret-%02d-first-000", i), fmt.Appendf(nil, "secret-%02d-second-00", i)},
			AllowIPs:      []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")},
			CallbackAllow: []string{"https://cb.test/"},
			EmailEnabled:  i%2 == 0, SMSEnabled: i%2 == 1,
		})
	}
	h, err := New(ts, nopAcceptor{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.keys) != 16 {
		t.Fatalf("%d keys, want 16", len(h.keys))
	}
	for _, tn := range ts {
		for _, s := range tn.Secrets {
			got := h.authenticate(string(s))
			if got == nil || got.pub.ID != tn.ID {
				t.Errorf("secret of %s authenticated as %v", tn.ID, got)
			}
			// Same length, one bit off; and one byte longer.
			near := append([]byte(nil), s...)
			near[len(near)-1] ^= 1
			if h.authenticate(string(near)) != nil || h.authenticate(string(s)+"0") != nil {
				t.Errorf("near miss of %s authenticated", tn.ID)
			}
		}
	}
	if h.authenticate("") != nil {
		t.Error("empty header authenticated")
	}
}

func TestUIDHash(t *testing.T) {
	// The first 8 bytes of SHA-256("e-0001"), pinned so the gateway can log
	// the same value (printf e-0001 | sha256sum).
	if got, want := UIDHash("e-0001"), "f87f535f94af4f71"; got != want {
		t.Fatalf("UIDHash = %q, want %q", got, want)
	}
}
