package queue_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway/queue"
)

// Several gateway nodes share one PostgreSQL queue. These tests run two
// nodes, two Queues on one schema, at once.

// twoNodes opens nodes "a" and "b" on one fresh PostgreSQL schema.
func twoNodes(t *testing.T, opts queue.Options) (a, b *queue.Queue, be backend) {
	t.Helper()
	be = newBackend(t, "postgres")
	oa, ob := opts, opts
	oa.Node, ob.Node = "a", "b"
	return be.open(oa), be.open(ob), be
}

// each runs f(node, i) for i in [0, n) on workers goroutines per node,
// all at once, and waits.
func each(nodes []*queue.Queue, workers, n int, f func(q *queue.Queue, i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, q := range nodes {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := w; i < n; i += workers {
					f(q, i)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
}

func TestTwoNodesClaimEveryEntryAndEventOnce(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoNodes(t, queue.Options{})
	const n = 2000
	var items []queue.Item
	for i := range n {
		id := fmt.Sprintf("m%04d", i)
		it := accepted("t1", id, "u1", request("t1", id))
		it.Callback = &queue.Event{Status: "queued"}
		items = append(items, it)
	}
	for c := range slices.Chunk(items, 500) {
		mustAccept(t, a, c...)
	}

	var mu sync.Mutex
	entries := map[string]int{} // ext id → times claimed
	events := map[int64]int{}   // event id → times claimed
	perNode := map[*queue.Queue]int{}
	each([]*queue.Queue{a, b}, 4, 1, func(q *queue.Queue, _ int) {
		for {
			es, err := q.Claim(ctx, 37, time.Hour)
			if err != nil {
				t.Error(err)
				return
			}
			evs, err := q.ClaimEvents(ctx, 41, time.Hour)
			if err != nil {
				t.Error(err)
				return
			}
			if len(es) == 0 && len(evs) == 0 {
				return
			}
			mu.Lock()
			for _, e := range es {
				entries[e.ExtID]++
				if e.Attempts != 1 {
					t.Errorf("entry %s claimed with attempt %d", e.ExtID, e.Attempts)
				}
			}
			for _, ev := range evs {
				events[ev.ID]++
			}
			perNode[q] += len(es)
			mu.Unlock()
		}
	})
	if len(entries) != n || len(events) != n {
		t.Fatalf("claimed %d entries and %d events, want %d of each", len(entries), len(events), n)
	}
	for ext, k := range entries {
		if k != 1 {
			t.Errorf("entry %s claimed %d times", ext, k)
		}
	}
	for id, k := range events {
		if k != 1 {
			t.Errorf("event %d claimed %d times", id, k)
		}
	}
	t.Logf("entries claimed: node a %d, node b %d", perNode[a], perNode[b])
}

func TestTwoNodesAcceptingTheSameIDsEnqueueEachOnce(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoNodes(t, queue.Options{})
	const n = 300
	nodes := []*queue.Queue{a, b}
	name := map[*queue.Queue]string{a: "a", b: "b"}
	// Each node mints its own ext ids, as gateway nodes do; node b goes
	// through the ids backwards, so the two cross (and may deadlock).
	item := func(q *queue.Queue, i int) queue.Item {
		if q == b {
			i = n - 1 - i
		}
		id := fmt.Sprintf("m%04d", i)
		it := accepted("t1", id, "u1", request("t1", id))
		ext := "ext_" + name[q] + "_" + id
		it.Answer.ExtMessageID, it.Entry.ExtID = ext, ext
		return it
	}
	var mu sync.Mutex
	outs := map[string][]queue.Outcome{}
	each(nodes, 3, n/10, func(q *queue.Queue, c int) {
		var items []queue.Item
		for i := c * 10; i < c*10+10; i++ {
			items = append(items, item(q, i))
		}
		got, err := q.Accept(ctx, items)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for i, o := range got {
			outs[items[i].ID] = append(outs[items[i].ID], o)
		}
	})
	if len(outs) != n {
		t.Fatalf("outcomes for %d ids, want %d", len(outs), n)
	}
	for id, os := range outs {
		if len(os) != 2 || os[0].Conflict || os[1].Conflict || os[0].Duplicate == os[1].Duplicate ||
			os[0].Answer != os[1].Answer || os[0].Answer.Status != queue.StatusAccepted {
			t.Fatalf("%s: outcomes %+v, want one first answer and one duplicate of it", id, os)
		}
	}
	mustLen(t, a, n)
	seen := map[string]bool{}
	for _, e := range mustClaim(t, b, 2*n, time.Hour) {
		if seen[e.MsgID] {
			t.Fatalf("%s enqueued twice", e.MsgID)
		}
		seen[e.MsgID] = true
		if want := outs[e.MsgID][0].Answer.ExtMessageID; e.ExtID != want {
			t.Fatalf("%s enqueued as %s, but answered as %s", e.MsgID, e.ExtID, want)
		}
	}
}

func TestTwoNodesNeverOvershootAFrequencyCap(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoNodes(t, queue.Options{})
	const n, limit = 30, 5
	other := queue.Reservation{Key: "t1|s:u1|marketing/any", Window: time.Hour, Limit: 1000}
	for round, user := range []string{"u1", "u2", "u3"} {
		counter := queue.Reservation{Key: "t1|s:" + user + "|marketing/email", Window: 24 * time.Hour, Limit: limit}
		var taken, capped atomic.Int32
		each([]*queue.Queue{a, b}, 10, n/2, func(q *queue.Queue, i int) {
			id := fmt.Sprintf("m%d-%d-%p", round, i, q)
			it := accepted("t1", id, user, request("t1", id))
			// Two counters, named in either order: taken in one order all the same.
			it.Reserve = []queue.Reservation{counter, other}
			if i%2 == 1 {
				it.Reserve = []queue.Reservation{other, counter}
			}
			outs, err := q.Accept(ctx, []queue.Item{it})
			if err != nil {
				t.Error(err)
				return
			}
			switch o := outs[0]; {
			case o.Answer.Status == queue.StatusAccepted:
				taken.Add(1)
			case o.Answer.Code == queue.CodeFrequencyCap:
				capped.Add(1)
			default:
				t.Errorf("%s: %+v", id, o)
			}
		})
		if taken.Load() != limit || capped.Load() != n-limit {
			t.Fatalf("%s: accepted %d, capped %d; want %d and %d", user, taken.Load(), capped.Load(), limit, n-limit)
		}
		for _, q := range []*queue.Queue{a, b} {
			if c, err := q.Count(ctx, counter.Key, time.Now().Add(-counter.Window)); err != nil || c != limit {
				t.Fatalf("%s: Count = %d, %v; want %d", user, c, err, limit)
			}
		}
	}
	mustLen(t, b, 3*limit)
}

// Events of one tenant written by both nodes at once, by every kind of
// write, are numbered 1, 2, 3, … without gaps, in the order they were
// committed (which is outbox order).
func TestTwoNodesNumberEventsWithoutGaps(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoNodes(t, queue.Options{})
	tenants := []string{"t1", "t2", "t3"}
	const per = 60 // writes of each kind per node
	// Entries to finish: each node claims its own share first.
	for _, tenant := range tenants {
		var items []queue.Item
		for i := range 2 * per / len(tenants) {
			id := fmt.Sprintf("pre%d", i)
			items = append(items, accepted(tenant, id, "u1", request(tenant, id)))
		}
		mustAccept(t, a, items...)
	}
	claimed := map[*queue.Queue][]queue.Entry{a: mustClaim(t, a, per, time.Hour), b: mustClaim(t, b, per, time.Hour)}
	if len(claimed[a]) != per || len(claimed[b]) != per {
		t.Fatalf("claimed %d and %d, want %d each", len(claimed[a]), len(claimed[b]), per)
	}
	name := map[*queue.Queue]string{a: "a", b: "b"}
	each([]*queue.Queue{a, b}, 6, per, func(q *queue.Queue, i int) {
		tenant := tenants[i%len(tenants)]
		switch i % 3 {
		case 0:
			if err := q.AddEvent(ctx, queue.Event{Tenant: tenant, MsgID: "x", Status: "unsubscribed"}); err != nil {
				t.Error(err)
			}
		case 1:
			id := fmt.Sprintf("new-%s-%d", name[q], i)
			it := accepted(tenant, id, "u1", request(tenant, id))
			it.Callback = &queue.Event{Status: "queued"}
			if _, err := q.Accept(ctx, []queue.Item{it}); err != nil {
				t.Error(err)
			}
		}
		// Every write also finishes an entry, of any tenant.
		if err := q.Finish(ctx, claimed[q][i].ExtID, queue.Event{Status: "sent"}); err != nil {
			t.Error(err)
		}
	})
	evs, err := a.ClaimEvents(ctx, 10*per, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2*per + 2*per*2/3; len(evs) != want {
		t.Fatalf("%d events, want %d", len(evs), want)
	}
	next := map[string]int64{}
	for _, ev := range evs { // outbox order
		next[ev.Tenant]++
		if ev.Seq != next[ev.Tenant] {
			t.Fatalf("tenant %s: event %d has seq %d, want %d", ev.Tenant, ev.ID, ev.Seq, next[ev.Tenant])
		}
	}
	t.Logf("last seqs: %v", next)
}

func TestReleaseLeasesEndsOnlyThisNodesLeases(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	a, b, be := twoNodes(t, queue.Options{Now: c.Now})
	var items []queue.Item
	for i := range 6 {
		id := fmt.Sprintf("m%d", i)
		it := accepted("t1", id, "u1", request("t1", id))
		it.Callback = &queue.Event{Status: "queued"}
		items = append(items, it)
	}
	mustAccept(t, a, items...)
	ofA, ofB := mustClaim(t, a, 3, time.Hour), mustClaim(t, b, 3, time.Hour)
	evA, err := a.ClaimEvents(ctx, 2, time.Hour)
	if err != nil || len(evA) != 2 {
		t.Fatalf("claim events: %d, %v", len(evA), err)
	}
	if _, err := b.ClaimEvents(ctx, 10, time.Hour); err != nil {
		t.Fatal(err)
	}
	ids := func(es []queue.Entry) []string {
		var s []string
		for _, e := range es {
			s = append(s, e.ExtID)
		}
		slices.Sort(s)
		return s
	}

	// Node a restarts: its own leases come back at once, b's stay.
	a.Close()
	a = be.open(queue.Options{Now: c.Now, Node: "a"})
	if err := a.ReleaseLeases(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ids(mustClaim(t, b, 10, time.Hour)); !slices.Equal(got, ids(ofA)) {
		t.Fatalf("after a's release, b claims %v, want a's entries %v", got, ids(ofA))
	}
	evs, err := b.ClaimEvents(ctx, 10, time.Hour)
	if err != nil || len(evs) != 2 || evs[0].ID != evA[0].ID || evs[1].ID != evA[1].ID {
		t.Fatalf("after a's release, b claims events %+v (%v), want a's %+v", evs, err, evA)
	}

	// Now b holds all six. Node b dies: nobody releases its leases, which
	// run out; then a claims them, and b's restart takes nothing back.
	if es := mustClaim(t, a, 10, time.Hour); len(es) != 0 {
		t.Fatalf("a claims %d entries leased by b", len(es))
	}
	c.Advance(time.Hour + time.Second)
	if got := mustClaim(t, a, 10, time.Hour); len(got) != 6 {
		t.Fatalf("a claims %d entries after b's leases ran out, want 6", len(got))
	}
	b.Close()
	b = be.open(queue.Options{Now: c.Now, Node: "b"})
	if err := b.ReleaseLeases(ctx); err != nil {
		t.Fatal(err)
	}
	if es := mustClaim(t, b, 10, time.Hour); len(es) != 0 {
		t.Fatalf("b's restart released %d of a's leases", len(es))
	}
	_ = ofB
}

func TestTwoNodesCheckingOneNonceAcceptItOnce(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoNodes(t, queue.Options{})
	const n = 100
	var mu sync.Mutex
	fresh := map[int]int{}
	until := time.Now().Add(10 * time.Minute)
	each([]*queue.Queue{a, b}, 4, n, func(q *queue.Queue, i int) {
		err := q.CheckNonce(ctx, "t1", fmt.Appendf(nil, "nonce-%d", i), until)
		if err != nil && !errors.Is(err, envelope.ErrReplay) {
			t.Error(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			fresh[i]++
		}
	})
	for i := range n {
		if fresh[i] != 1 {
			t.Fatalf("nonce %d accepted %d times by two nodes, want once", i, fresh[i])
		}
	}
}

func TestTwoNodesAddVolumeToOneTotal(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoNodes(t, queue.Options{})
	now := time.Now()
	const n = 100
	var max atomic.Int64
	each([]*queue.Queue{a, b}, 5, n, func(q *queue.Queue, i int) {
		total, err := q.AddVolume(ctx, "t1", now, i%3+1)
		if err != nil {
			t.Error(err)
			return
		}
		for m := max.Load(); int64(total) > m && !max.CompareAndSwap(m, int64(total)); m = max.Load() {
		}
	})
	want := 0
	for i := range n {
		want += 2 * (i%3 + 1)
	}
	for _, q := range []*queue.Queue{a, b} {
		if got, err := q.AddVolume(ctx, "t1", now, 0); err != nil || got != want {
			t.Fatalf("total %d, %v; want %d", got, err, want)
		}
	}
	if max.Load() > int64(want) {
		t.Fatalf("a node saw a total of %d, more than the %d counted", max.Load(), want)
	}
	if got, _ := a.AddVolume(ctx, "t2", now, 0); got != 0 {
		t.Fatalf("another tenant's total %d", got)
	}
}

// A transaction that deadlocks with another node's is run again, whether
// it was written alone or in a group with others.
func TestDeadlockedTransactionsAreRetried(t *testing.T) {
	for _, grouped := range []bool{false, true} {
		t.Run(fmt.Sprintf("grouped=%v", grouped), func(t *testing.T) {
			ctx := context.Background()
			a, b, _ := twoNodes(t, queue.Options{})
			admin := admin(t)
			var super bool
			if err := admin.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil {
				t.Fatal(err)
			}
			if !super {
				t.Skip("choosing the deadlock's victim needs a superuser (deadlock_timeout)")
			}
			for _, tenant := range []string{"x", "y"} {
				if err := a.AddEvent(ctx, queue.Event{Tenant: tenant, Status: "queued"}); err != nil {
					t.Fatal(err)
				}
			}
			// Each takes its first row, and then the other's. a waits
			// first and checks for a deadlock long before b would: a is
			// the victim.
			var runsA, runsB atomic.Int32
			var onceA, onceB sync.Once
			tookY := make(chan struct{})
			touch := func(exec func(string, ...any) error, tenant string) error {
				return exec(`UPDATE seqs SET last = last WHERE tenant = ? /* deadlock test */`, tenant)
			}
			errA := make(chan error, 1)
			go func() {
				errA <- a.WriteForTest(ctx, grouped, func(exec func(string, ...any) error) error {
					runsA.Add(1)
					if err := exec(`SET LOCAL deadlock_timeout = '300ms'`); err != nil {
						return err
					}
					if err := touch(exec, "x"); err != nil {
						return err
					}
					onceA.Do(func() { <-tookY })
					return touch(exec, "y")
				})
			}()
			errB := b.WriteForTest(ctx, false, func(exec func(string, ...any) error) error {
				runsB.Add(1)
				if err := exec(`SET LOCAL deadlock_timeout = '10s'`); err != nil {
					return err
				}
				if err := touch(exec, "y"); err != nil {
					return err
				}
				var err error
				onceB.Do(func() {
					close(tookY)
					err = waitForLockWait(admin)
				})
				if err != nil {
					return err
				}
				return touch(exec, "x")
			})
			if err := <-errA; err != nil || errB != nil {
				t.Fatalf("a: %v, b: %v; want both to succeed", err, errB)
			}
			if runsA.Load() != 2 || runsB.Load() != 1 {
				t.Fatalf("a ran %d times, b %d; want a retried once", runsA.Load(), runsB.Load())
			}
		})
	}
}

// waitForLockWait waits until a statement of the deadlock test waits for a
// lock.
func waitForLockWait(admin *pgx.Conn) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var k int
		if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%deadlock test%' AND query NOT LIKE '%pg_stat_activity%'`).Scan(&k); err != nil {
			return err
		}
		if k > 0 {
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return errors.New("no statement of the deadlock test waits for a lock")
}

// Providers repeat receipts, and a message sent in parts has one per part:
// nodes receiving them at once add one event per status change.
func TestTwoNodesRecordARepeatedReceiptOnce(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoNodes(t, queue.Options{})
	mustAccept(t, a, accepted("t1", "m1", "u1", request("t1", "m1")))
	mustClaim(t, a, 1, time.Hour)
	if err := a.Finish(ctx, "ext_t1_m1", queue.Event{Status: "sent"},
		queue.ProviderRef{Adapter: "smpp", ID: "p-1"}, queue.ProviderRef{Adapter: "smpp", ID: "p-2"}); err != nil {
		t.Fatal(err)
	}
	statuses := []string{"accepted", "enroute", "delivered", "read", "deleted", "expired"}
	for _, status := range statuses {
		var fresh atomic.Int32
		each([]*queue.Queue{a, b}, 4, 8, func(q *queue.Queue, i int) {
			ref := queue.ProviderRef{Adapter: "smpp", ID: fmt.Sprintf("p-%d", i%2+1)}
			_, ok, err := q.Receipt(ctx, ref, "", queue.Event{Status: status})
			if err != nil {
				t.Error(err)
			}
			if ok {
				fresh.Add(1)
			}
		})
		if fresh.Load() != 1 {
			t.Fatalf("%d receipts %q added an event, want 1", fresh.Load(), status)
		}
	}
	evs, err := b.ClaimEvents(ctx, 100, time.Hour)
	if err != nil || len(evs) != 1+len(statuses) {
		t.Fatalf("outbox %+v (%v), want sent and one event per status", evs, err)
	}
	for i, ev := range evs[1:] {
		if ev.Status != statuses[i] || ev.Seq != int64(i+2) {
			t.Fatalf("event %d: %+v, want %s", i+1, ev, statuses[i])
		}
	}
}
