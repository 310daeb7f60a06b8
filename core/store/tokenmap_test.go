package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/store"
)

// tk makes a well-formed token: kind, key version, and a MAC of c.
func tk(kind string, v int, c byte) string {
	return fmt.Sprintf("tok_%s_v%d_%s", kind, v, strings.Repeat(string(c), 32))
}

// numbered makes the i-th token of a kind and version: distinct MACs.
func numbered(kind string, v, i int) string {
	mac := []byte(fmt.Sprintf("%032d", i))
	for j := range mac {
		mac[j] += 'a' - '0'
	}
	return fmt.Sprintf("tok_%s_v%d_%s", kind, v, mac)
}

// props is a player's properties as JSON, for comparing.
func props(t testing.TB, s *store.Store, label, user string) string {
	t.Helper()
	return fmt.Sprint(mustPlayer(t, s, label, user).Properties)
}

func TestApplyTokenPairs(t *testing.T) {
	var (
		email1, email2 = tk("email", 1, 'a'), tk("email", 2, 'a')
		phone1, phone2 = tk("phone", 1, 'b'), tk("phone", 2, 'b')
		tg1, tg2       = tk("tg", 1, 'c'), tk("tg", 2, 'c')
		unmapped       = tk("email", 1, 'z')
	)
	pairs := map[string]string{email1: email2, phone1: phone2, tg1: tg2}
	forEachBackend(t, func(t *testing.T, be *backend) {
		clk := newClock()
		s := be.openWith(t, store.Config{Now: clk.Now})
		ctx := t.Context()
		mustLabel(t, s, "acme")
		mustLabel(t, s, "beta")
		mustIngest(t, s, "acme", nil,
			ev("e1", "update_profile", "u1", obj(`{"email_token": "`+email1+`", "phone_token": "`+phone1+`", "vip": true, "score": 1.50, "big": 1e400}`)),
			ev("e2", "update_profile", "u2", obj(`{"contacts": ["`+email1+`", "x", {"tg": "`+tg1+`"}], "meta": {"deep": {"phone": "`+phone1+`"}}, "n": null}`)),
			ev("e3", "update_profile", "u3", obj(`{"+tokens": ["`+email1+`", "`+email2+`", "`+phone1+`"]}`)),
			ev("e4", "update_profile", "u4", obj(`{"email_token": "`+unmapped+`", "note": "tok_", "`+email1+`": 1}`)),
			ev("e5", "registration", "u5", nil))
		mustIngest(t, s, "beta", nil, ev("e1", "update_profile", "u1", obj(`{"email_token": "`+email1+`"}`)))
		before := mustPlayer(t, s, "acme", "u1")
		untouched := map[string]string{}
		for _, u := range []string{"u4", "u5"} {
			untouched[u] = props(t, s, "acme", u)
		}

		clk.Advance(time.Hour)
		players, values, err := s.ApplyTokenPairs(ctx, "acme", pairs)
		if err != nil {
			t.Fatal(err)
		}
		if players != 3 || values != 7 {
			t.Errorf("ApplyTokenPairs = %d players, %d values; want 3, 7", players, values)
		}
		want := map[string]map[string]any{
			"u1": obj(`{"email_token": "` + email2 + `", "phone_token": "` + phone2 + `", "vip": true, "score": 1.50, "big": 1e400}`),
			"u2": obj(`{"contacts": ["` + email2 + `", "x", {"tg": "` + tg2 + `"}], "meta": {"deep": {"phone": "` + phone2 + `"}}, "n": null}`),
			// The array keeps one copy of the new token it had already.
			"u3": obj(`{"tokens": ["` + email2 + `", "` + phone2 + `"]}`),
		}
		for u, w := range want {
			got := mustPlayer(t, s, "acme", u)
			if !reflect.DeepEqual(got.Properties, w) {
				t.Errorf("%s: properties %v, want %v", u, got.Properties, w)
			}
			if !got.UpdatedAt.Equal(clk.Now()) {
				t.Errorf("%s: UpdatedAt %v, want %v", u, got.UpdatedAt, clk.Now())
			}
		}
		// What else the player is stays as it was, numbers as sent.
		after := mustPlayer(t, s, "acme", "u1")
		if after.Properties["score"] != num("1.50") || after.Properties["big"] != num("1e400") ||
			!after.FirstSeen.Equal(before.FirstSeen) || !after.LastOnline.Equal(before.LastOnline) {
			t.Errorf("u1 after: %+v, before %+v", after, before)
		}
		// Unmapped tokens, keys and other labels are left alone.
		for u, p := range untouched {
			if got := props(t, s, "acme", u); got != p {
				t.Errorf("%s changed: %s, was %s", u, got, p)
			}
		}
		if got := mustPlayer(t, s, "beta", "u1").Properties["email_token"]; got != email1 {
			t.Errorf("another label's player was rewritten: %v", got)
		}

		// Applying again changes nothing: a later file goes over an earlier one.
		if p, v, err := s.ApplyTokenPairs(ctx, "acme", pairs); err != nil || p != 0 || v != 0 {
			t.Errorf("second ApplyTokenPairs = %d, %d, %v; want nothing changed", p, v, err)
		}

		// The store's view of a player (SQLite: its cache) holds the new
		// token: a later update keeps it.
		mustIngest(t, s, "acme", nil, ev("e6", "update_profile", "u1", obj(`{"level": 2}`)),
			ev("e7", "update_profile", "u3", obj(`{"+tokens": "`+email2+`"}`)))
		if p := mustPlayer(t, s, "acme", "u1"); p.Properties["email_token"] != email2 || p.Properties["level"] != num("2") {
			t.Errorf("after an update: %v", p.Properties)
		}
		if got := mustPlayer(t, s, "acme", "u3").Properties["tokens"]; !reflect.DeepEqual(got, []any{email2, phone2}) {
			t.Errorf("u3 tokens after +tokens of the new token: %v", got)
		}
	})
}

