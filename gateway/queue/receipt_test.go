package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway/queue"
)

// A sent message keeps its providers' ids, so a delivery receipt that comes
// back after the entry left the queue finds the message; a repeated receipt
// adds nothing; a receipt for an unknown id, or one whose echoed reference
// names another message, is refused.
func TestReceipts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		c := newClock()
		q := b.queue(c)
		it := accepted("t1", "m1", "u1", request("t1", "m1"))
		it.Entry.CallbackURL = "https://cb.example.com/hooks/compat"
		mustAccept(t, q, it, accepted("t1", "m2", "u2", request("t1", "m2")))
		es, err := q.Claim(ctx, 10, time.Minute)
		if err != nil || len(es) != 2 {
			t.Fatalf("claim: %d %v", len(es), err)
		}
		for _, e := range es {
			if (e.MsgID == "m1") != (e.CallbackURL != "") {
				t.Errorf("entry %s: callback url %q", e.MsgID, e.CallbackURL)
			}
		}
		ext1, ext2 := "ext_t1_m1", "ext_t1_m2"
		if err := q.Finish(ctx, ext1, queue.Event{Status: "sent"},
			queue.ProviderRef{Adapter: "smpp", ID: "p-1"}, queue.ProviderRef{Adapter: "smpp", ID: "p-2"}); err != nil {
			t.Fatal(err)
		}
		if err := q.Finish(ctx, ext2, queue.Event{Status: "sent"}, queue.ProviderRef{Adapter: "twilio", ID: "SM1"}); err != nil {
			t.Fatal(err)
		}

		tests := []struct {
			name    string
			ref     queue.ProviderRef
			ext     string
			status  string
			wantExt string
			wantNew bool
			wantErr error
		}{
			{"by provider id", queue.ProviderRef{Adapter: "smpp", ID: "p-1"}, "", "accepted", ext1, true, nil},
			{"the same status again", queue.ProviderRef{Adapter: "smpp", ID: "p-1"}, "", "accepted", ext1, false, nil},
			{"another part, same status", queue.ProviderRef{Adapter: "smpp", ID: "p-2"}, "", "accepted", ext1, false, nil},
			{"final status", queue.ProviderRef{Adapter: "smpp", ID: "p-2"}, "", "delivered", ext1, true, nil},
			{"by echoed reference", queue.ProviderRef{Adapter: "twilio"}, ext2, "undelivered", ext2, true, nil},
			{"id and reference agree", queue.ProviderRef{Adapter: "twilio", ID: "SM1"}, ext2, "delivered", ext2, true, nil},
			{"id and reference disagree", queue.ProviderRef{Adapter: "twilio", ID: "SM1"}, ext1, "delivered", "", false, queue.ErrNotFound},
			{"another adapter's id", queue.ProviderRef{Adapter: "twilio", ID: "p-1"}, "", "delivered", "", false, queue.ErrNotFound},
			{"unknown id", queue.ProviderRef{Adapter: "smpp", ID: "nope"}, "", "delivered", "", false, queue.ErrNotFound},
			{"no id at all", queue.ProviderRef{Adapter: "smpp"}, "", "delivered", "", false, queue.ErrInvalid},
		}
		for _, tt := range tests {
			ev, ok, err := q.Receipt(ctx, tt.ref, tt.ext, queue.Event{Status: tt.status, Reason: "r"})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
				continue
			}
			if ok != tt.wantNew || (ok && ev.ExtMessageID != tt.wantExt) {
				t.Errorf("%s: event %+v new=%v, want ext %s new=%v", tt.name, ev, ok, tt.wantExt, tt.wantNew)
			}
		}

		// The outbox holds: two "sent", then the four new receipts, each with
		// its message's callback URL.
		evs, err := q.ClaimEvents(ctx, 100, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ev := range evs {
			got = append(got, ev.ExtMessageID+":"+ev.Status)
			if (ev.ExtMessageID == ext1) != (ev.CallbackURL == "https://cb.example.com/hooks/compat") {
				t.Errorf("event %s %s: callback url %q", ev.ExtMessageID, ev.Status, ev.CallbackURL)
			}
		}
		want := []string{ext1 + ":sent", ext2 + ":sent", ext1 + ":accepted", ext1 + ":delivered", ext2 + ":undelivered", ext2 + ":delivered"}
		if len(got) != len(want) {
			t.Fatalf("outbox %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("outbox %v, want %v", got, want)
			}
		}

		// Past the answers' horizon the ids are pruned and receipts find nothing.
		c.Advance(8 * 24 * time.Hour)
		if _, err := q.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, err := q.Receipt(ctx, queue.ProviderRef{Adapter: "smpp", ID: "p-1"}, "", queue.Event{Status: "undelivered"}); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("after prune: %v", err)
		}
	})
}

// Postponing gives back the attempt the claim counted; retrying keeps it.
func TestPostponeKeepsAttempts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		c := newClock()
		q := b.queue(c)
		mustAccept(t, q, accepted("t1", "m1", "u1", request("t1", "m1")))
		for range 3 {
			es, err := q.Claim(ctx, 1, time.Minute)
			if err != nil || len(es) != 1 || es[0].Attempts != 1 {
				t.Fatalf("claim: %+v %v", es, err)
			}
			if err := q.Postpone(ctx, es[0].ExtID, c.Now(), nil); err != nil {
				t.Fatal(err)
			}
		}
		es, _ := q.Claim(ctx, 1, time.Minute)
		if err := q.Retry(ctx, es[0].ExtID, c.Now(), nil); err != nil {
			t.Fatal(err)
		}
		if es, _ = q.Claim(ctx, 1, time.Minute); len(es) != 1 || es[0].Attempts != 2 {
			t.Fatalf("after a retry: %+v", es)
		}
		if err := q.Postpone(ctx, "nope", c.Now(), nil); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("unknown entry: %v", err)
		}
	})
}

// Concurrent send-side updates share transactions (group commit); one that
// fails (an entry already gone) fails alone, and the sequence numbers of
// the others stay without gaps.
func TestGroupedFinishesFailAlone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		q := b.queue(newClock())
		var items []queue.Item
		for i := range 20 {
			id := fmt.Sprintf("m%02d", i)
			items = append(items, accepted("t1", id, "u1", request("t1", id)))
		}
		mustAccept(t, q, items...)
		if _, err := q.Claim(ctx, 100, time.Minute); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 30)
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ext := fmt.Sprintf("ext_t1_m%02d", i) // 20..29 do not exist
				errs[i] = q.Finish(ctx, ext, queue.Event{Status: "sent"})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if (i < 20) != (err == nil) || (i >= 20 && !errors.Is(err, queue.ErrNotFound)) {
				t.Errorf("finish %d: %v", i, err)
			}
		}
		evs, err := q.ClaimEvents(ctx, 100, time.Minute)
		if err != nil || len(evs) != 20 {
			t.Fatalf("%d events, %v; want 20", len(evs), err)
		}
		for i, ev := range evs {
			if ev.Seq != int64(i+1) {
				t.Fatalf("event %d has seq %d: a failed update left a gap", i, ev.Seq)
			}
		}
	})
}
