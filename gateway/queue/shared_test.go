package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway/queue"
)

// The queue's nonce check answers as the gateway's memory replay cache
// does, step by step: a nonce is a replay until it expires, per tenant.
func TestCheckNonceAnswersAsTheMemoryCache(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		c := newClock()
		q := b.queue(c)
		mem := envelope.NewMemoryReplayCache(c.Now)
		t0 := c.Now()
		steps := []struct {
			name    string
			advance time.Duration
			tenant  string
			nonce   string
			until   time.Time
			replay  bool
		}{
			{"first use", 0, "t1", "n1", t0.Add(10 * time.Minute), false},
			{"same nonce again", time.Minute, "t1", "n1", t0.Add(11 * time.Minute), true},
			{"same nonce, other tenant", 0, "t2", "n1", t0.Add(11 * time.Minute), false},
			{"other nonce", 0, "t1", "n2", t0.Add(time.Minute), false},
			{"at its expiry it is still a replay", 9 * time.Minute, "t1", "n1", t0.Add(20 * time.Minute), true},
			{"after its expiry it is new", time.Nanosecond, "t1", "n1", t0.Add(20 * time.Minute), false},
			{"and recorded anew", time.Minute, "t1", "n1", t0.Add(30 * time.Minute), true},
		}
		for _, s := range steps {
			c.Advance(s.advance)
			got := q.Check(ctx, s.tenant, []byte(s.nonce), s.until)
			want := mem.Check(ctx, s.tenant, []byte(s.nonce), s.until)
			if !errors.Is(got, want) || (want == nil) != (got == nil) {
				t.Fatalf("%s: queue says %v, memory cache says %v", s.name, got, want)
			}
			if errors.Is(got, envelope.ErrReplay) != s.replay || (!s.replay && got != nil) {
				t.Fatalf("%s: %v, want replay %v", s.name, got, s.replay)
			}
		}

		// Expired nonces are deleted: by Prune, and by a check once a
		// minute (so the table does not grow between Prunes).
		c.Advance(time.Hour)
		if err := q.CheckNonce(ctx, "t1", []byte("n3"), c.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if n, err := q.RowsForTest(ctx, "nonces"); err != nil || n != 1 {
			t.Fatalf("%d nonces kept after they expired (%v), want only the new one", n, err)
		}
		c.Advance(2 * time.Minute)
		if _, err := q.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := q.RowsForTest(ctx, "nonces"); err != nil || n != 0 {
			t.Fatalf("%d nonces kept after Prune (%v)", n, err)
		}
	})
}

// A nonce check that cannot decide fails closed, as retryable.
func TestCheckNonceFailsClosed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.queue(nil)
		q.Close()
		err := q.CheckNonce(context.Background(), "t1", []byte("n1"), time.Now().Add(time.Minute))
		if !errors.Is(err, envelope.ErrUnavailable) || errors.Is(err, envelope.ErrReplay) {
			t.Fatalf("check on a closed queue: %v, want ErrUnavailable", err)
		}
	})
}

// The volume counters sum the minute ending now, in whole seconds, as the
// gateway's in-memory window (rate.go) does.
func TestAddVolumeCountsTheLastMinute(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		c := newClock()
		q := b.queue(c)
		t0 := c.Now().Truncate(time.Second)
		steps := []struct {
			at     time.Duration
			tenant string
			n      int
			want   int
		}{
			{0, "t1", 5, 5},
			{500 * time.Millisecond, "t1", 1, 6}, // the same second
			{30 * time.Second, "t1", 3, 9},
			{30 * time.Second, "t2", 7, 7}, // tenants apart
			{59 * time.Second, "t1", 1, 10},
			{60 * time.Second, "t1", 0, 4}, // the first second fell out
			{89 * time.Second, "t1", 0, 4},
			{90 * time.Second, "t1", 0, 1},
			{119 * time.Second, "t1", 0, 0},
		}
		for _, s := range steps {
			got, err := q.AddVolume(ctx, s.tenant, t0.Add(s.at), s.n)
			if err != nil {
				t.Fatal(err)
			}
			if got != s.want {
				t.Fatalf("at +%v, %s adds %d: total %d, want %d", s.at, s.tenant, s.n, got, s.want)
			}
		}
		if _, err := q.AddVolume(ctx, "", t0, 1); !errors.Is(err, queue.ErrInvalid) {
			t.Fatalf("empty tenant: %v, want ErrInvalid", err)
		}

		// Counters out of every window are deleted.
		c.Advance(10 * time.Minute)
		if _, err := q.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := q.RowsForTest(ctx, "volume"); err != nil || n != 0 {
			t.Fatalf("%d volume counters kept (%v)", n, err)
		}
	})
}