// Pages of the scan and batches of the rewrite: every player is reached
// once, whatever the page boundaries. The candidates (three in four
// players) fill more than one page, which ends inside a brand and goes on
// into the next.
func TestApplyTokenPairsManyPlayers(t *testing.T) {
	const n = 2100
	pairs := map[string]string{}
	for i := range n {
		pairs[numbered("email", 1, i)] = numbered("email", 2, i)
	}
	brand := func(i int) string { return fmt.Sprint("b", i%3+1) }
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		mustLabel(t, s, "acme")
		var evs []event.Event
		for i := range n {
			e := ev(fmt.Sprint("e", i), "update_profile", fmt.Sprintf("u%04d", i), obj(`{"email_token": "`+numbered("email", 1, i)+`"}`))
			e.Brand = brand(i)
			if i%4 == 0 {
				e.Payload = obj(`{"level": 1}`)
			}
			evs = append(evs, e)
		}
		mustIngest(t, s, "acme", nil, evs...)
		players, values, err := s.ApplyTokenPairs(t.Context(), "acme", pairs)
		want := n - (n+3)/4
		if err != nil || players != want || values != want {
			t.Fatalf("ApplyTokenPairs = %d, %d, %v; want %d, %d", players, values, err, want, want)
		}
		for i := range n {
			p, err := s.Player(t.Context(), "acme", brand(i), fmt.Sprintf("u%04d", i))
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Properties["email_token"]; i%4 != 0 && got != numbered("email", 2, i) {
				t.Fatalf("player %d: email_token %v", i, got)
			}
		}
	})
}

// Ingest keeps running during the rewrite: no update is lost and no token
// goes back to its old value.
func TestApplyTokenPairsWhileIngesting(t *testing.T) {
	const n = 300
	pairs := map[string]string{}
	for i := range n {
		pairs[numbered("email", 1, i)] = numbered("email", 2, i)
	}
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		mustLabel(t, s, "acme")
		var evs []event.Event
		for i := range n {
			evs = append(evs, ev(fmt.Sprint("r", i), "update_profile", fmt.Sprint("u", i), obj(`{"email_token": "`+numbered("email", 1, i)+`"}`)))
		}
		mustIngest(t, s, "acme", nil, evs...)
		const rounds = 5
		var wg sync.WaitGroup
		wg.Go(func() {
			for r := range rounds {
				var evs []event.Event
				for i := range n {
					evs = append(evs, ev(fmt.Sprint("x", r, "-", i), "update_profile", fmt.Sprint("u", i), obj(fmt.Sprintf(`{"round": %d}`, r))))
				}
				for lo := 0; lo < n; lo += 50 {
					if _, err := s.Ingest(t.Context(), "acme", evs[lo:lo+50], nil); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
		players, _, err := s.ApplyTokenPairs(t.Context(), "acme", pairs)
		wg.Wait()
		if err != nil || players != n {
			t.Fatalf("ApplyTokenPairs = %d players, %v; want %d", players, err, n)
		}
		for i := range n {
			p := mustPlayer(t, s, "acme", fmt.Sprint("u", i))
			if p.Properties["email_token"] != numbered("email", 2, i) || p.Properties["round"] != num(fmt.Sprint(rounds-1)) {
				t.Fatalf("u%d: %v", i, p.Properties)
			}
		}
	})
}

func TestApplyTokenPairsRefuses(t *testing.T) {
	a1, a2, a3 := tk("email", 1, 'a'), tk("email", 2, 'a'), tk("email", 3, 'a')
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		mustLabel(t, s, "acme")
		mustIngest(t, s, "acme", nil, ev("e1", "update_profile", "u1", obj(`{"email_token": "`+a1+`", "x": "true"}`)))
		for _, tc := range []struct {
			name  string
			label string
			pairs map[string]string
			want  error
		}{
			{"no such label", "nope", map[string]string{a1: a2}, store.ErrNotFound},
			{"not a token", "acme", map[string]string{"true": "false"}, store.ErrInvalid},
			{"new not a token", "acme", map[string]string{a1: ""}, store.ErrInvalid},
			{"a token to itself", "acme", map[string]string{a1: a1}, store.ErrInvalid},
			{"a chain", "acme", map[string]string{a1: a2, a2: a3}, store.ErrInvalid},
			{"NUL", "acme", map[string]string{a1: a2 + "\x00"}, store.ErrInvalid},
		} {
			if _, _, err := s.ApplyTokenPairs(t.Context(), tc.label, tc.pairs); !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}
		if p := mustPlayer(t, s, "acme", "u1"); p.Properties["email_token"] != a1 || p.Properties["x"] != "true" {
			t.Errorf("a refused apply changed the player: %v", p.Properties)
		}
		if p, v, err := s.ApplyTokenPairs(t.Context(), "acme", nil); p != 0 || v != 0 || err != nil {
			t.Errorf("no pairs: %d, %d, %v", p, v, err)
		}
	})
}

