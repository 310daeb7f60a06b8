package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/store"
)

type eventRejection = event.Rejection

// baseDate is the event_date of the events ev makes, plus their order.
var (
	baseDate = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	evSeq    int64
	evSeqMu  sync.Mutex
)

// ev is an event of brand b1 whose event_date is later than every event
// made before it.
func ev(eid, typ, user string, payload map[string]any) event.Event {
	evSeqMu.Lock()
	evSeq++
	d := baseDate + evSeq*1000
	evSeqMu.Unlock()
	return event.Event{EID: eid, EventDate: d, Brand: "b1", User: user, Type: typ, Payload: payload}
}

// obj decodes a JSON object as event.Decode does.
func obj(s string) map[string]any {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		panic(err)
	}
	return m
}

func num(s string) json.Number { return json.Number(s) }

func mustIngest(t testing.TB, s *store.Store, label string, rej []event.Rejection, evs ...event.Event) []store.Outcome {
	t.Helper()
	outs, err := s.Ingest(context.Background(), label, evs, rej)
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	if len(outs) != len(evs) {
		t.Fatalf("Ingest returned %d outcomes for %d events", len(outs), len(evs))
	}
	return outs
}

var (
	fresh     = store.Outcome{}
	duplicate = store.Outcome{Duplicate: true}
	notFound  = store.Outcome{UserNotFound: true}
)

func wantOutcomes(t testing.TB, got []store.Outcome, want ...store.Outcome) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("outcomes = %+v, want %+v", got, want)
	}
}

func mustPlayer(t testing.TB, s *store.Store, label, user string) store.PlayerState {
	t.Helper()
	p, err := s.Player(context.Background(), label, "b1", user)
	if err != nil {
		t.Fatalf("Player(%s): %v", user, err)
	}
	return p
}

func TestIngestDeduplicates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		ctx := t.Context()
		mustLabel(t, s, "acme")
		mustLabel(t, s, "beta")

		// The same eid twice in one batch: the first counts.
		outs := mustIngest(t, s, "acme", nil,
			ev("e1", "registration", "u1", nil),
			ev("e2", "update_profile", "u1", obj(`{"level": 1}`)),
			ev("e2", "update_profile", "u1", obj(`{"level": 2}`)),
			ev("e3", "deposit", "u1", obj(`{"amount": 10}`)))
		wantOutcomes(t, outs, fresh, fresh, duplicate, fresh)
		if p := mustPlayer(t, s, "acme", "u1"); p.Properties["level"] != num("1") {
			t.Fatalf("level = %v, want 1: the repeated eid was applied", p.Properties["level"])
		}

		// Across batches: duplicates change nothing, new events still count.
		outs = mustIngest(t, s, "acme", nil,
			ev("e2", "update_profile", "u1", obj(`{"level": 3}`)),
			ev("e4", "update_profile", "u1", obj(`{"+tags": "vip"}`)),
			ev("e3", "deposit", "u1", obj(`{"amount": 99}`)),
			ev("e1", "registration", "u1", nil))
		wantOutcomes(t, outs, duplicate, fresh, duplicate, duplicate)
		p := mustPlayer(t, s, "acme", "u1")
		if p.Properties["level"] != num("1") || !slices.Equal(p.Tags, []string{"vip"}) {
			t.Fatalf("player = %v, want level 1 and tag vip", p.Properties)
		}

		// eids are unique per label: another label's e1 is new.
		outs = mustIngest(t, s, "beta", nil, ev("e1", "registration", "u1", nil))
		wantOutcomes(t, outs, fresh)

		stored, err := s.StoredEvents(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		var eids []string
		for _, e := range stored {
			eids = append(eids, e.EID)
		}
		if !slices.Equal(eids, []string{"e1", "e2", "e3", "e4"}) {
			t.Fatalf("stored eids = %v", eids)
		}
		if stored[2].Payload != `{"amount":10}` {
			t.Errorf("e3 payload = %s, want the first one's", stored[2].Payload)
		}
	})
}

