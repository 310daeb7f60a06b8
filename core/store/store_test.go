package store_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/store"
)

// clock is a settable Now for the store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

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

// mustLabel creates label id with brand "b1".
func mustLabel(t testing.TB, s *store.Store, id string) {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateLabel(ctx, id, "Label "+id); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBrand(ctx, id, "b1"); err != nil {
		t.Fatal(err)
	}
}

func TestLabels(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		ctx := t.Context()
		if ls, err := s.Labels(ctx); err != nil || len(ls) != 0 {
			t.Fatalf("Labels of a new store = %v, %v", ls, err)
		}
		if err := s.CreateLabel(ctx, "acme", "Acme Casino"); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateLabel(ctx, "acme", "Again"); !errors.Is(err, store.ErrExists) {
			t.Errorf("CreateLabel twice: %v, want ErrExists", err)
		}
		if err := s.CreateLabel(ctx, "beta-2", "Beta"); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"", "Acme", "-x", "a b", "a/b", strings.Repeat("a", 65)} {
			if err := s.CreateLabel(ctx, id, "x"); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreateLabel(%q): %v, want ErrInvalid", id, err)
			}
		}
		for _, name := range []string{"", "a\nb", strings.Repeat("n", 201)} {
			if err := s.CreateLabel(ctx, "named", name); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreateLabel name %q: %v, want ErrInvalid", name, err)
			}
		}

		for _, b := range []string{"brand-2", "brand-1", "brand-1"} { // twice is no error
			if err := s.AddBrand(ctx, "acme", b); err != nil {
				t.Fatalf("AddBrand(%s): %v", b, err)
			}
		}
		if err := s.AddBrand(ctx, "acme", ""); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("AddBrand empty: %v, want ErrInvalid", err)
		}
		if err := s.SetFirewallMode(ctx, "acme", store.FirewallStrip); err != nil {
			t.Fatal(err)
		}
		if err := s.SetFirewallMode(ctx, "acme", "allow"); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SetFirewallMode(allow): %v, want ErrInvalid", err)
		}
		for _, name := range []string{"kyc_passed", "bonus_claimed", "kyc_passed"} {
			if err := s.RegisterEventType(ctx, "acme", name); err != nil {
				t.Fatalf("RegisterEventType(%s): %v", name, err)
			}
		}
		for _, name := range []string{"deposit", "Bad", "1x", "a-b", ""} {
			if err := s.RegisterEventType(ctx, "acme", name); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("RegisterEventType(%q): %v, want ErrInvalid", name, err)
			}
		}

		// Changes to a label that does not exist.
		for name, err := range map[string]error{
			"AddBrand":          s.AddBrand(ctx, "nope", "b"),
			"SetFirewallMode":   s.SetFirewallMode(ctx, "nope", store.FirewallStrip),
			"RegisterEventType": s.RegisterEventType(ctx, "nope", "custom"),
		} {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s on a missing label: %v, want ErrNotFound", name, err)
			}
		}
		if _, err := s.Label(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Label(nope): %v, want ErrNotFound", err)
		}

		acme := store.Label{
			ID: "acme", Name: "Acme Casino", Brands: []string{"brand-1", "brand-2"},
			FirewallMode: store.FirewallStrip, EventTypes: []string{"bonus_claimed", "kyc_passed"},
		}
		beta := store.Label{ID: "beta-2", Name: "Beta", FirewallMode: store.FirewallReject}
		if l, err := s.Label(ctx, "acme"); err != nil || !equalLabel(l, acme) {
			t.Errorf("Label(acme) = %+v, %v; want %+v", l, err, acme)
		}
		ls, err := s.Labels(ctx)
		if err != nil || len(ls) != 2 || !equalLabel(ls[0], acme) || !equalLabel(ls[1], beta) {
			t.Errorf("Labels = %+v, %v; want [%+v %+v]", ls, err, acme, beta)
		}
	})
}

