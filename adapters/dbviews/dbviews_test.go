package dbviews_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/blindpost/blindpost/adapters/dbviews"
)

// canary is in every test payload; no log line may contain it.
const canary = "canary-payload-41c7"

var ctx = context.Background()

// backend is one of the two database servers the tests run against.
type backend struct {
	driver  string // as in dbviews.Config
	sqlName string // database/sql driver name
	envVar  string
	dsn     string
}

var backends = []backend{
	{"postgres", "pgx", "BLINDPOST_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"},
	{"mysql", "mysql", "BLINDPOST_TEST_MYSQL", "root@tcp(127.0.0.1:3306)/test"},
}

func (b backend) DSN() string {
	if d := os.Getenv(b.envVar); d != "" {
		return d
	}
	return b.dsn
}

var servers struct {
	mu  sync.Mutex
	err map[string]error
}

// open connects the test's own handle, skipping the test (or failing it
// under CI=true) if the server is unreachable.
func (b backend) open(t testing.TB) *sql.DB {
	t.Helper()
	servers.mu.Lock()
	if servers.err == nil {
		servers.err = make(map[string]error)
	}
	err, tried := servers.err[b.driver]
	db, oerr := sql.Open(b.sqlName, b.DSN())
	if oerr != nil {
		servers.mu.Unlock()
		t.Fatal(oerr)
	}
	if !tried {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = db.PingContext(c)
		cancel()
		servers.err[b.driver] = err
	}
	servers.mu.Unlock()
	if err != nil {
		db.Close()
		msg := fmt.Sprintf("%s is unreachable (%v); start it with scripts/services.sh or set %s", b.driver, err, b.envVar)
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: " + msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func forEachBackend(t *testing.T, f func(t *testing.T, f *fixture)) {
	for _, b := range backends {
		t.Run(b.driver, func(t *testing.T) { f(t, newFixture(t, b, dbviews.Timestamp, "")) })
	}
}

// fixture is a fresh table and a view over it, dropped when the test ends.
type fixture struct {
	t      testing.TB
	b      backend
	db     *sql.DB
	view   string
	wmType string
}

// colType, if not empty, is the watermark column's SQL type.
func newFixture(t testing.TB, b backend, wmType, colType string) *fixture {
	t.Helper()
	db := b.open(t)
	var r [5]byte
	rand.Read(r[:])
	view := "bp_dbviews_" + hex.EncodeToString(r[:])
	wm := "timestamptz"
	ddl := `CREATE TABLE %s_t (eid text, event_date bigint, ext_brand_id text, user_ext_id text, event_type text, payload text, updated_at %s)`
	if b.driver == "mysql" {
		wm = "datetime(6)"
		ddl = `CREATE TABLE %s_t (eid varchar(128), event_date bigint, ext_brand_id varchar(128), user_ext_id varchar(128), event_type varchar(64), payload longtext, updated_at %s) ENGINE=InnoDB`
	}
	if wmType == dbviews.Integer {
		wm = "bigint"
	}
	if colType != "" {
		wm = colType
	}
	for _, q := range []string{
		fmt.Sprintf(ddl, view, wm),
		fmt.Sprintf(`CREATE INDEX %s_wm ON %s_t (updated_at)`, view, view),
		fmt.Sprintf(`CREATE VIEW %s AS SELECT eid, event_date, ext_brand_id, user_ext_id, event_type, payload, updated_at FROM %s_t`, view, view),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, q := range []string{"DROP VIEW IF EXISTS " + view, "DROP TABLE IF EXISTS " + view + "_t"} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	return &fixture{t, b, db, view, wmType}
}

type execer interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}

var base = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// wm is the i-th watermark: base + i seconds, or i.
func (f *fixture) wm(i int) any {
	if f.wmType == dbviews.Integer {
		return int64(i)
	}
	return base.Add(time.Duration(i) * time.Second)
}

// insert adds the event e-<i> with the watermark wm(w) through x.
func (f *fixture) insert(x execer, i, w int) {
	f.t.Helper()
	f.insertRow(x, fmt.Sprintf("e-%d", i), fmt.Sprintf(`{"amount": %d, "note": %q}`, i, canary), f.wm(w))
}

func (f *fixture) insertRow(x execer, eid, payload, wm any) {
	f.t.Helper()
	q := `INSERT INTO %s_t (eid, event_date, ext_brand_id, user_ext_id, event_type, payload, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`
	if f.b.driver == "mysql" {
		q = `INSERT INTO %s_t (eid, event_date, ext_brand_id, user_ext_id, event_type, payload, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)`
	}
	_, err := x.ExecContext(ctx, fmt.Sprintf(q, f.view), eid, 1700000000000, "brand-1", fmt.Sprint("u-", eid), "deposit", payload, wm)
	if err != nil {
		f.t.Fatal(err)
	}
}

// poller reads the fixture's view.
func (f *fixture) poller(s dbviews.Sink, cps dbviews.Checkpoints, mut func(*dbviews.Config), logs io.Writer) *dbviews.Poller {
	f.t.Helper()
	cfg := dbviews.Config{
		Driver: f.b.driver, DSN: f.b.DSN(), View: f.view, Watermark: "updated_at",
		WatermarkType: f.wmType, Overlap: time.Minute, OverlapCount: 10, BatchSize: 16,
		Poll: 20 * time.Millisecond,
	}
	if mut != nil {
		mut(&cfg)
	}
	if logs == nil {
		logs = f.t.Output()
	}
	p, err := dbviews.New(cfg, s, cps, dbviews.Options{
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { p.Close() })
	return p
}

func (f *fixture) poll(p *dbviews.Poller) int {
	f.t.Helper()
	n, err := p.Poll(ctx)
	if err != nil {
		f.t.Fatalf("Poll: %v", err)
	}
	return n
}

// sink is an idempotent test sink: it counts deliveries per eid, the way
// the core de-duplicates on eid, and keeps the events.
type sink struct {
	mu     sync.Mutex
	seen   map[string]int
	events map[string]json.RawMessage
	fail   func() error
}

func newSink() *sink {
	return &sink{seen: make(map[string]int), events: make(map[string]json.RawMessage)}
}

func (s *sink) Ingest(_ context.Context, evs []json.RawMessage) error {
	if s.fail != nil {
		if err := s.fail(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, raw := range evs {
		var ev struct {
			EID string `json:"eid"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("test sink got invalid JSON: %v", err)
		}
		s.seen[ev.EID]++
		s.events[ev.EID] = raw
	}
	return nil
}

func (s *sink) unique() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *sink) deliveries(eid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[eid]
}

// checkpoints is an in-memory Checkpoints.
type checkpoints struct {
	mu sync.Mutex
	m  map[string]string
}

func newCheckpoints() *checkpoints { return &checkpoints{m: make(map[string]string)} }

func (c *checkpoints) Checkpoint(_ context.Context, source string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[source], nil
}

func (c *checkpoints) SaveCheckpoint(_ context.Context, source, value string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[source] = value
	return nil
}

// only returns the one saved checkpoint.
func (c *checkpoints) only(t testing.TB) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) != 1 {
		t.Fatalf("%d checkpoints saved, want 1: %v", len(c.m), c.m)
	}
	for _, v := range c.m {
		return v
	}
	return ""
}

func ts(i int) string { return base.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano) }

func TestNewRejectsBadConfig(t *testing.T) {
	ok := dbviews.Config{Driver: "postgres", DSN: "postgres://u:secret-pw@127.0.0.1/db", View: "public.events_v", Watermark: "updated_at"}
	for name, mut := range map[string]func(*dbviews.Config){
		"unknown driver":         func(c *dbviews.Config) { c.Driver = "sqlite" },
		"no dsn":                 func(c *dbviews.Config) { c.DSN = "" },
		"bad postgres dsn":       func(c *dbviews.Config) { c.DSN = "postgres://u:secret-pw@[::1/db" },
		"bad mysql dsn":          func(c *dbviews.Config) { c.Driver = "mysql"; c.DSN = "u:secret-pw@tcp(127.0.0.1:3306" },
		"no view":                func(c *dbviews.Config) { c.View = "" },
		"injection in view":      func(c *dbviews.Config) { c.View = "events; DROP TABLE players" },
		"quote in view":          func(c *dbviews.Config) { c.View = `events"v` },
		"backtick in view":       func(c *dbviews.Config) { c.View = "events`v" },
		"three-part view":        func(c *dbviews.Config) { c.View = "db.public.events" },
		"empty schema":           func(c *dbviews.Config) { c.View = ".events" },
		"leading digit":          func(c *dbviews.Config) { c.View = "1events" },
		"non-ASCII":              func(c *dbviews.Config) { c.View = "événements" },
		"too long":               func(c *dbviews.Config) { c.View = strings.Repeat("v", 64) },
		"no watermark":           func(c *dbviews.Config) { c.Watermark = "" },
		"injection in wm":        func(c *dbviews.Config) { c.Watermark = "updated_at) OR (1=1" },
		"qualified wm":           func(c *dbviews.Config) { c.Watermark = "v.updated_at" },
		"unknown watermark type": func(c *dbviews.Config) { c.WatermarkType = "uuid" },
		"negative overlap":       func(c *dbviews.Config) { c.Overlap = -time.Second },
		"negative count":         func(c *dbviews.Config) { c.OverlapCount = -1 },
		"negative batch":         func(c *dbviews.Config) { c.BatchSize = -1 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := ok
			mut(&cfg)
			_, err := dbviews.New(cfg, newSink(), newCheckpoints(), dbviews.Options{})
			if !errors.Is(err, dbviews.ErrConfig) {
				t.Fatalf("New = %v, want ErrConfig", err)
			}
			if strings.Contains(err.Error(), "secret-pw") {
				t.Errorf("error quotes the DSN's password: %v", err)
			}
		})
	}
	p, err := dbviews.New(ok, newSink(), newCheckpoints(), dbviews.Options{})
	if err != nil {
		t.Fatalf("New(valid) = %v", err)
	}
	p.Close()
}

// Every row arrives as one event's JSON, pages end in the middle of rows
// sharing a watermark without losing any, and the checkpoint is the
// largest watermark delivered.
func TestPollDeliversAll(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		for i := range 60 {
			f.insert(f.db, i, i)
		}
		for i := 60; i < 100; i++ { // 40 rows on one watermark: more than a page of 16
			f.insert(f.db, i, 60)
		}
		f.insertRow(f.db, "e-bad-payload", "not json "+canary, f.wm(61))
		f.insertRow(f.db, "e-no-payload", nil, f.wm(62))
		f.insertRow(f.db, nil, `{}`, f.wm(62)) // no eid: passed on, for the core to refuse

		s, cps := newSink(), newCheckpoints()
		p := f.poller(s, cps, nil, nil)
		if n := f.poll(p); n != 103 {
			t.Errorf("Poll delivered %d events, want 103", n)
		}
		if s.unique() != 103 || s.deliveries("") != 1 {
			t.Fatalf("sink has %d distinct events (%d without eid), want 103 (1)", s.unique(), s.deliveries(""))
		}
		if got := cps.only(t); got != ts(62) {
			t.Errorf("checkpoint %q, want %q", got, ts(62))
		}

		var ev map[string]any
		if err := json.Unmarshal(s.events["e-7"], &ev); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"eid": "e-7", "event_date": 1700000000000.0, "ext_brand_id": "brand-1", "user_ext_id": "u-e-7",
			"event_type": "deposit", "payload": map[string]any{"amount": 7.0, "note": canary},
		}
		if fmt.Sprint(ev) != fmt.Sprint(want) {
			t.Errorf("event\n got %v\nwant %v", ev, want)
		}
		// A payload that is not JSON is passed on as a string, for the
		// core to refuse and record; a NULL payload is left out.
		if err := json.Unmarshal(s.events["e-bad-payload"], &ev); err != nil {
			t.Fatal(err)
		}
		if _, isString := ev["payload"].(string); !isString {
			t.Errorf("bad payload passed on as %T, want a JSON string", ev["payload"])
		}
		ev = nil
		if err := json.Unmarshal(s.events["e-no-payload"], &ev); err != nil {
			t.Fatal(err)
		}
		if _, has := ev["payload"]; has || len(ev) != 5 {
			t.Errorf("NULL payload passed on: %v", ev)
		}

		// Caught up: the window is read again but nothing goes to the sink twice.
		if n := f.poll(p); n != 0 {
			t.Errorf("second Poll delivered %d events, want 0", n)
		}
		f.insert(f.db, 200, 70)
		if n := f.poll(p); n != 1 || s.deliveries("e-200") != 1 {
			t.Errorf("Poll after one insert delivered %d", n)
		}
	})
}

// THE LATE-COMMIT TEST. T1 takes the watermark t1 and stays open while T2
// takes t2 > t1 and commits; a poll delivers t2 and moves the checkpoint
// to t2; then T1 commits. With an overlap the next poll still delivers
// the t1 row; with none, the row is skipped for good.
func TestLateCommit(t *testing.T) {
	for _, b := range backends {
		for _, wmType := range []string{dbviews.Timestamp, dbviews.Integer} {
			t.Run(b.driver+"/"+wmType, func(t *testing.T) {
				for _, tc := range []struct {
					name      string
					overlap   bool
					delivered bool
				}{
					{"with overlap", true, true},
					{"without overlap", false, false},
				} {
					t.Run(tc.name, func(t *testing.T) {
						f := newFixture(t, b, wmType, "")
						s, cps := newSink(), newCheckpoints()
						p := f.poller(s, cps, func(c *dbviews.Config) {
							if !tc.overlap {
								c.Overlap, c.OverlapCount = 0, 0
							}
						}, nil)

						t1, err := f.db.BeginTx(ctx, nil)
						if err != nil {
							t.Fatal(err)
						}
						defer t1.Rollback()
						f.insert(t1, 1, 1) // watermark 1, not committed yet
						f.insert(f.db, 2, 2)

						if n := f.poll(p); n != 1 || s.deliveries("e-2") != 1 || s.deliveries("e-1") != 0 {
							t.Fatalf("first poll delivered %d (e-1 %d, e-2 %d), want only e-2", n, s.deliveries("e-1"), s.deliveries("e-2"))
						}
						want := "2"
						if wmType == dbviews.Timestamp {
							want = ts(2)
						}
						if got := cps.only(t); got != want {
							t.Fatalf("checkpoint %q, want %q", got, want)
						}

						if err := t1.Commit(); err != nil {
							t.Fatal(err)
						}
						f.poll(p)
						if got := s.deliveries("e-1"); (got == 1) != tc.delivered {
							t.Errorf("late-committed row delivered %d times; want delivered=%v", got, tc.delivered)
						}
						if got := s.deliveries("e-2"); got != 1 {
							t.Errorf("e-2 delivered %d times by one poller, want once", got)
						}
						if got := cps.only(t); got != want {
							t.Errorf("checkpoint %q after the late row, want it to stay %q", got, want)
						}
					})
				}
			})
		}
	}
}

// A new Poller resumes from the saved checkpoint: it reads again only the
// overlap window (which the sink de-duplicates by eid), not what lies
// before it, and then goes on with new rows.
func TestRestartFromCheckpoint(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		for i := range 100 {
			f.insert(f.db, i, i)
		}
		s, cps := newSink(), newCheckpoints()
		overlap := func(c *dbviews.Config) { c.Overlap = 10 * time.Second }
		if n := f.poll(f.poller(s, cps, overlap, nil)); n != 100 {
			t.Fatalf("first poller delivered %d, want 100", n)
		}

		p := f.poller(s, cps, overlap, nil) // the restart
		// The window is [99s − 10s, 99s]: rows 89 to 99 come again.
		if n := f.poll(p); n != 11 {
			t.Errorf("restarted poller delivered %d, want the 11 rows of the window", n)
		}
		for i := range 100 {
			want := 1
			if i >= 89 {
				want = 2
			}
			if got := s.deliveries(fmt.Sprintf("e-%d", i)); got != want {
				t.Errorf("e-%d delivered %d times, want %d", i, got, want)
			}
		}
		if s.unique() != 100 {
			t.Errorf("%d distinct events, want 100", s.unique())
		}
		for i := 100; i < 105; i++ {
			f.insert(f.db, i, i)
		}
		if n := f.poll(p); n != 5 || s.unique() != 105 {
			t.Errorf("after 5 inserts: delivered %d, %d distinct", n, s.unique())
		}
		if got := cps.only(t); got != ts(104) {
			t.Errorf("checkpoint %q, want %q", got, ts(104))
		}
	})
}