// The events are stored as they came: fields, payload JSON, skip_cjm.
func TestIngestStoresEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		mustLabel(t, s, "acme")
		e1 := ev("e1", "registration", "u1", nil)
		e2 := ev("e2", "deposit", "u1", obj(`{"amount": 12.50, "currency": "EUR", "meta": {"a": [1, "x<y&z"], "n": null}, "nul": "a\u0000b"}`))
		e2.SkipCJM = true
		mustIngest(t, s, "acme", nil, e1, e2)
		got, err := s.StoredEvents(t.Context(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		want := []store.StoredEvent{
			{EID: "e1", Brand: "b1", User: "u1", Type: "registration", Payload: `{}`, EventDate: e1.EventDate},
			{EID: "e2", Brand: "b1", User: "u1", Type: "deposit", EventDate: e2.EventDate, SkipCJM: true,
				Payload: `{"amount":12.50,"currency":"EUR","meta":{"a":[1,"x<y&z"],"n":null},"nul":"a\u0000b"}`},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("stored = %+v\nwant %+v", got, want)
		}
	})
}

func TestIngestAppliesProfileUpdates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		clk := newClock()
		s := be.openWith(t, store.Config{Now: clk.Now})
		mustLabel(t, s, "acme")
		created := clk.Now()
		mustIngest(t, s, "acme", nil,
			ev("e1", "registration", "u1", obj(`{"ignored": true}`)),
			ev("e2", "update_profile", "u1", obj(`{"level": 1, "+tags": ["new", "promo_a", "promo_b"], "core_is_email_disabled_by_platform": true}`)))
		p := mustPlayer(t, s, "acme", "u1")
		if !p.FirstSeen.Equal(created) || !p.UpdatedAt.Equal(created) || !p.LastOnline.IsZero() {
			t.Errorf("times = first %v, updated %v, online %v", p.FirstSeen, p.UpdatedAt, p.LastOnline)
		}
		if _, ok := p.Properties["ignored"]; ok {
			t.Error("a registration's payload became a property")
		}

		clk.Advance(time.Hour)
		mustIngest(t, s, "acme", nil,
			ev("e3", "update_profile", "u1", obj(`{"^tags": "promo_*", "+tags": "vip", "-tags": "new"}`)),
			ev("e4", "update_profile", "u1", obj(`{"!level": null, "core_is_sms_disabled": "true", "prefs": {"lang": "en"}}`)))
		p = mustPlayer(t, s, "acme", "u1")
		want := map[string]any{
			"tags":                               []any{"vip"},
			"core_is_email_disabled_by_platform": true,
			"core_is_sms_disabled":               "true",
			"prefs":                              map[string]any{"lang": "en"},
		}
		if !reflect.DeepEqual(p.Properties, want) {
			t.Errorf("properties = %v\nwant %v", p.Properties, want)
		}
		if !slices.Equal(p.Tags, []string{"vip"}) {
			t.Errorf("tags = %q", p.Tags)
		}
		wantOpt := map[string]bool{"core_is_email_disabled_by_platform": true, "core_is_sms_disabled": true}
		if !reflect.DeepEqual(p.OptOuts, wantOpt) {
			t.Errorf("opt-outs = %v, want %v", p.OptOuts, wantOpt)
		}
		if !p.FirstSeen.Equal(created) || !p.UpdatedAt.Equal(clk.Now()) {
			t.Errorf("times = first %v, updated %v", p.FirstSeen, p.UpdatedAt)
		}

		// Many updates of one player in one batch apply in order.
		var evs []event.Event
		for i := range 50 {
			evs = append(evs, ev(fmt.Sprintf("n%d", i), "update_profile", "u1", obj(fmt.Sprintf(`{"n": %d, "+seen": %d}`, i, i%7))))
		}
		mustIngest(t, s, "acme", nil, evs...)
		p = mustPlayer(t, s, "acme", "u1")
		if p.Properties["n"] != num("49") || len(p.Properties["seen"].([]any)) != 7 {
			t.Errorf("after 50 updates: n = %v, seen = %v", p.Properties["n"], p.Properties["seen"])
		}
	})
}

