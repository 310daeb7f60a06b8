package hashivault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The coalescer's scheduling, with a send function that records what it
// is given. The Vault round trip is covered by TestConcurrentCallsBatch.

func TestCoalescerBoundsInFlightAndBatchSize(t *testing.T) {
	const max, size, calls = 2, 8, 50
	c := newCoalescer(max, size)
	var inflight, peak, sends, items atomic.Int64
	release := make(chan struct{})
	send := func(_ context.Context, in []Item) ([]Result, error) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		inflight.Add(-1)
		sends.Add(1)
		items.Add(int64(len(in)))
		if len(in) > size {
			t.Errorf("batch of %d > %d", len(in), size)
		}
		out := make([]Result, len(in))
		for i, it := range in {
			out[i].Data = append([]byte("r:"), it.Data...)
		}
		return out, nil
	}
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			in := fmt.Appendf(nil, "item-%d", i)
			r, err := c.do(context.Background(), batchKey{op: "x"}, Item{Data: in}, send)
			if err != nil || !bytes.Equal(r.Data, append([]byte("r:"), in...)) {
				t.Errorf("call %d got %q, %v", i, r.Data, err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // let every call queue
	close(release)
	wg.Wait()
	if peak.Load() > max {
		t.Fatalf("%d sends in flight, max %d", peak.Load(), max)
	}
	if items.Load() != calls || sends.Load() >= calls {
		t.Fatalf("%d items in %d sends: want %d items in fewer sends", items.Load(), sends.Load(), calls)
	}
	// The last runner frees its slot just after delivering its results.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		left := len(c.qs)
		c.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d queues left", left)
		}
	}
}

func TestCoalescerErrorReachesEveryCallOfTheBatch(t *testing.T) {
	c := newCoalescer(1, 16)
	boom := errors.New("boom")
	gate := make(chan struct{})
	send := func(_ context.Context, in []Item) ([]Result, error) {
		<-gate
		return nil, boom
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 5 {
		wg.Go(func() {
			r, err := c.do(context.Background(), batchKey{op: "x"}, Item{}, send)
			if err == nil && errors.Is(r.Err, boom) {
				failed.Add(1)
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	close(gate)
	wg.Wait()
	if failed.Load() != 5 {
		t.Fatalf("%d of 5 calls saw the batch error", failed.Load())
	}
}

func TestCoalescerCallerLeavesOnCancel(t *testing.T) {
	c := newCoalescer(1, 16)
	gate := make(chan struct{})
	defer close(gate)
	send := func(_ context.Context, in []Item) ([]Result, error) {
		<-gate
		return make([]Result, len(in)), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := c.do(ctx, batchKey{op: "x"}, Item{}, send)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a canceled caller still waits for its batch")
	}
}
