package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/eventsapi"
	"github.com/blindpost/blindpost/core/firewall"
	"github.com/blindpost/blindpost/core/ingest"
	"github.com/blindpost/blindpost/core/store"
)

// The core's ingestion against its baseline (issue 6): the events API
// with everything on, and the same batches parsed and stored bare.

const (
	ingestLabel = "acme"
	ingestBrand = "acme-casino"
)

type ingestEnv struct {
	h   http.Handler
	key string
}

// newIngestEnv serves the events API over a fresh SQLite store with one
// label, one brand and one API key, the firewall in reject mode.
func newIngestEnv(tb testing.TB) *ingestEnv {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(tb.TempDir(), "core.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	for _, err := range []error{st.CreateLabel(ctx, ingestLabel, "Acme"), st.AddBrand(ctx, ingestLabel, ingestBrand),
		st.SetFirewallMode(ctx, ingestLabel, store.FirewallReject)} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	key, _, err := st.CreateAPIKey(ctx, ingestLabel)
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	p := ingest.New(st, firewall.New(firewall.Options{}), ingest.Options{Logger: log})
	return &ingestEnv{h: eventsapi.NewHandler(p, eventsapi.Options{Logger: log}), key: key}
}

// benchBatchBytes is the size of one benchmark batch.
const benchBatchBytes = 1 << 20

const benchPlayers = 2000

// benchBatch builds about 1 MB of the events a PAM sends most: bets, wins,
// deposits, logins and profile updates of registered players, with payloads
// of the usual size. seq makes every eid new.
func benchBatch(tb testing.TB, seq int) ([]byte, int) {
	tb.Helper()
	var buf bytes.Buffer
	buf.WriteByte('[')
	n := 0
	for buf.Len() < benchBatchBytes-600 {
		user := fmt.Sprintf("player-%05d", (seq*7919+n)%benchPlayers)
		var typ string
		var payload map[string]any
		switch n % 10 {
		case 0, 1, 2, 3:
			typ, payload = "bet", map[string]any{"amount": 2.5 + float64(n%40), "currency": "EUR", "game_id": fmt.Sprintf("slot-%d", n%300),
				"provider": "acme-games", "round_id": fmt.Sprintf("r-%d-%d", seq, n), "balance_after": 1234.56, "is_bonus_money": false}
		case 4, 5:
			typ, payload = "win", map[string]any{"amount": 12.0, "currency": "EUR", "game_id": fmt.Sprintf("slot-%d", n%300),
				"round_id": fmt.Sprintf("r-%d-%d", seq, n-4), "multiplier": 4.8}
		case 6:
			typ, payload = "deposit", map[string]any{"amount": 50, "currency": "EUR", "method": "card", "card_bin_country": "DE",
				"transaction_id": fmt.Sprintf("tx-%d-%d", seq, n), "first_deposit": false}
		case 7:
			typ, payload = "login", map[string]any{"platform": "web", "device": "desktop", "session_id": fmt.Sprintf("s-%d-%d", seq, n)}
		case 8:
			typ, payload = "update_profile", map[string]any{"vip_level": n % 5, "+tags": []any{"active"}, "core_is_sms_disabled": false,
				"email_token": "tok_email_v1_AAAAAAAAAAAAAAAAAAAAAA", "last_deposit_at": 1700000000000 + n}
		default:
			typ, payload = "client_action", map[string]any{"action": "open_cashier", "page": "/cashier", "ts": 1700000000000 + n}
		}
		b, err := json.Marshal(map[string]any{
			"eid": fmt.Sprintf("%08x-0000-4000-8000-%012x", seq, n), "event_date": 1700000000000 + int64(n),
			"ext_brand_id": ingestBrand, "user_ext_id": user, "event_type": typ, "payload": payload,
		})
		if err != nil {
			tb.Fatal(err)
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(b)
		n++
	}
	buf.WriteByte(']')
	return buf.Bytes(), n
}

// bareHandler is the baseline: the same batch parsed leniently and inserted
// into an events table of the same shape, in one transaction of a SQLite
// file with the store's durability (WAL, synchronous=FULL), with no
// authentication, no firewall, no de-duplication and no player state.
func bareHandler(tb testing.TB) http.Handler {
	tb.Helper()
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "wal_autocheckpoint(4000)", "cache_size(-32768)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(tb.TempDir(), "bare.db")+"?"+q.Encode())
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	tb.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE events (seq INTEGER PRIMARY KEY, label TEXT NOT NULL, eid TEXT NOT NULL,
		event_date INTEGER NOT NULL, ext_brand_id TEXT NOT NULL, user_ext_id TEXT NOT NULL, event_type TEXT NOT NULL,
		payload TEXT NOT NULL, skip_cjm INTEGER NOT NULL, received INTEGER NOT NULL)`); err != nil {
		tb.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, eventsapi.MaxBatchBytes))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var evs []event.Event
		if err := json.Unmarshal(body, &evs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tx, err := db.BeginTx(r.Context(), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer tx.Rollback()
		stmt, err := tx.Prepare(`INSERT INTO events (label, eid, event_date, ext_brand_id, user_ext_id, event_type, payload, skip_cjm, received)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		now := time.Now().UnixMilli()
		for _, ev := range evs {
			p, _ := json.Marshal(ev.Payload)
			if _, err := stmt.Exec(ingestLabel, ev.EID, ev.EventDate, ev.Brand, ev.User, ev.Type, string(p), ev.SkipCJM, now); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		if err := tx.Commit(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write([]byte(`{"err_code":0,"event_errors":{}}` + "\n"))
	})
}

func postBatch(tb testing.TB, h http.Handler, key string, body []byte) {
	req := httptest.NewRequest(http.MethodPost, eventsapi.Path, bytes.NewReader(body))
	req.Header.Set("Authorization", key)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), []byte(`{"err_code":0,"event_errors":{}}`+"\n")) {
		tb.Fatalf("%d %.300s", rec.Code, rec.Body)
	}
}