// Reference code 10001: an event for a player the core has never seen,
// other than registration and update_profile, is stored, flagged, and
// creates nothing.
func TestIngestUserNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		ctx := t.Context()
		mustLabel(t, s, "acme")

		outs := mustIngest(t, s, "acme", nil,
			ev("e1", "login", "u1", nil),
			ev("e2", "deposit", "u1", obj(`{"amount": 5}`)),
			ev("e3", "registration", "u1", nil),
			ev("e4", "login", "u1", nil),
			ev("e5", "bet", "u2", nil),
			ev("e6", "update_profile", "u3", obj(`{"level": 1}`)),
			ev("e7", "login", "u3", nil),
			ev("e1", "login", "u1", nil), // repeated in the batch: only a duplicate
		)
		wantOutcomes(t, outs, notFound, notFound, fresh, fresh, notFound, fresh, fresh, duplicate)
		if _, err := s.Player(ctx, "acme", "b1", "u2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Player(u2) after a bet only: %v, want ErrNotFound", err)
		}
		if _, err := s.Player(ctx, "acme", "other-brand", "u1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Player of another brand: %v, want ErrNotFound", err)
		}
		// The login before the registration set nothing; the one after did.
		if p := mustPlayer(t, s, "acme", "u1"); p.LastOnline.UnixMilli() != baseDateOf(t, s, "e4") {
			t.Errorf("last online = %v, want e4's date", p.LastOnline)
		}
		stored, err := s.StoredEvents(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		flagged := map[string]bool{}
		for _, e := range stored {
			flagged[e.EID] = e.UserNotFound
		}
		want := map[string]bool{"e1": true, "e2": true, "e3": false, "e4": false, "e5": true, "e6": false, "e7": false}
		if !reflect.DeepEqual(flagged, want) {
			t.Errorf("stored flags = %v, want %v", flagged, want)
		}

		// A redelivered event is a duplicate, not "not found" again; a new
		// event for a player now known is found.
		outs = mustIngest(t, s, "acme", nil, ev("e5", "bet", "u2", nil), ev("e8", "bet", "u1", nil), ev("e9", "registration", "u2", nil), ev("e10", "bet", "u2", nil))
		wantOutcomes(t, outs, duplicate, fresh, fresh, fresh)

		// A duplicate registration shows its player exists.
		outs = mustIngest(t, s, "acme", nil, ev("e3", "registration", "u1", nil), ev("e11", "win", "u1", nil))
		wantOutcomes(t, outs, duplicate, fresh)
	})
}

// baseDateOf returns the stored event_date of eid.
func baseDateOf(t testing.TB, s *store.Store, eid string) int64 {
	t.Helper()
	stored, err := s.StoredEvents(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range stored {
		if e.EID == eid {
			return e.EventDate
		}
	}
	t.Fatalf("%s not stored", eid)
	return 0
}

func TestIngestLoginSetsLastOnline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		mustLabel(t, s, "acme")
		mustIngest(t, s, "acme", nil, ev("r", "registration", "u1", nil))
		late := ev("l2", "login", "u1", nil)
		early := late
		early.EID, early.EventDate = "l1", late.EventDate-60_000
		mustIngest(t, s, "acme", nil, late)
		mustIngest(t, s, "acme", nil, early) // out of order: does not move it back
		p := mustPlayer(t, s, "acme", "u1")
		if p.LastOnline.UnixMilli() != late.EventDate {
			t.Fatalf("last online = %d, want %d", p.LastOnline.UnixMilli(), late.EventDate)
		}
		if p.LastOnline.Location() != time.UTC {
			t.Errorf("last online is in %v, want UTC", p.LastOnline.Location())
		}
	})
}