func equalLabel(a, b store.Label) bool {
	return a.ID == b.ID && a.Name == b.Name && a.FirewallMode == b.FirewallMode &&
		slices.Equal(a.Brands, b.Brands) && slices.Equal(a.EventTypes, b.EventTypes)
}

func TestAPIKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		clk := newClock()
		s := be.openWith(t, store.Config{Now: clk.Now})
		ctx := t.Context()
		mustLabel(t, s, "acme")
		mustLabel(t, s, "beta")

		k1, info1, err := s.CreateAPIKey(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
		k2, info2, err := s.CreateAPIKey(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		kb, _, err := s.CreateAPIKey(ctx, "beta")
		if err != nil {
			t.Fatal(err)
		}
		if k1 == k2 || info1.ID == info2.ID {
			t.Fatal("two keys are the same")
		}
		if !strings.HasPrefix(k1, "bpk_"+info1.ID+"_") || len(k1) != len("bpk_")+16+1+64 {
			t.Errorf("key format: %d characters, id %s", len(k1), info1.ID)
		}
		if info1.Label != "acme" || !info1.Created.Equal(newClock().Now()) || !info1.Revoked.IsZero() {
			t.Errorf("info = %+v", info1)
		}
		if _, _, err := s.CreateAPIKey(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CreateAPIKey(nope): %v, want ErrNotFound", err)
		}

		// Two valid at once, each naming its label.
		for key, want := range map[string]string{k1: "acme", k2: "acme", kb: "beta"} {
			if got, err := s.Authenticate(ctx, key); err != nil || got != want {
				t.Errorf("Authenticate = %q, %v; want %q", got, err, want)
			}
		}

		// Wrong keys, all alike.
		last := k1[len(k1)-1]
		flip := byte('0')
		if last == '0' {
			flip = '1'
		}
		wrong := map[string]string{
			"empty":            "",
			"other secret":     k1[:len(k1)-1] + string(flip),
			"other id":         "bpk_" + info2.ID + k1[len("bpk_")+16:],
			"unknown id":       "bpk_0000000000000000" + k1[len("bpk_")+16:],
			"truncated":        k1[:len(k1)-1],
			"extended":         k1 + "0",
			"upper case":       strings.ToUpper(k1),
			"no prefix":        strings.TrimPrefix(k1, "bpk_"),
			"secret in clear":  k1[len(k1)-64:],
			"not hex":          k1[:len(k1)-1] + "g",
			"id of the secret": "bpk_" + info1.ID,
		}
		for name, key := range wrong {
			if got, err := s.Authenticate(ctx, key); !errors.Is(err, store.ErrUnauthorized) || got != "" {
				t.Errorf("%s: Authenticate = %q, %v; want ErrUnauthorized", name, got, err)
			}
		}

		// Revocation ends one key at once; the other still works.
		clk.Advance(time.Second)
		if err := s.RevokeAPIKey(ctx, "acme", info1.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, k1); !errors.Is(err, store.ErrUnauthorized) {
			t.Errorf("revoked key: %v, want ErrUnauthorized", err)
		}
		if got, err := s.Authenticate(ctx, k2); err != nil || got != "acme" {
			t.Errorf("other key after revocation: %q, %v", got, err)
		}
		revokedAt := clk.Now()
		clk.Advance(time.Second)
		if err := s.RevokeAPIKey(ctx, "acme", info1.ID); err != nil {
			t.Errorf("revoking twice: %v", err)
		}
		if err := s.RevokeAPIKey(ctx, "beta", info2.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("revoking another label's key: %v, want ErrNotFound", err)
		}
		if err := s.RevokeAPIKey(ctx, "acme", "0000000000000000"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("revoking an unknown key: %v, want ErrNotFound", err)
		}

		keys, err := s.APIKeys(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2 || keys[0].ID != info1.ID || keys[1].ID != info2.ID {
			t.Fatalf("APIKeys = %+v", keys)
		}
		if !keys[0].Revoked.Equal(revokedAt) || !keys[1].Revoked.IsZero() || !keys[1].Created.Equal(info2.Created) {
			t.Errorf("APIKeys = %+v, want the first revoked at %v", keys, revokedAt)
		}
	})
}