// Each usual watermark column type round-trips: the value read back as
// the checkpoint selects exactly the rows at and after it (an off-by-zone
// or truncated value would select more or fewer).
func TestWatermarkColumnTypes(t *testing.T) {
	for _, tc := range []struct {
		driver, colType, wmType string
	}{
		{"postgres", "timestamptz", dbviews.Timestamp},
		{"postgres", "timestamp", dbviews.Timestamp},
		{"postgres", "timestamp(0)", dbviews.Timestamp},
		{"postgres", "bigint", dbviews.Integer},
		{"postgres", "integer", dbviews.Integer},
		{"mysql", "datetime(6)", dbviews.Timestamp},
		{"mysql", "datetime", dbviews.Timestamp},
		{"mysql", "timestamp(6) NULL", dbviews.Timestamp},
		{"mysql", "bigint", dbviews.Integer},
		{"mysql", "int unsigned", dbviews.Integer},
	} {
		t.Run(tc.driver+"/"+tc.colType, func(t *testing.T) {
			var b backend
			for _, b = range backends {
				if b.driver == tc.driver {
					break
				}
			}
			f := newFixture(t, b, tc.wmType, tc.colType)
			for i := 1; i <= 20; i++ {
				f.insert(f.db, i, i)
			}
			f.insert(f.db, 21, 20) // a tie on the last watermark
			s, cps := newSink(), newCheckpoints()
			window := func(c *dbviews.Config) { c.Overlap, c.OverlapCount, c.BatchSize = 5*time.Second, 5, 4 }
			if n := f.poll(f.poller(s, cps, window, nil)); n != 21 {
				t.Fatalf("delivered %d, want 21", n)
			}
			// A restart reads again the rows from 20 − 5 on: 15..20 and the tie.
			if n := f.poll(f.poller(s, cps, window, nil)); n != 7 {
				t.Errorf("restart delivered %d, want 7", n)
			}
			if s.deliveries("e-14") != 1 || s.deliveries("e-15") != 2 || s.deliveries("e-21") != 2 {
				t.Errorf("deliveries e-14 %d, e-15 %d, e-21 %d; want 1, 2, 2", s.deliveries("e-14"), s.deliveries("e-15"), s.deliveries("e-21"))
			}
		})
	}
}

