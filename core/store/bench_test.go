package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/store"
)

// benchPlayers is how many players the benchmark's events name; all are
// registered before the timer starts, as on a live label.
const benchPlayers = 20_000

// benchEvent returns event i of a typical mix (bets and wins most, some
// logins, deposits and profile updates), payloads as event.Decode leaves
// them, for one of benchPlayers players.
func benchEvent(i int) event.Event {
	user := "user-" + strconv.Itoa((i*7919)%benchPlayers)
	e := event.Event{
		EID:       fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
		EventDate: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() + int64(i),
		Brand:     "b1",
		User:      user,
	}
	round := fmt.Sprintf("r-%016x", i)
	switch i % 20 {
	case 0, 1:
		e.Type = event.TypeLogin
		e.Payload = map[string]any{"device": "mobile", "country": "MT", "session_id": "s-" + round}
	case 2:
		e.Type = event.TypeDeposit
		e.Payload = map[string]any{"amount": json.Number("50.00"), "currency": "EUR", "method": "card", "tx_id": "tx-" + round, "first_deposit": false}
	case 3:
		e.Type = event.TypeUpdateProfile
		e.Payload = map[string]any{"level": json.Number(strconv.Itoa(i % 50)), "+tags": []any{"active"}, "core_is_sms_disabled": false, "balance": json.Number("123.45")}
	default:
		e.Type = event.TypeBet
		if i%3 == 0 {
			e.Type = event.TypeWin
		}
		e.Payload = map[string]any{"amount": json.Number("2.50"), "currency": "EUR", "game_id": "slot_golden_7",
			"provider": "acme_games", "round_id": round, "balance": json.Number("1234.56"), "bonus_wager": false}
	}
	return e
}

// benchBatch returns a batch of about size bytes of JSON, the events API's
// limit per request being 10 MB and connectors' batches about 1 MB.
func benchBatch(size int) ([]event.Event, int) {
	var evs []event.Event
	n := 0
	for i := 0; n < size; i++ {
		e := benchEvent(i)
		b, _ := json.Marshal(e)
		n += len(b) + 1
		evs = append(evs, e)
	}
	return evs, n
}

// BenchmarkIngest measures durable ingestion (SQLite: WAL, synchronous=FULL;
// PostgreSQL: synchronous_commit on) of 1 MB batches, one transaction each
// (SQLite may group concurrent calls into one), from one caller and from
// several (connectors and the events API at once), and of batches of 10
// events from many callers, as small API requests come. events/s is the
// figure of the goal; cpu-ns/event counts this process only (on
// PostgreSQL the server's work is elsewhere); disk-B/event is what SQLite
// wrote (WAL and checkpoints).
func BenchmarkIngest(b *testing.B) {
	large, largeSize := benchBatch(1 << 20)
	small, smallSize := large[:10], largeSize*10/len(large)
	for _, name := range []string{store.DriverSQLite, store.DriverPostgres} {
		for _, bc := range []benchCase{
			{template: large, size: largeSize, callers: 1},
			{template: large, size: largeSize, callers: 4},
			{template: small, size: smallSize, callers: 64},
		} {
			b.Run(fmt.Sprintf("%s/batch=%d/callers=%d", name, len(bc.template), bc.callers), func(b *testing.B) {
				bc.run(b, name)
			})
		}
	}
}

// BenchmarkIngestStored measures BenchmarkIngest's single caller once a
// million events are stored (a minute or more to set up): random eids, as
// UUIDv4 are, land all over the eid index, each on a page of its own,
// which SQLite writes to its WAL and again at the checkpoint;
// time-ordered eids (UUIDv7) land at its end.
func BenchmarkIngestStored(b *testing.B) {
	const stored = 1_000_000
	large, largeSize := benchBatch(1 << 20)
	for _, c := range []struct {
		name string
		eid  func(k int64, i int) string
	}{
		{store.DriverSQLite + "/random-eids", benchEID},
		{store.DriverSQLite + "/ordered-eids", orderedEID},
		{store.DriverPostgres + "/random-eids", benchEID},
	} {
		b.Run(c.name, func(b *testing.B) {
			bc := benchCase{template: large, size: largeSize, callers: 1, prefill: stored / len(large), eid: c.eid}
			bc.run(b, strings.Split(c.name, "/")[0])
		})
	}
}

type benchCase struct {
	template []event.Event
	size     int // bytes of JSON
	callers  int
	prefill  int                         // batches ingested before the timer starts
	eid      func(k int64, i int) string // default benchEID
}

func (bc benchCase) run(b *testing.B, driver string) {
	s := newBackend(b, driver).open(b)
	ctx := context.Background()
	mustLabel(b, s, "acme")
	var reg []event.Event
	for p := range benchPlayers {
		reg = append(reg, event.Event{EID: fmt.Sprintf("reg-%d", p), EventDate: 1, Brand: "b1",
			User: "user-" + strconv.Itoa(p), Type: event.TypeRegistration})
		if len(reg) == 5000 {
			mustIngest(b, s, "acme", nil, reg...)
			reg = reg[:0]
		}
	}
	eid := bc.eid
	if eid == nil {
		eid = benchEID
	}
	var next atomic.Int64
	var failed atomic.Bool
	ingest := func(last int64) {
		evs := make([]event.Event, len(bc.template))
		for !failed.Load() {
			k := next.Add(1)
			if k > last {
				return
			}
			copy(evs, bc.template)
			for i := range evs {
				evs[i].EID = eid(k, i)
			}
			if _, err := s.Ingest(ctx, "acme", evs, nil); err != nil {
				b.Error(err)
				failed.Store(true)
			}
		}
	}
	ingest(int64(bc.prefill))
	next.Store(int64(bc.prefill))

	var wg sync.WaitGroup
	b.SetBytes(int64(bc.size))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0, io0 := time.Now(), cpuTime(), ioWritten()
	for range bc.callers {
		wg.Go(func() { ingest(int64(bc.prefill + b.N)) })
	}
	wg.Wait()
	elapsed, cpu, written := time.Since(start), cpuTime()-cpu0, ioWritten()-io0
	b.StopTimer()
	events := float64(b.N * len(bc.template))
	if driver == store.DriverSQLite && written > 0 {
		b.ReportMetric(float64(written)/events, "disk-B/event")
	}
	b.ReportMetric(events/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/events, "cpu-ns/event")
}

// orderedEID is an eid that sorts after every eid made before it, as
// UUIDv7 do.
func orderedEID(k int64, i int) string {
	return fmt.Sprintf("%012x-%08x", k, i)
}

// benchEID is a UUID-shaped eid, random-looking as real ones are (their
// order in the eid index is no help).
func benchEID(k int64, i int) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(k)*0x9E3779B97F4A7C15)
	binary.LittleEndian.PutUint64(b[8:], uint64(i)*0xC2B2AE3D27D4EB4F^uint64(k))
	h := sha256.Sum256(b[:])
	x := hex.EncodeToString(h[:16])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// ioWritten is how many bytes the process has had written to disk, or 0
// where the kernel does not say.
func ioWritten() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// cpuTime is the process's user and system CPU time: on a shared machine it
// says more than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
