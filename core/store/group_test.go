package store

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/blindpost/blindpost/core/event"
)

// A group's calls share one transaction: a later call sees an earlier
// one's events (as duplicates) and player changes (through the cache's
// pending state), and a call for a missing label fails alone.
func TestCommitGroup(t *testing.T) {
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "core.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if err := s.CreateLabel(ctx, "acme", "Acme"); err != nil {
		t.Fatal(err)
	}
	up := func(eid, tag string) event.Event {
		return event.Event{EID: eid, EventDate: 1, Brand: "b1", User: "u1", Type: event.TypeUpdateProfile,
			Payload: map[string]any{"+tags": tag}}
	}
	mustBatch := func(label string, evs ...event.Event) *batch {
		b, err := newBatch(label, evs, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The player is cached before the group, so that a stale cache would
	// show.
	if _, err := s.Ingest(ctx, "acme", []event.Event{up("e0", "t0")}, nil); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	group := []*ingestReq{
		{ctx: ctx, b: mustBatch("acme", up("e1", "t1"))},
		{ctx: ctx, b: mustBatch("nope", up("x1", "tx"))},
		{ctx: cancelled, b: mustBatch("acme", up("c1", "tc"))},
		{ctx: ctx, b: mustBatch("acme", up("e1", "dup"), up("e2", "t2"))},
	}
	for _, r := range group {
		r.done = make(chan ingestResult, 1)
	}
	s.commitGroup(group)
	res := make([]ingestResult, len(group))
	for i, r := range group {
		res[i] = <-r.done
	}
	if res[0].err != nil || !reflect.DeepEqual(res[0].outs, []Outcome{{}}) {
		t.Errorf("call 0: %+v", res[0])
	}
	if !errors.Is(res[1].err, ErrNotFound) {
		t.Errorf("call 1 (missing label): %v, want ErrNotFound", res[1].err)
	}
	if !errors.Is(res[2].err, context.Canceled) {
		t.Errorf("call 2 (caller gone): %v, want context.Canceled", res[2].err)
	}
	if res[3].err != nil || !reflect.DeepEqual(res[3].outs, []Outcome{{Duplicate: true}, {}}) {
		t.Errorf("call 3: %+v", res[3])
	}
	p, err := s.Player(ctx, "acme", "b1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"t0", "t1", "t2"}; !reflect.DeepEqual(p.Tags, want) {
		t.Errorf("tags = %q, want %q", p.Tags, want)
	}
	// The cache holds what the file holds.
	c, ok := s.cache.get(ckey{"acme", "b1", "u1"})
	if !ok || c.raw != `{"tags":["t0","t1","t2"]}` {
		t.Errorf("cached = %+v, %v", c, ok)
	}
}

// A group whose transaction fails is written again call by call, so that
// a call that fails fails alone.
func TestCommitGroupFailureIsolatesCalls(t *testing.T) {
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "core.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if err := s.CreateLabel(ctx, "acme", "Acme"); err != nil {
		t.Fatal(err)
	}
	good, err := newBatch("acme", []event.Event{{EID: "g1", EventDate: 1, Brand: "b1", User: "u1", Type: event.TypeRegistration}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := newBatch("acme", []event.Event{{EID: "b1", EventDate: 1, Brand: "b1", User: "u1", Type: event.TypeRegistration}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad.evs[0].Type = event.TypeUpdateProfile // after the check: the walk fails on it
	bad.evs[0].Payload = map[string]any{"k": make(chan int)}
	group := []*ingestReq{
		{ctx: ctx, b: good, done: make(chan ingestResult, 1)},
		{ctx: ctx, b: bad, done: make(chan ingestResult, 1)},
	}
	s.commitGroup(group)
	if r := <-group[0].done; r.err != nil {
		t.Errorf("good call: %v", r.err)
	}
	if r := <-group[1].done; !errors.Is(r.err, ErrInvalid) {
		t.Errorf("bad call: %v, want ErrInvalid", r.err)
	}
	if _, err := s.Player(ctx, "acme", "b1", "u1"); err != nil {
		t.Errorf("the good call's player: %v", err)
	}
}
