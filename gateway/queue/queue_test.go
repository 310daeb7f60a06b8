package queue_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway/queue"
)

// clock is a settable time source for leases, retries and retention.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// request is a message request as the core sends it: tokens and
// placeholders, never an address.
func request(tenant, id string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"tenant":%q,"brand":"b1","channel":"email","category":"transactional",`+
		`"purpose":"password_reset","to":{"subject":"u1"},"subject":"Hi {{pii.first_name}}","text":"reset"}`, id, tenant)
}

// accepted builds an item that enqueues the request for subject (brand b1, user).
func accepted(tenant, id, user string, req []byte) queue.Item {
	ext := "ext_" + tenant + "_" + id
	return queue.Item{
		Tenant: tenant, ID: id, Hash: sha256.Sum256(req),
		Answer: queue.Answer{Status: queue.StatusAccepted, ExtMessageID: ext},
		Entry:  &queue.Entry{ExtID: ext, Brand: "b1", User: user, Request: req},
	}
}

func rejected(tenant, id string, req []byte) queue.Item {
	return queue.Item{
		Tenant: tenant, ID: id, Hash: sha256.Sum256(req),
		Answer: queue.Answer{Status: queue.StatusRejected, Code: "policy_denied", Message: "denied by policy"},
	}
}

func mustAccept(t testing.TB, q *queue.Queue, items ...queue.Item) []queue.Outcome {
	t.Helper()
	outs, err := q.Accept(context.Background(), items)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if len(outs) != len(items) {
		t.Fatalf("Accept returned %d outcomes for %d items", len(outs), len(items))
	}
	return outs
}

func mustLen(t testing.TB, q *queue.Queue, want int) {
	t.Helper()
	n, err := q.Len(context.Background())
	if err != nil {
		t.Fatalf("Len: %v", err)
	}
	if n != want {
		t.Fatalf("Len = %d, want %d", n, want)
	}
}

func mustClaim(t testing.TB, q *queue.Queue, limit int, lease time.Duration) []queue.Entry {
	t.Helper()
	es, err := q.Claim(context.Background(), limit, lease)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return es
}

func mustClaimEvents(t testing.TB, q *queue.Queue) []queue.Event {
	t.Helper()
	evs, err := q.ClaimEvents(context.Background(), 1000, time.Minute)
	if err != nil {
		t.Fatalf("ClaimEvents: %v", err)
	}
	return evs
}

func TestSameIDSameContentGetsFirstAnswerAndIsEnqueuedOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.queue(nil)
		first := accepted("t1", "m1", "u1", request("t1", "m1"))
		out := mustAccept(t, q, first)[0]
		if out.Duplicate || out.Conflict || out.Answer != first.Answer {
			t.Fatalf("first outcome = %+v", out)
		}

		// The retry carries a fresh ext id, as the pipeline would mint one.
		again := accepted("t1", "m1", "u1", request("t1", "m1"))
		again.Answer.ExtMessageID, again.Entry.ExtID = "ext_other", "ext_other"
		out = mustAccept(t, q, again)[0]
		if !out.Duplicate || out.Conflict || out.Answer != first.Answer {
			t.Fatalf("retry outcome = %+v, want duplicate with the first answer %+v", out, first.Answer)
		}
		mustLen(t, q, 1)
	})
}

func TestSameIDWithinOneCallIsDuplicate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.queue(nil)
		it := accepted("t1", "m1", "u1", request("t1", "m1"))
		outs := mustAccept(t, q, it, it)
		if outs[0].Duplicate || !outs[1].Duplicate {
			t.Fatalf("outcomes = %+v", outs)
		}
		mustLen(t, q, 1)
	})
}

func TestSameIDOtherContentConflictsAndWritesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.queue(nil)
		first := accepted("t1", "m1", "u1", request("t1", "m1"))
		first.Callback = &queue.Event{Status: "queued"}
		mustAccept(t, q, first)

		other := accepted("t1", "m1", "u1", []byte(`{"id":"m1","text":"something else"}`))
		other.Answer.ExtMessageID, other.Entry.ExtID = "ext_other", "ext_other"
		other.Callback = &queue.Event{Status: "queued"}
		out := mustAccept(t, q, other)[0]
		if !out.Conflict || out.Duplicate || out.Answer != (queue.Answer{}) {
			t.Fatalf("outcome = %+v, want conflict", out)
		}
		mustLen(t, q, 1)
		if evs := mustClaimEvents(t, q); len(evs) != 1 {
			t.Fatalf("outbox holds %d events, want only the first item's", len(evs))
		}

		// The same id under another tenant is another message.
		out = mustAccept(t, q, accepted("t2", "m1", "u1", request("t2", "m1")))[0]
		if out.Conflict || out.Duplicate {
			t.Fatalf("other tenant outcome = %+v", out)
		}
	})
}

func TestRejectedAnswerIsRemembered(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.queue(nil)
		req := request("t1", "m1")
		rej := rejected("t1", "m1", req)
		rej.Callback = &queue.Event{Status: "denied", Reason: "quiet_hours", DecisionID: "d1"}
		mustAccept(t, q, rej)

		// A retry that would now pass gets the remembered rejection and is not queued.
		out := mustAccept(t, q, accepted("t1", "m1", "u1", req))[0]
		if !out.Duplicate || out.Answer != rej.Answer {
			t.Fatalf("outcome = %+v, want duplicate %+v", out, rej.Answer)
		}
		mustLen(t, q, 0)
		evs := mustClaimEvents(t, q)
		if len(evs) != 1 || evs[0].Status != "denied" || evs[0].MsgID != "m1" || evs[0].Tenant != "t1" ||
			evs[0].ExtMessageID != "" || evs[0].DecisionID != "d1" || evs[0].Seq != 1 {
			t.Fatalf("events = %+v", evs)
		}
	})
}

func TestInvalidItemsAreRefusedBeforeWriting(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		valid := func() queue.Item { return accepted("t1", "m1", "u1", request("t1", "m1")) }
		tests := []struct {
			name string
			edit func(*queue.Item)
		}{
			{"empty id", func(it *queue.Item) { it.ID = "" }},
			{"empty tenant", func(it *queue.Item) { it.Tenant = "" }},
			{"unknown status", func(it *queue.Item) { it.Answer.Status = "retryable" }},
			{"accepted without entry", func(it *queue.Item) { it.Entry = nil }},
			{"entry ext id differs from answer", func(it *queue.Item) { it.Entry.ExtID = "ext_x" }},
			{"entry of another tenant", func(it *queue.Item) { it.Entry.Tenant = "t2" }},
			{"rejected with entry", func(it *queue.Item) { it.Answer = queue.Answer{Status: queue.StatusRejected} }},
		}
		q := b.queue(nil)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				it := valid()
				tt.edit(&it)
				if _, err := q.Accept(context.Background(), []queue.Item{valid(), it}); !errors.Is(err, queue.ErrInvalid) {
					t.Fatalf("Accept err = %v, want ErrInvalid", err)
				}
				mustLen(t, q, 0)
			})
		}
	})
}

func TestConcurrentAcceptsAreDurableAndGroupCommitted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.open(queue.Options{})
		const n = 50
		start := make(chan struct{})
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				id := fmt.Sprintf("m%d", i)
				outs, err := q.Accept(context.Background(), []queue.Item{accepted("t1", id, "u1", request("t1", id))})
				if err == nil && (outs[0].Duplicate || outs[0].Conflict) {
					err = fmt.Errorf("%s: outcome %+v", id, outs[0])
				}
				errs <- err
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		st := q.Stats()
		t.Logf("stats: %+v", st)
		if st.Calls != n || st.Items != n {
			t.Fatalf("stats = %+v, want %d calls and items", st, n)
		}
		if st.Commits >= n {
			t.Fatalf("%d commits for %d calls: not group-committed", st.Commits, n)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}

		q = b.open(queue.Options{})
		mustLen(t, q, n)
	})
}

func TestEntriesSurviveRestart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.open(queue.Options{})
		it := accepted("t1", "m1", "u1", request("t1", "m1"))
		it.Entry.Envelope = []byte(`{"header":"aGVhZGVy","root":"cm9vdA"}`)
		it.Entry.ExpiresAt = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		mustAccept(t, q, it)
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Accept(context.Background(), []queue.Item{it}); !errors.Is(err, queue.ErrClosed) {
			t.Fatalf("Accept after Close: err = %v, want ErrClosed", err)
		}

		q = b.open(queue.Options{})
		es := mustClaim(t, q, 10, time.Minute)
		if len(es) != 1 {
			t.Fatalf("claimed %d entries after restart, want 1", len(es))
		}
		e := es[0]
		if e.ExtID != it.Entry.ExtID || e.Tenant != "t1" || e.MsgID != "m1" || e.Brand != "b1" || e.User != "u1" ||
			string(e.Envelope) != string(it.Entry.Envelope) || !e.ExpiresAt.Equal(it.Entry.ExpiresAt) ||
			e.Attempts != 1 || e.Created.IsZero() {
			t.Fatalf("entry after restart = %+v", e)
		}
		if out := mustAccept(t, q, it)[0]; !out.Duplicate {
			t.Fatalf("answer not remembered across restart: %+v", out)
		}
	})
}

func TestRequestBytesAreStoredVerbatim(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.queue(nil)
		// Odd spacing, key order, escapes and a placeholder: the queue must not
		// re-encode what the core signed.
		req := []byte("{ \"to\" : {\"token\":\"tok_email_v1_abcdefghijklmnopqrstuvwxyz234567\"},\n\t\"id\":\"m1\", " +
			"\"html\":\"<p>Hi {{pii.first_name}} \\u00e9\\ud83d\\ude00</p>\" }  ")
		it := accepted("t1", "m1", "", req)
		mustAccept(t, q, it)
		es := mustClaim(t, q, 1, time.Minute)
		if len(es) != 1 || string(es[0].Request) != string(req) {
			t.Fatalf("request came back as %q, want %q", es[0].Request, req)
		}
		if es[0].User != "" {
			t.Fatalf("token-addressed entry has user %q", es[0].User)
		}
	})
}

func TestNotBeforeDelaysClaim(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		c := newClock()
		q := b.queue(c)
		it := accepted("t1", "m1", "u1", request("t1", "m1"))
		it.Entry.NotBefore = c.Now().Add(time.Hour)
		mustAccept(t, q, it)
		if es := mustClaim(t, q, 10, time.Minute); len(es) != 0 {
			t.Fatalf("claimed %d entries before not_before", len(es))
		}
		c.Advance(time.Hour)
		if es := mustClaim(t, q, 10, time.Minute); len(es) != 1 {
			t.Fatalf("claimed %d entries at not_before, want 1", len(es))
		}
	})
}

func TestExpiredLeaseMakesEntryClaimableAgain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		c := newClock()
		q := b.queue(c)
		mustAccept(t, q, accepted("t1", "m1", "u1", request("t1", "m1")), accepted("t1", "m2", "u1", request("t1", "m2")))

		es := mustClaim(t, q, 1, 30*time.Second)
		if len(es) != 1 || es[0].Attempts != 1 {
			t.Fatalf("first claim = %+v", es)
		}
		leased := es[0].ExtID
		es = mustClaim(t, q, 10, 30*time.Second)
		if len(es) != 1 || es[0].ExtID == leased {
			t.Fatalf("second claim = %+v, want only the other entry", es)
		}
		if es := mustClaim(t, q, 10, 30*time.Second); len(es) != 0 {
			t.Fatalf("claimed %d leased entries", len(es))
		}
		c.Advance(31 * time.Second)
		es = mustClaim(t, q, 10, 30*time.Second)
		if len(es) != 2 || es[0].Attempts != 2 || es[1].Attempts != 2 {
			t.Fatalf("claim after lease expiry = %+v, want both entries at attempt 2", es)
		}
	})
}

func TestZeroLeaseLeavesEntryClaimable(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.queue(newClock())
		mustAccept(t, q, accepted("t1", "m1", "u1", request("t1", "m1")))
		mustClaim(t, q, 1, 0)
		if es := mustClaim(t, q, 1, 0); len(es) != 1 || es[0].Attempts != 2 {
			t.Fatalf("second claim with a zero lease = %+v", es)
		}
		if _, err := q.Claim(context.Background(), 1, -time.Second); !errors.Is(err, queue.ErrInvalid) {
			t.Fatalf("negative lease: err = %v, want ErrInvalid", err)
		}
	})
}

func TestReleaseLeasesEndsLeasesOfADeadProcess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		c := newClock()
		q := b.queue(c)
		later := accepted("t1", "m2", "u1", request("t1", "m2"))
		later.Entry.NotBefore = c.Now().Add(time.Hour)
		mustAccept(t, q, accepted("t1", "m1", "u1", request("t1", "m1")), later)
		mustClaim(t, q, 10, time.Hour)
		if err := q.ReleaseLeases(context.Background()); err != nil {
			t.Fatal(err)
		}
		es := mustClaim(t, q, 10, time.Hour)
		if len(es) != 1 || es[0].MsgID != "m1" {
			t.Fatalf("claim after release = %+v, want only the due entry", es)
		}
	})
}

func TestFinishWritesFinalEventWithIncreasingSeqPerTenant(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.queue(nil)
		ctx := context.Background()
		mustAccept(t, q,
			accepted("t1", "m1", "u1", request("t1", "m1")),
			accepted("t1", "m2", "u1", request("t1", "m2")),
			accepted("t2", "m1", "u1", request("t2", "m1")),
			accepted("t1", "m3", "u1", request("t1", "m3")))
		for _, e := range mustClaim(t, q, 10, time.Minute) {
			// Identity fields in the event are the entry's, whatever the caller passes.
			if err := q.Finish(ctx, e.ExtID, queue.Event{Tenant: "other", Status: "sent", Checkpoint: "cp"}); err != nil {
				t.Fatalf("Finish %s: %v", e.ExtID, err)
			}
		}
		mustLen(t, q, 0)
		if err := q.Finish(ctx, "ext_t1_m1", queue.Event{Status: "sent"}); !errors.Is(err, queue.ErrNotFound) {
			t.Fatalf("second Finish err = %v, want ErrNotFound", err)
		}

		evs := mustClaimEvents(t, q)
		seqs := map[string][]int64{}
		for _, ev := range evs {
			if ev.Status != "sent" || ev.Checkpoint != "cp" || ev.ExtMessageID != "ext_"+ev.Tenant+"_"+ev.MsgID || ev.Time.IsZero() {
				t.Fatalf("event = %+v", ev)
			}
			seqs[ev.Tenant] = append(seqs[ev.Tenant], ev.Seq)
			if err := q.AckEvent(ctx, ev.ID); err != nil {
				t.Fatal(err)
			}
		}
		if fmt.Sprint(seqs["t1"]) != "[1 2 3]" || fmt.Sprint(seqs["t2"]) != "[1]" {
			t.Fatalf("sequence numbers = %v", seqs)
		}

		// Acknowledged events are gone, their numbers are not reused.
		mustAccept(t, q, accepted("t1", "m4", "u1", request("t1", "m4")))
		if err := q.Finish(ctx, "ext_t1_m4", queue.Event{Status: "expired"}); err != nil {
			t.Fatal(err)
		}
		evs = mustClaimEvents(t, q)
		if len(evs) != 1 || evs[0].Seq != 4 {
			t.Fatalf("events after ack = %+v, want one with seq 4", evs)
		}
	})
}

func TestRetryReschedulesWithEvent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		c := newClock()
		q := b.queue(c)
		ctx := context.Background()
		mustAccept(t, q, accepted("t1", "m1", "u1", request("t1", "m1")))
		e := mustClaim(t, q, 1, time.Minute)[0]
		at := c.Now().Add(10 * time.Minute)
		if err := q.Retry(ctx, e.ExtID, at, &queue.Event{Status: "deferred", Reason: "quiet_hours"}); err != nil {
			t.Fatal(err)
		}
		if es := mustClaim(t, q, 1, time.Minute); len(es) != 0 {
			t.Fatalf("claimed %d entries before the retry time", len(es))
		}
		c.Advance(10 * time.Minute)
		es := mustClaim(t, q, 1, time.Minute)
		if len(es) != 1 || es[0].Attempts != 2 || !es[0].NotBefore.Equal(at) {
			t.Fatalf("claim at retry time = %+v", es)
		}
		evs := mustClaimEvents(t, q)
		if len(evs) != 1 || evs[0].Status != "deferred" || evs[0].Reason != "quiet_hours" || evs[0].MsgID != "m1" {
			t.Fatalf("events = %+v", evs)
		}
		if err := q.Retry(ctx, "ext_missing", at, nil); !errors.Is(err, queue.ErrNotFound) {
			t.Fatalf("Retry of a missing entry: err = %v, want ErrNotFound", err)
		}
	})
}

func TestCancelSubjectFinishesOnlyThatSubjectsEntries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.queue(nil)
		ctx := context.Background()
		mustAccept(t, q,
			accepted("t1", "m1", "u1", request("t1", "m1")),
			accepted("t1", "m2", "u1", request("t1", "m2")),
			accepted("t1", "m3", "u2", request("t1", "m3")),
			accepted("t1", "m4", "", request("t1", "m4")),
			accepted("t2", "m1", "u1", request("t2", "m1")))
		mustClaim(t, q, 1, time.Minute) // a leased entry is cancelled too

		n, err := q.CancelSubject(ctx, "t1", "b1", "u1", func(e queue.Entry) queue.Event {
			return queue.Event{Status: "unknown_recipient", Reason: "erased"}
		})
		if err != nil || n != 2 {
			t.Fatalf("CancelSubject = %d, %v; want 2", n, err)
		}
		mustLen(t, q, 3)
		evs := mustClaimEvents(t, q)
		if len(evs) != 2 {
			t.Fatalf("events = %+v", evs)
		}
		for i, ev := range evs {
			if ev.Tenant != "t1" || ev.Status != "unknown_recipient" || ev.Seq != int64(i+1) {
				t.Fatalf("event %d = %+v", i, ev)
			}
		}
		if _, err := q.CancelSubject(ctx, "t1", "b1", "", func(queue.Entry) queue.Event { return queue.Event{} }); !errors.Is(err, queue.ErrInvalid) {
			t.Fatalf("cancel of the empty user: err = %v, want ErrInvalid", err)
		}
	})
}

func TestEventRetryAndAck(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		c := newClock()
		q := b.queue(c)
		ctx := context.Background()
		it := accepted("t1", "m1", "u1", request("t1", "m1"))
		it.Callback = &queue.Event{Status: "queued"}
		mustAccept(t, q, it)

		ev := mustClaimEvents(t, q)[0]
		if ev.Attempts != 1 || ev.ExtMessageID != "ext_t1_m1" || !ev.Time.Equal(c.Now()) {
			t.Fatalf("claimed event = %+v", ev)
		}
		if evs := mustClaimEvents(t, q); len(evs) != 0 {
			t.Fatalf("leased event claimed again: %+v", evs)
		}
		if err := q.RetryEvent(ctx, ev.ID, c.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		c.Advance(59 * time.Minute)
		if evs := mustClaimEvents(t, q); len(evs) != 0 {
			t.Fatalf("event claimed before its retry time: %+v", evs)
		}
		c.Advance(time.Minute)
		evs := mustClaimEvents(t, q)
		if len(evs) != 1 || evs[0].Attempts != 2 || evs[0].Seq != ev.Seq {
			t.Fatalf("event at retry time = %+v", evs)
		}
		if err := q.AckEvent(ctx, ev.ID); err != nil {
			t.Fatal(err)
		}
		if err := q.AckEvent(ctx, ev.ID); !errors.Is(err, queue.ErrNotFound) {
			t.Fatalf("second ack: err = %v, want ErrNotFound", err)
		}
	})
}

func TestPruneForgetsOldAnswersButNotQueuedOnes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		c := newClock()
		q := b.open(queue.Options{Now: c.Now, AnswerTTL: 24 * time.Hour})
		ctx := context.Background()
		done := accepted("t1", "m1", "u1", request("t1", "m1"))
		queued := accepted("t1", "m2", "u1", request("t1", "m2"))
		queued.Entry.NotBefore = c.Now().Add(72 * time.Hour)
		rej := rejected("t1", "m3", request("t1", "m3"))
		mustAccept(t, q, done, queued, rej)
		if err := q.Finish(ctx, done.Entry.ExtID, queue.Event{Status: "sent"}); err != nil {
			t.Fatal(err)
		}

		c.Advance(23 * time.Hour)
		if n, err := q.Prune(ctx); err != nil || n != 0 {
			t.Fatalf("Prune before TTL = %d, %v", n, err)
		}
		c.Advance(2 * time.Hour)
		if n, err := q.Prune(ctx); err != nil || n != 2 {
			t.Fatalf("Prune after TTL = %d, %v; want 2", n, err)
		}
		outs := mustAccept(t, q, queued, rej)
		if !outs[0].Duplicate {
			t.Fatalf("answer of a still-queued entry was pruned: %+v", outs[0])
		}
		if outs[1].Duplicate {
			t.Fatalf("pruned answer still remembered: %+v", outs[1])
		}
	})
}

func TestFailedCallWritesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.queue(nil)
		mustAccept(t, q, accepted("t1", "m1", "u1", request("t1", "m1")))

		// m3 reuses m1's ext id (a gateway bug): the whole call is rolled back.
		fresh := accepted("t1", "m2", "u1", request("t1", "m2"))
		clash := accepted("t1", "m3", "u1", request("t1", "m3"))
		clash.Answer.ExtMessageID, clash.Entry.ExtID = "ext_t1_m1", "ext_t1_m1"
		if _, err := q.Accept(context.Background(), []queue.Item{fresh, clash}); err == nil {
			t.Fatal("Accept of a clashing ext id succeeded")
		}
		mustLen(t, q, 1)
		if out := mustAccept(t, q, fresh)[0]; out.Duplicate {
			t.Fatalf("item of the failed call was remembered: %+v", out)
		}
	})
}

// What an entry holds comes back as it went in, nil (a native request's
// Compat, an absent Envelope) included, whichever way it was written:
// alone, or with a frequency cap (a call with one is written item by item).
func TestEntryFieldsRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		q := b.queue(newClock())
		for _, capped := range []bool{false, true} {
			bare := accepted("t1", fmt.Sprintf("bare-%v", capped), "", request("t1", "bare"))
			bare.Entry.Request = nil // stored as empty
			full := accepted("t1", fmt.Sprintf("full-%v", capped), "u1", request("t1", "full"))
			full.Entry.Envelope = []byte(`{"root":"cm9vdA"}`)
			full.Entry.Compat = []byte(`{"email_uid":"e-1"}`)
			full.Entry.CallbackURL = "https://cb.example.com/hook"
			full.Entry.NotBefore = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
			full.Entry.ExpiresAt = time.Date(2026, 1, 9, 0, 0, 0, 0, time.UTC)
			full.Entry.Brand = "b2"
			if capped {
				full.Reserve = []queue.Reservation{{Key: "k", Window: time.Hour, Limit: 10}}
			}
			mustAccept(t, q, bare, full)
			es := mustClaim(t, q, 10, time.Minute)
			if len(es) != 2 {
				t.Fatalf("claimed %d entries, want 2", len(es))
			}
			for _, e := range es {
				want := bare.Entry
				if e.MsgID == full.ID {
					want = full.Entry
				}
				if e.ExtID != want.ExtID || e.Tenant != "t1" || e.Brand != want.Brand || e.User != want.User ||
					string(e.Request) != string(want.Request) || e.CallbackURL != want.CallbackURL ||
					!e.NotBefore.Equal(want.NotBefore) || !e.ExpiresAt.Equal(want.ExpiresAt) || e.Attempts != 1 || e.Created.IsZero() {
					t.Errorf("capped=%v: entry %+v, want %+v", capped, e, want)
				}
				if (e.Envelope == nil) != (want.Envelope == nil) || string(e.Envelope) != string(want.Envelope) ||
					(e.Compat == nil) != (want.Compat == nil) || string(e.Compat) != string(want.Compat) {
					t.Errorf("capped=%v, %s: envelope %q compat %q, want %q and %q", capped, e.MsgID, e.Envelope, e.Compat, want.Envelope, want.Compat)
				}
				if err := q.Finish(context.Background(), e.ExtID, queue.Event{Status: "sent"}); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