// On SQLite, the process that ingests keeps players in memory: another
// store of the file may not rewrite them behind its back.
func TestApplyTokenPairsSQLiteNeedsTheIngestLock(t *testing.T) {
	a1, a2 := tk("email", 1, 'a'), tk("email", 2, 'a')
	be := newBackend(t, store.DriverSQLite)
	s := be.open(t)
	mustLabel(t, s, "acme")
	mustIngest(t, s, "acme", nil, ev("e1", "update_profile", "u1", obj(`{"email_token": "`+a1+`"}`)))
	other, err := store.Open(t.Context(), be.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, _, err := other.ApplyTokenPairs(t.Context(), "acme", map[string]string{a1: a2}); err == nil || !strings.Contains(err.Error(), "ingests into this file") {
		t.Fatalf("a second store's ApplyTokenPairs: %v, want it refused", err)
	}
	if p := mustPlayer(t, s, "acme", "u1"); p.Properties["email_token"] != a1 {
		t.Fatalf("the refused apply changed the player: %v", p.Properties)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if p, _, err := other.ApplyTokenPairs(t.Context(), "acme", map[string]string{a1: a2}); err != nil || p != 1 {
		t.Fatalf("once the ingesting store closed: %d, %v", p, err)
	}
}

// BenchmarkApplyTokenPairs rewrites the email token of 20,000 players, a
// third of a label's 30,000, with realistic properties beside it; each
// iteration maps them one way, then back. Reports players rewritten per
// second.
func BenchmarkApplyTokenPairs(b *testing.B) {
	const players, withToken = 30_000, 20_000
	forward, back := map[string]string{}, map[string]string{}
	for i := range withToken {
		forward[numbered("email", 1, i)] = numbered("email", 2, i)
		back[numbered("email", 2, i)] = numbered("email", 1, i)
	}
	for _, name := range []string{store.DriverSQLite, store.DriverPostgres} {
		b.Run(name, func(b *testing.B) {
			be := newBackend(b, name)
			s := be.open(b)
			mustLabel(b, s, "acme")
			var evs []event.Event
			for i := range players {
				p := obj(`{"level": 12, "+tags": ["vip", "active"], "core_is_sms_disabled": false, "balance": 123.45, "country": "MT"}`)
				if i < withToken {
					p["email_token"] = numbered("email", 1, i)
				}
				evs = append(evs, event.Event{EID: fmt.Sprint("e", i), EventDate: baseDate, Brand: "b1", User: fmt.Sprint("user-", i),
					Type: event.TypeUpdateProfile, Payload: p})
				if len(evs) == 2000 {
					mustIngest(b, s, "acme", nil, evs...)
					evs = evs[:0]
				}
			}
			ways := []map[string]string{forward, back}
			n := 0
			for b.Loop() {
				p, _, err := s.ApplyTokenPairs(context.Background(), "acme", ways[n%2])
				if err != nil || p != withToken {
					b.Fatalf("ApplyTokenPairs = %d, %v", p, err)
				}
				n++
			}
			b.ReportMetric(float64(withToken*n)/b.Elapsed().Seconds(), "players/s")
		})
	}
}