// A refused batch saves no checkpoint; the next poll delivers it again.
func TestSinkFailureKeepsCheckpoint(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		for i := range 10 {
			f.insert(f.db, i, i)
		}
		s, cps := newSink(), newCheckpoints()
		s.fail = func() error { return errors.New("store unavailable") }
		p := f.poller(s, cps, nil, nil)
		if _, err := p.Poll(ctx); err == nil {
			t.Fatal("Poll succeeded with a failing sink")
		}
		if got, _ := cps.Checkpoint(ctx, "dbviews/"+f.b.driver+"/"+f.view); got != "" {
			t.Fatalf("checkpoint %q saved after a refused batch", got)
		}
		s.fail = nil
		if n := f.poll(p); n != 10 || s.unique() != 10 {
			t.Errorf("retry delivered %d, %d distinct; want 10", n, s.unique())
		}
	})
}

// Run polls on its own: rows inserted while it runs arrive, and its logs
// hold no payload.
func TestRunDelivers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		s := newSink()
		var logs bytes.Buffer
		var mu sync.Mutex
		p := f.poller(s, newCheckpoints(), nil, lockedWriter{&mu, &logs})
		c, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(c) }()
		for i := range 50 {
			f.insert(f.db, i, i)
		}
		deadline := time.Now().Add(15 * time.Second)
		for s.unique() < 50 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if s.unique() != 50 {
			t.Errorf("Run delivered %d events, want 50", s.unique())
		}
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(logs.String(), canary) {
			t.Errorf("logs contain payload data")
		}
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A watermark column of another type than configured stops the poll.
func TestWrongWatermarkType(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		f.insert(f.db, 1, 1)
		p := f.poller(newSink(), newCheckpoints(), func(c *dbviews.Config) { c.WatermarkType = dbviews.Integer }, nil)
		if _, err := p.Poll(ctx); !errors.Is(err, dbviews.ErrWatermark) {
			t.Errorf("Poll = %v, want ErrWatermark", err)
		}
	})
}