// Invariant 8 (secrets never stored): the database holds a hash of each
// API key, never the key or its secret.
func TestAPIKeysAreNeverStoredInClear(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		ctx := t.Context()
		mustLabel(t, s, "acme")
		key, info, err := s.CreateAPIKey(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		secretHex := key[len(key)-64:]
		secret, err := hex.DecodeString(secretHex)
		if err != nil {
			t.Fatal(err)
		}
		needles := [][]byte{[]byte(secretHex), secret, []byte(strings.ToUpper(secretHex))}

		var haystack []byte
		switch be.cfg.Driver {
		case store.DriverSQLite:
			scan := func() {
				for _, suffix := range []string{"", "-wal", "-shm"} {
					b, err := os.ReadFile(be.cfg.Path + suffix)
					if err != nil && !errors.Is(err, os.ErrNotExist) {
						t.Fatal(err)
					}
					haystack = append(haystack, b...)
				}
			}
			scan() // the WAL, before a checkpoint
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			scan() // the database file, after it
			if !bytes.Contains(haystack, []byte(info.ID)) {
				t.Fatal("the key's id is not in the files: the scan reads the wrong files")
			}
		case store.DriverPostgres:
			rows, err := admin(t).Query(ctx, `SELECT row_to_json(k)::text FROM `+be.cfg.Schema+`.api_keys k`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var r string
				if err := rows.Scan(&r); err != nil {
					t.Fatal(err)
				}
				haystack = append(haystack, r...)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(haystack), info.ID) {
				t.Fatal("the key's id is not in the table")
			}
		}
		for _, n := range needles {
			if bytes.Contains(haystack, n) {
				t.Fatalf("the API key's secret is stored in clear")
			}
		}
	})
}

func TestCheckpoints(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		s := be.open(t)
		ctx := t.Context()
		if v, err := s.Checkpoint(ctx, "dbviews:acme:players"); err != nil || v != "" {
			t.Fatalf("Checkpoint before any = %q, %v; want empty", v, err)
		}
		for _, v := range []string{"2030-01-02T03:04:05Z", "2030-01-02T03:05:00Z|42"} {
			if err := s.SaveCheckpoint(ctx, "dbviews:acme:players", v); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Checkpoint(ctx, "dbviews:acme:players"); err != nil || got != v {
				t.Fatalf("Checkpoint = %q, %v; want %q", got, err, v)
			}
		}
		if err := s.SaveCheckpoint(ctx, "other", "1"); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Checkpoint(ctx, "dbviews:acme:players"); got != "2030-01-02T03:05:00Z|42" {
			t.Errorf("another source's checkpoint overwrote this one: %q", got)
		}
		for name, err := range map[string]error{
			"empty source":  s.SaveCheckpoint(ctx, "", "1"),
			"NUL in value":  s.SaveCheckpoint(ctx, "x", "a\x00b"),
			"huge value":    s.SaveCheckpoint(ctx, "x", strings.Repeat("9", 5000)),
			"control chars": s.SaveCheckpoint(ctx, "x\n", "1"),
		} {
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", name, err)
			}
		}
	})
}

