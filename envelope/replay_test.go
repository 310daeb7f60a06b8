package envelope_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/blindpost/blindpost/envelope"
)

func TestMemoryReplayCache(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1767225600, 0)
	c := envelope.NewMemoryReplayCacheSize(func() time.Time { return now }, 2)
	n1, n2, n3 := []byte("nonce-1_________"), []byte("nonce-2_________"), []byte("nonce-3_________")
	until := now.Add(time.Minute)

	if err := c.Check(ctx, "t", n1, until); err != nil {
		t.Fatal(err)
	}
	t.Run("a seen nonce is a replay", func(t *testing.T) {
		if err := c.Check(ctx, "t", n1, until); !errors.Is(err, envelope.ErrReplay) {
			t.Fatalf("got %v, want ErrReplay", err)
		}
	})
	t.Run("nonces are per tenant", func(t *testing.T) {
		if err := c.Check(ctx, "u", n1, until); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a full cache refuses rather than forgets", func(t *testing.T) {
		if err := c.Check(ctx, "t", n2, until); !errors.Is(err, envelope.ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
		if err := c.Check(ctx, "t", n1, until); !errors.Is(err, envelope.ErrReplay) {
			t.Fatalf("a remembered nonce while full: %v, want ErrReplay", err)
		}
	})
	t.Run("a nonce is remembered until its time, then evicted", func(t *testing.T) {
		now = until
		if err := c.Check(ctx, "t", n1, until.Add(time.Minute)); !errors.Is(err, envelope.ErrReplay) {
			t.Fatalf("at its expiry: %v, want ErrReplay", err)
		}
		now = until.Add(time.Second)
		for _, n := range [][]byte{n2, n3} {
			if err := c.Check(ctx, "t", n, now.Add(time.Minute)); err != nil {
				t.Fatalf("after expiry: %v", err)
			}
		}
	})
}