// A saved checkpoint that is not a watermark stops Run instead of
// starting over from the beginning.
func TestCorruptCheckpointStopsRun(t *testing.T) {
	cps := newCheckpoints()
	cps.m["src"] = "yesterday"
	p, err := dbviews.New(dbviews.Config{
		Source: "src", Driver: "postgres", DSN: "postgres://postgres@127.0.0.1:1/none", View: "v", Watermark: "w",
	}, newSink(), cps, dbviews.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Run(c); !errors.Is(err, dbviews.ErrCheckpoint) {
		t.Errorf("Run = %v, want ErrCheckpoint", err)
	}
}

// BenchmarkPoll measures rows per second from the database through the
// poller (pages of 1000) to a no-op sink: one poll that catches up on b.N
// rows. Inserting them is not timed.
func BenchmarkPoll(bm *testing.B) {
	for _, b := range backends {
		bm.Run(b.driver, func(bm *testing.B) {
			f := newFixture(bm, b, dbviews.Timestamp, "")
			for i := 0; i < bm.N; i += 1000 {
				var q strings.Builder
				fmt.Fprintf(&q, "INSERT INTO %s_t (eid, event_date, ext_brand_id, user_ext_id, event_type, payload, updated_at) VALUES ", f.view)
				for j := i; j < min(i+1000, bm.N); j++ {
					if j > i {
						q.WriteString(", ")
					}
					fmt.Fprintf(&q, `('e-%d', 1700000000000, 'brand-1', 'u-1', 'deposit', '{"amount": 1}', '%s')`,
						j, base.Add(time.Duration(j)*time.Millisecond).Format("2006-01-02 15:04:05.000000"))
				}
				if _, err := f.db.ExecContext(ctx, q.String()); err != nil {
					bm.Fatal(err)
				}
			}
			p := f.poller(nopSink{}, newCheckpoints(), func(c *dbviews.Config) { c.BatchSize = 1000 }, io.Discard)
			bm.ResetTimer()
			t0 := time.Now()
			n, err := p.Poll(ctx)
			el := time.Since(t0)
			if err != nil || n != bm.N {
				bm.Fatalf("Poll = %d, %v; want %d", n, err, bm.N)
			}
			bm.ReportMetric(float64(bm.N)/el.Seconds(), "rows/s")
		})
	}
}

type nopSink struct{}

func (nopSink) Ingest(context.Context, []json.RawMessage) error { return nil }