// Everything acknowledged survives closing and reopening the store.
func TestDurableAcrossReopen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		ctx := t.Context()
		s := be.open(t)
		mustLabel(t, s, "acme")
		key, _, err := s.CreateAPIKey(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		mustIngest(t, s, "acme", nil,
			ev("e1", "registration", "u1", nil),
			ev("e2", "update_profile", "u1", obj(`{"+tags": ["vip"], "level": 3}`)),
			ev("e3", "login", "u1", nil))
		if _, err := s.Ingest(ctx, "acme", nil, []eventRejection{{EID: "r1", Reason: "email", Path: "payload.x"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCheckpoint(ctx, "src", "w1"); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := s.Label(ctx, "acme"); err == nil {
			t.Error("Label on a closed store succeeded")
		}

		s = be.open(t)
		if l, err := s.Label(ctx, "acme"); err != nil || !slices.Equal(l.Brands, []string{"b1"}) {
			t.Fatalf("label after reopen: %+v, %v", l, err)
		}
		if got, err := s.Authenticate(ctx, key); err != nil || got != "acme" {
			t.Fatalf("key after reopen: %q, %v", got, err)
		}
		outs := mustIngest(t, s, "acme", nil, ev("e2", "update_profile", "u1", obj(`{"level": 99}`)), ev("e4", "deposit", "u1", nil))
		if !outs[0].Duplicate || outs[1] != (store.Outcome{}) {
			t.Fatalf("outcomes after reopen = %+v, want the old eid a duplicate", outs)
		}
		p, err := s.Player(ctx, "acme", "b1", "u1")
		if err != nil {
			t.Fatal(err)
		}
		if p.Properties["level"] != num("3") || !slices.Equal(p.Tags, []string{"vip"}) || p.LastOnline.IsZero() {
			t.Fatalf("player after reopen = %+v", p)
		}
		if v, err := s.Checkpoint(ctx, "src"); err != nil || v != "w1" {
			t.Fatalf("checkpoint after reopen = %q, %v", v, err)
		}
		if c, err := s.RejectionCounts(ctx); err != nil || c["acme"]["email"] != 1 {
			t.Fatalf("rejection counts after reopen = %v, %v", c, err)
		}
	})
}

func TestSQLiteFileIsOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "core.db")
	// A file left readable by others is narrowed.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(t.Context(), store.Config{Path: path, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustLabel(t, s, "acme")
	mustIngest(t, s, "acme", nil, ev("e1", "registration", "u1", nil)) // takes the lock
	for _, p := range []string{path, path + "-wal", path + "-shm", path + ".lock"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(p), m)
		}
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	ctx := t.Context()
	for name, cfg := range map[string]store.Config{
		"unknown driver":   {Driver: "mysql"},
		"sqlite, no path":  {},
		"postgres, schema": {Driver: store.DriverPostgres, DSN: dsn(), Schema: "Bad; DROP"},
	} {
		if s, err := store.Open(ctx, cfg); !errors.Is(err, store.ErrInvalid) {
			if s != nil {
				s.Close()
			}
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestSQLiteNewerSchemaIsRefused(t *testing.T) {
	be := newBackend(t, store.DriverSQLite)
	be.open(t).Close()
	s, err := store.Open(t.Context(), store.Config{Path: be.cfg.Path})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := sqliteRaw(t, be.cfg.Path)
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := store.Open(t.Context(), store.Config{Path: be.cfg.Path}); err == nil {
		s.Close()
		t.Fatal("Open accepted a schema migrated by a newer binary")
	}
}

// One process ingests into a SQLite file: another store of the file (the
// admin CLI's) may manage labels and keys, but its Ingest fails until the
// first store is closed.
func TestSQLiteIngestsFromOneStore(t *testing.T) {
	be := newBackend(t, store.DriverSQLite)
	s := be.open(t)
	mustLabel(t, s, "acme")
	mustIngest(t, s, "acme", nil, ev("e1", "registration", "u1", nil))

	admin, err := store.Open(t.Context(), be.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateLabel(t.Context(), "beta", "Beta"); err != nil {
		t.Fatalf("CreateLabel beside an ingesting store: %v", err)
	}
	if _, _, err := admin.CreateAPIKey(t.Context(), "acme"); err != nil {
		t.Fatalf("CreateAPIKey beside an ingesting store: %v", err)
	}
	if _, err := admin.Ingest(t.Context(), "acme", []event.Event{ev("e2", "login", "u1", nil)}, nil); err == nil ||
		!strings.Contains(err.Error(), "ingests into this file") {
		t.Fatalf("a second store's Ingest: %v, want it refused", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Ingest(t.Context(), "acme", []event.Event{ev("e2", "login", "u1", nil)}, nil); err != nil {
		t.Fatalf("Ingest once the first store closed: %v", err)
	}
}
