package kafka_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blindpost/blindpost/adapters/kafka"
)

// canary is in every test payload; no log line may contain it.
const canary = "canary-payload-5e1f"

const topic = "events"

func body(i int) []byte {
	return fmt.Appendf(nil, `{"eid":"e-%d","event_date":1700000000000,"ext_brand_id":"brand-1","user_ext_id":"u-%d","event_type":"deposit","payload":{"amount":%d,"note":%q}}`, i, i%50, i, canary)
}

// newCluster starts an in-process Kafka with one topic of the given
// number of partitions and returns its addresses.
func newCluster(t testing.TB, partitions int32) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// produce writes bodies to the topic, keyed so they spread over partitions.
func produce(t testing.TB, addrs []string, bodies ...[]byte) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(bodies))
	for i, b := range bodies {
		recs[i] = &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: b}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func bodies(from, to int) [][]byte {
	var bs [][]byte
	for i := from; i < to; i++ {
		bs = append(bs, body(i))
	}
	return bs
}

// sink is an idempotent test sink: it counts deliveries per eid, the way
// the core de-duplicates on eid. Hooks simulate failures.
type sink struct {
	mu      sync.Mutex
	seen    map[string]int // eid → deliveries
	invalid int            // bodies that are not an event
	calls   int
	// before runs before a batch is recorded; an error refuses the batch
	// (nothing of it is durable).
	before func(ctx context.Context, call int) error
	// after runs once the batch is recorded (durable); an error models a
	// crash between the durable write and the acknowledgement.
	after func(ctx context.Context, call int) error
	// batches keeps the eids of each call.
	batches [][]string
}

func newSink() *sink { return &sink{seen: make(map[string]int)} }