func TestIngestRecordsRejections(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		clk := newClock()
		s := be.openWith(t, store.Config{Now: clk.Now})
		ctx := t.Context()
		mustLabel(t, s, "acme")
		mustLabel(t, s, "beta")

		outs := mustIngest(t, s, "acme",
			[]event.Rejection{
				{EID: "x1", Reason: "email", Path: "payload.contact"},
				{EID: "x2", Reason: "phone", Path: "payload.msisdn"},
			},
			ev("e1", "registration", "u1", nil))
		wantOutcomes(t, outs, fresh)
		clk.Advance(time.Minute)
		// A batch of rejections only; the same refused eid again counts again.
		mustIngest(t, s, "acme", []event.Rejection{
			{EID: "x1", Reason: "email", Path: "payload.contact"},
			{EID: "x3\n\x00bad\xff", Reason: "card", Path: "payload.a\tb"},
			{EID: "", Reason: "invalid", Path: strings.Repeat("p", 600)},
		})
		mustIngest(t, s, "beta", []event.Rejection{{EID: "y1", Reason: "iban", Path: "payload.acct"}})

		got, err := s.Rejections(ctx, "acme", 0)
		if err != nil {
			t.Fatal(err)
		}
		later := clk.Now()
		earlier := later.Add(-time.Minute)
		want := []store.Rejection{
			{EID: "", Reason: "invalid", Path: strings.Repeat("p", 512), Time: later},
			{EID: "x3??bad\uFFFD", Reason: "card", Path: "payload.a?b", Time: later},
			{EID: "x1", Reason: "email", Path: "payload.contact", Time: later},
			{EID: "x2", Reason: "phone", Path: "payload.msisdn", Time: earlier},
			{EID: "x1", Reason: "email", Path: "payload.contact", Time: earlier},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Rejections =\n%+v\nwant\n%+v", got, want)
		}
		if got, err := s.Rejections(ctx, "acme", 2); err != nil || len(got) != 2 || got[0].Reason != "invalid" {
			t.Errorf("Rejections limit 2 = %+v, %v", got, err)
		}
		counts, err := s.RejectionCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantCounts := map[string]map[string]int{
			"acme": {"email": 2, "phone": 1, "card": 1, "invalid": 1},
			"beta": {"iban": 1},
		}
		if !reflect.DeepEqual(counts, wantCounts) {
			t.Errorf("RejectionCounts = %v, want %v", counts, wantCounts)
		}
		// Nothing of a rejected event is stored as an event.
		if stored, _ := s.StoredEvents(ctx, "acme"); len(stored) != 1 {
			t.Errorf("%d events stored, want only e1", len(stored))
		}
	})
}

func TestIngestRefusesBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		ctx := t.Context()
		mustLabel(t, s, "acme")
		good := ev("g1", "registration", "u1", nil)

		if _, err := s.Ingest(ctx, "nope", []event.Event{good}, nil); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown label: %v, want ErrNotFound", err)
		}
		bad := map[string]event.Event{
			"no eid":        {EventDate: 1, Brand: "b1", User: "u1", Type: "login"},
			"no date":       {EID: "x", Brand: "b1", User: "u1", Type: "login"},
			"bad type":      {EID: "x", EventDate: 1, Brand: "b1", User: "u1", Type: "Login"},
			"NUL in eid":    {EID: "x\x00", EventDate: 1, Brand: "b1", User: "u1", Type: "login"},
			"bad UTF-8":     {EID: "x", EventDate: 1, Brand: "b1", User: "u\xff", Type: "login"},
			"NaN payload":   {EID: "x", EventDate: 1, Brand: "b1", User: "u1", Type: "bet", Payload: map[string]any{"a": math.NaN()}},
			"func in props": {EID: "x", EventDate: 1, Brand: "b1", User: "u1", Type: "update_profile", Payload: map[string]any{"+a": func() {}}},
		}
		for name, e := range bad {
			if _, err := s.Ingest(ctx, "acme", []event.Event{good, e}, nil); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", name, err)
			} else if !strings.Contains(err.Error(), "event 1") {
				t.Errorf("%s: %v, want it to name event 1", name, err)
			}
		}
		// Nothing of a refused batch was written.
		if stored, _ := s.StoredEvents(ctx, "acme"); len(stored) != 0 {
			t.Fatalf("%d events stored from refused batches", len(stored))
		}
		if outs, err := s.Ingest(ctx, "acme", nil, nil); err != nil || len(outs) != 0 {
			t.Errorf("empty Ingest = %v, %v", outs, err)
		}
	})
}