// BenchmarkEventsAPI posts 1 MB batches to the real handler over the real
// SQLite store (authentication, strict decoding, PII firewall, eid
// de-duplication, player state, one durable transaction per batch), and the
// same batches to the bare decode+insert baseline, alternately in one run.
// One op is one batch through each; it reports both rates (from the median
// time per event) and the median of the per-batch ratios.
//
//	go test -run '^$' -bench EventsAPI -benchtime 20x ./bench/
func BenchmarkEventsAPI(b *testing.B) {
	e := newIngestEnv(b)
	bare := bareHandler(b)
	// Register the players, so no event is a user-not-found.
	for start := 0; start < benchPlayers; start += 500 {
		var regs []map[string]any
		for i := start; i < start+500; i++ {
			regs = append(regs, map[string]any{"eid": fmt.Sprintf("reg-%d", i), "event_date": 1700000000000, "ext_brand_id": ingestBrand, "user_ext_id": fmt.Sprintf("player-%05d", i), "event_type": "registration", "payload": map[string]any{"vip_level": 0}})
		}
		body, _ := json.Marshal(regs)
		postBatch(b, e.h, e.key, body)
	}
	warm, _ := benchBatch(b, 1<<20)
	postBatch(b, e.h, e.key, warm)
	postBatch(b, bare, "", warm)

	// The machine is shared: medians of the per-batch times and of the
	// per-pair ratios keep a burst of other work from deciding the result.
	var reals, bares, ratios []float64
	events := 0
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		body, n := benchBatch(b, i)
		runtime.GC()
		b.StartTimer()
		start := time.Now()
		postBatch(b, e.h, e.key, body)
		real := time.Since(start)
		start = time.Now()
		postBatch(b, bare, "", body)
		bareDur := time.Since(start)
		reals, bares = append(reals, real.Seconds()/float64(n)), append(bares, bareDur.Seconds()/float64(n))
		ratios = append(ratios, bareDur.Seconds()/real.Seconds())
		events += n
	}
	b.StopTimer()
	realRate, baseRate, ratio := 1/median(reals), 1/median(bares), median(ratios)
	b.ReportMetric(realRate, "events/s")
	b.ReportMetric(baseRate, "bare-events/s")
	b.ReportMetric(ratio, "ratio")
	if b.N > 1 {
		b.Logf("events API %.0f events/s, bare decode+insert %.0f events/s, ratio %.2f (medians of %d batches of ~1 MB, %d events each; %d cores, %s/%s)",
			realRate, baseRate, ratio, b.N, events/b.N, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