func (s *sink) Ingest(ctx context.Context, events []json.RawMessage) error {
	s.mu.Lock()
	s.calls++
	call := s.calls
	s.mu.Unlock()
	if s.before != nil {
		if err := s.before(ctx, call); err != nil {
			return err
		}
	}
	var eids []string
	s.mu.Lock()
	for _, raw := range events {
		var ev struct {
			EID string `json:"eid"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil || ev.EID == "" {
			s.invalid++
			continue
		}
		s.seen[ev.EID]++
		eids = append(eids, ev.EID)
	}
	s.batches = append(s.batches, eids)
	s.mu.Unlock()
	if s.after != nil {
		return s.after(ctx, call)
	}
	return nil
}

// unique is the number of distinct eids; total counts every delivery.
func (s *sink) counts() (unique, total, invalid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.seen {
		total += n
	}
	return len(s.seen), total, s.invalid
}

func (s *sink) deliveries(eid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[eid]
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logBuffer collects the connector's logs, to check they hold no payload.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// start runs a consumer in the group until the returned stop is called.
func start(t testing.TB, addrs []string, group string, s kafka.Sink, logs *logBuffer, batch int) (stop func()) {
	t.Helper()
	var w interface{ Write([]byte) (int, error) } = logs
	if logs == nil {
		w = t.Output()
	}
	c, err := kafka.New(kafka.Config{Brokers: addrs, Topic: topic, Group: group, BatchSize: batch}, s, kafka.Options{
		Logger:     slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		ClientOpts: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.FetchMaxWait(200 * time.Millisecond)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	ok := kafka.Config{Brokers: []string{"127.0.0.1:9092"}, Topic: "t", Group: "g"}
	for name, mut := range map[string]func(*kafka.Config){
		"no brokers":     func(c *kafka.Config) { c.Brokers = nil },
		"no topic":       func(c *kafka.Config) { c.Topic = "" },
		"no group":       func(c *kafka.Config) { c.Group = "" },
		"negative batch": func(c *kafka.Config) { c.BatchSize = -1 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := ok
			mut(&cfg)
			if _, err := kafka.New(cfg, newSink(), kafka.Options{}); !errors.Is(err, kafka.ErrConfig) {
				t.Fatalf("New = %v, want ErrConfig", err)
			}
		})
	}
	if _, err := kafka.New(ok, newSink(), kafka.Options{}); err != nil {
		t.Fatalf("New(valid) = %v", err)
	}
}

// Every record reaches the sink, a body that is not JSON included, and
// the offsets are committed: a later member of the group gets only what
// was produced after.
func TestConsumeAllAndCommit(t *testing.T) {
	addrs := newCluster(t, 4)
	const n = 1000
	produce(t, addrs, append(bodies(0, n), []byte("not json "+canary))...)

	s := newSink()
	logs := &logBuffer{}
	stop := start(t, addrs, "g1", s, logs, 100)
	waitFor(t, "all events", func() bool { u, _, inv := s.counts(); return u == n && inv == 1 })
	stop()
	if u, total, _ := s.counts(); total != u {
		t.Errorf("%d deliveries of %d events without any failure; want each once", total, u)
	}

	produce(t, addrs, bodies(n, n+10)...)
	s2 := newSink()
	stop = start(t, addrs, "g1", s2, logs, 100)
	waitFor(t, "the new events", func() bool { u, _, _ := s2.counts(); return u == 10 })
	stop()
	if u, _, inv := s2.counts(); u != 10 || inv != 0 {
		t.Errorf("restarted member got %d events and %d invalid bodies, want only the 10 new ones: the first run's commits were lost", u, inv)
	}
	if strings.Contains(logs.String(), canary) {
		t.Errorf("logs contain payload data")
	}
}

// A failed Ingest is not committed; the same member re-seeks and delivers
// the batch again, and every event is counted exactly once by eid.
func TestSinkFailureRedelivers(t *testing.T) {
	addrs := newCluster(t, 3)
	const n = 300
	produce(t, addrs, bodies(0, n)...)

	s := newSink()
	s.before = func(ctx context.Context, call int) error {
		if call == 1 {
			return errors.New("store unavailable")
		}
		return nil
	}
	logs := &logBuffer{}
	stop := start(t, addrs, "g1", s, logs, 50)
	waitFor(t, "all events", func() bool { u, _, _ := s.counts(); return u == n })
	stop()

	s.mu.Lock()
	calls := s.calls
	s.mu.Unlock()
	if calls < 2 {
		t.Fatalf("sink called %d times, want a retry after the failure", calls)
	}
	if u, total, _ := s.counts(); u != n || total != n {
		t.Errorf("unique %d, deliveries %d; want %d each (the refused batch recorded nothing)", u, total, n)
	}
	if !strings.Contains(logs.String(), "redelivered") {
		t.Errorf("the refused batch was not logged")
	}
	if strings.Contains(logs.String(), canary) {
		t.Errorf("logs contain payload data")
	}
}

// A member that stops after its batch became durable but before it
// committed (a crash in between) leaves the batch uncommitted: the next
// member of the group delivers it again. At least once, and the eid
// de-duplication counts each event once.
func TestKillBeforeCommitRedelivers(t *testing.T) {
	addrs := newCluster(t, 2)
	const n = 200
	produce(t, addrs, bodies(0, n)...)

	s := newSink()
	reached := make(chan struct{})
	s.after = func(ctx context.Context, call int) error {
		if call == 1 {
			close(reached)
			<-ctx.Done() // the "crash": the process ends before committing
			return ctx.Err()
		}
		return nil
	}
	stop := start(t, addrs, "g1", s, nil, 64)
	select {
	case <-reached:
	case <-time.After(15 * time.Second):
		t.Fatal("first batch never reached the sink")
	}
	stop()
	s.mu.Lock()
	first := s.batches[0]
	s.mu.Unlock()
	if len(first) == 0 {
		t.Fatal("first batch was empty")
	}

	s.after = nil
	stop = start(t, addrs, "g1", s, nil, 64)
	waitFor(t, "all events", func() bool { u, _, _ := s.counts(); return u == n })
	stop()
	for _, eid := range first {
		if got := s.deliveries(eid); got != 2 {
			t.Errorf("%s delivered %d times, want 2: durable once, uncommitted, delivered again", eid, got)
		}
	}
	if u, total, _ := s.counts(); u != n || total != n+len(first) {
		t.Errorf("unique %d deliveries %d, want %d and %d", u, total, n, n+len(first))
	}
}

// Two members of one group split the partitions: both receive events, and
// together they deliver every one.
func TestGroupSharesPartitions(t *testing.T) {
	addrs := newCluster(t, 4)
	shared := newSink()
	a, b := &countingSink{next: shared}, &countingSink{next: shared}
	start(t, addrs, "g1", a, nil, 50)
	start(t, addrs, "g1", b, nil, 50)

	// Produce in rounds until both members have had some: the second
	// member joins through a rebalance whose timing is the group's.
	produced := 0
	waitFor(t, "both members to receive events", func() bool {
		if a.count() > 0 && b.count() > 0 {
			return true
		}
		produce(t, addrs, bodies(produced, produced+40)...)
		produced += 40
		time.Sleep(50 * time.Millisecond)
		return false
	})
	produce(t, addrs, bodies(produced, produced+400)...)
	produced += 400
	waitFor(t, "all events", func() bool { u, _, _ := shared.counts(); return u == produced })
	if a.count() == 0 || b.count() == 0 {
		t.Errorf("member deliveries %d and %d; want both to share the work", a.count(), b.count())
	}
}

// countingSink counts one member's deliveries and passes them on.
type countingSink struct {
	mu   sync.Mutex
	n    int
	next *sink
}

func (c *countingSink) Ingest(ctx context.Context, evs []json.RawMessage) error {
	c.mu.Lock()
	c.n += len(evs)
	c.mu.Unlock()
	return c.next.Ingest(ctx, evs)
}

func (c *countingSink) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

type nopSink struct {
	mu sync.Mutex
	n  int
}

func (s *nopSink) Ingest(_ context.Context, evs []json.RawMessage) error {
	s.mu.Lock()
	s.n += len(evs)
	s.mu.Unlock()
	return nil
}

func (s *nopSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// BenchmarkConsume measures events per second from an in-process broker
// through the connector (batches of 500, a commit each) to a no-op sink.
func BenchmarkConsume(b *testing.B) {
	addrs := newCluster(b, 4)
	const chunk = 10000
	for i := 0; i < b.N; i += chunk {
		produce(b, addrs, bodies(i, min(i+chunk, b.N))...)
	}
	s := &nopSink{}
	c, err := kafka.New(kafka.Config{Brokers: addrs, Topic: topic, Group: "bench"}, s, kafka.Options{
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	t0 := time.Now()
	go func() { done <- c.Run(ctx) }()
	for s.count() < b.N {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(t0)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
}
