package queue_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway/queue"
)

func TestConcurrentReservationsNeverOvershootACap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.open(queue.Options{})
		const n, limit = 40, 3
		counter := queue.Reservation{Key: "t1|s:u1|marketing/email", Window: 7 * 24 * time.Hour, Limit: limit}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var nAccepted, capped int
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("m%d", i)
				it := accepted("t1", id, "u1", request("t1", id))
				it.Reserve = []queue.Reservation{counter}
				outs, err := q.Accept(context.Background(), []queue.Item{it})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				switch o := outs[0]; {
				case o.Answer.Status == queue.StatusAccepted:
					nAccepted++
				case o.Answer.Code == queue.CodeFrequencyCap:
					capped++
				default:
					t.Errorf("%s: outcome %+v", id, o)
				}
			}()
		}
		wg.Wait()
		if nAccepted != limit || capped != n-limit {
			t.Fatalf("accepted %d, capped %d; want %d and %d", nAccepted, capped, limit, n-limit)
		}
		if got, _ := q.Len(context.Background()); got != limit {
			t.Fatalf("queue holds %d entries, want %d", got, limit)
		}
		if c, _ := q.Count(context.Background(), counter.Key, time.Now().Add(-counter.Window)); c != limit {
			t.Fatalf("Count = %d, want %d", c, limit)
		}
		// The capped answer is remembered like any final answer.
		it := accepted("t1", "m0", "u1", request("t1", "m0"))
		outs, _ := q.Accept(context.Background(), []queue.Item{it})
		if !outs[0].Duplicate {
			t.Fatalf("repeat of m0: %+v, want the remembered answer", outs[0])
		}
	})
}

func TestAckEventsRemovesThemAllInOneGo(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.open(queue.Options{})
		ctx := context.Background()
		var items []queue.Item
		for i := range 5 {
			id := fmt.Sprintf("m%d", i)
			it := accepted("t1", id, "u1", request("t1", id))
			it.Callback = &queue.Event{Status: "queued"}
			items = append(items, it)
		}
		if _, err := q.Accept(ctx, items); err != nil {
			t.Fatal(err)
		}
		evs, err := q.ClaimEvents(ctx, 10, time.Minute)
		if err != nil || len(evs) != 5 {
			t.Fatalf("claim events: %v (%d)", err, len(evs))
		}
		ids := []int64{evs[0].ID, evs[1].ID, evs[2].ID, 999999}
		if err := q.AckEvents(ctx, ids); err != nil {
			t.Fatal(err)
		}
		if err := q.AckEvent(ctx, evs[0].ID); err == nil {
			t.Fatal("an acked event is still there")
		}
		if err := q.RetryEvent(ctx, evs[3].ID, time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		evs, err = q.ClaimEvents(ctx, 10, time.Minute)
		if err != nil || len(evs) != 1 {
			t.Fatalf("after ack: %v, %d events due, want 1", err, len(evs))
		}
	})
}