// Concurrent batches sharing eids store each eid once, and concurrent
// updates of one player are all applied: none is lost.
func TestIngestConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.openWith(t, store.Config{MaxConns: 8})
		ctx := t.Context()
		mustLabel(t, s, "acme")
		const workers, batches, perBatch, distinct = 6, 8, 40, 300
		var mu sync.Mutex
		firsts := map[string]int{}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				for b := range batches {
					var evs []event.Event
					for i := range perBatch {
						// Overlapping eids across workers and batches; two
						// players, one shared by everyone.
						n := (w*7 + b*perBatch + i*13) % distinct
						eid := fmt.Sprintf("e%03d", n)
						user := []string{"shared", fmt.Sprintf("u%d", n%5)}[i%2]
						evs = append(evs, ev(eid, "update_profile", user, map[string]any{"+seen": eid}))
					}
					outs, err := s.Ingest(ctx, "acme", evs, nil)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					for i, o := range outs {
						if !o.Duplicate {
							firsts[evs[i].EID]++
						}
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for eid, n := range firsts {
			if n != 1 {
				t.Errorf("%s stored %d times", eid, n)
			}
		}
		stored, err := s.StoredEvents(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if len(stored) != len(firsts) {
			t.Fatalf("%d events stored, %d reported new", len(stored), len(firsts))
		}
		// Each player's "seen" holds exactly the eids stored for it.
		want := map[string][]string{}
		for _, e := range stored {
			want[e.User] = append(want[e.User], e.EID)
		}
		for user, eids := range want {
			p := mustPlayer(t, s, "acme", user)
			var got []string
			for _, v := range p.Properties["seen"].([]any) {
				got = append(got, v.(string))
			}
			slices.Sort(got)
			slices.Sort(eids)
			if !slices.Equal(got, eids) {
				t.Errorf("%s: seen %d eids, %d stored for it: an update was lost", user, len(got), len(eids))
			}
		}
	})
}

// Many concurrent small calls, as the events API makes them: each eid is
// new once, every update is applied, and a call for a missing label fails
// alone (on SQLite they share group commits).
func TestIngestManySmallCalls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		ctx := t.Context()
		mustLabel(t, s, "acme")
		mustIngest(t, s, "acme", nil, ev("reg", "registration", "u1", nil))
		const callers = 40
		var wg sync.WaitGroup
		outs := make([][]store.Outcome, callers)
		errs := make([]error, callers)
		for c := range callers {
			wg.Go(func() {
				label := "acme"
				if c%10 == 9 {
					label = "nope"
				}
				evs := []event.Event{
					ev(fmt.Sprintf("e%d", c), "update_profile", "u1", map[string]any{"+seen": fmt.Sprint(c)}),
					ev(fmt.Sprintf("e%d", c/2), "bet", "u1", nil), // shared with another caller
				}
				outs[c], errs[c] = s.Ingest(ctx, label, evs, nil)
			})
		}
		wg.Wait()
		var seen []string
		for c := range callers {
			if c%10 == 9 {
				if !errors.Is(errs[c], store.ErrNotFound) {
					t.Errorf("call %d (missing label): %v, want ErrNotFound", c, errs[c])
				}
				continue
			}
			if errs[c] != nil {
				t.Fatalf("call %d: %v", c, errs[c])
			}
			if !outs[c][0].Duplicate {
				seen = append(seen, fmt.Sprint(c))
			}
		}
		p := mustPlayer(t, s, "acme", "u1")
		var got []string
		for _, v := range p.Properties["seen"].([]any) {
			got = append(got, v.(string))
		}
		slices.Sort(got)
		slices.Sort(seen)
		if !slices.Equal(got, seen) {
			t.Errorf("seen = %v, want %v", got, seen)
		}
		stored, err := s.StoredEvents(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]int{}
		for _, e := range stored {
			ids[e.EID]++
		}
		for id, n := range ids {
			if n != 1 {
				t.Errorf("%s stored %d times", id, n)
			}
		}
	})
}

func TestIngestAfterCloseOrCancel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		mustLabel(t, s, "acme")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := s.Ingest(ctx, "acme", []event.Event{ev("e1", "registration", "u1", nil)}, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v, want context.Canceled", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Ingest(t.Context(), "acme", []event.Event{ev("e2", "registration", "u1", nil)}, nil); !errors.Is(err, store.ErrClosed) {
			t.Errorf("after Close: %v, want ErrClosed", err)
		}
	})
}
