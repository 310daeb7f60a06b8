package rabbitmq_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blindpost/blindpost/adapters/rabbitmq"
)

// canary is in every test payload; no log line may contain it.
const canary = "canary-payload-9b2d"

const defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// serverURL is the test broker: BLINDPOST_TEST_RABBITMQ, or the local one.
func serverURL() string {
	if u := os.Getenv("BLINDPOST_TEST_RABBITMQ"); u != "" {
		return u
	}
	return defaultURL
}

var server struct {
	once sync.Once
	err  error
}

// requireServer checks once per run that the broker answers; if not, the
// test is skipped, or fails under CI=true, where a missing broker means a
// broken setup.
func requireServer(t testing.TB) {
	t.Helper()
	server.once.Do(func() {
		c, err := amqp.DialConfig(serverURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err == nil {
			c.Close()
		}
		server.err = err
	})
	if server.err == nil {
		return
	}
	const msg = "RabbitMQ is unreachable (%v); start it with scripts/services.sh or set BLINDPOST_TEST_RABBITMQ"
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: "+msg, server.err)
	}
	t.Skipf(msg, server.err)
}

// broker is the test's own connection, for declaring, publishing and
// looking behind the connector's back.
type broker struct {
	t    testing.TB
	conn *amqp.Connection
	ch   *amqp.Channel
}

func newBroker(t testing.TB) *broker {
	t.Helper()
	requireServer(t)
	conn, err := amqp.Dial(serverURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return &broker{t, conn, ch}
}

// newQueue declares a fresh queue, deleted when the test ends.
func (b *broker) newQueue() string {
	b.t.Helper()
	var r [6]byte
	rand.Read(r[:])
	name := "bp-test-" + hex.EncodeToString(r[:])
	b.declare(name)
	b.t.Cleanup(func() {
		// A fresh connection: the test's may be gone by now.
		conn, err := amqp.Dial(serverURL())
		if err != nil {
			b.t.Errorf("delete queue: %v", err)
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err == nil {
			_, err = ch.QueueDelete(name, false, false, false)
		}
		if err != nil {
			b.t.Errorf("delete queue: %v", err)
		}
	})
	return name
}

func (b *broker) declare(name string) {
	b.t.Helper()
	if _, err := b.ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		b.t.Fatal(err)
	}
}

func (b *broker) publish(queue string, bodies ...[]byte) {
	b.t.Helper()
	for _, body := range bodies {
		err := b.ch.PublishWithContext(context.Background(), "", queue, false, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body,
		})
		if err != nil {
			b.t.Fatal(err)
		}
	}
}

// ready is the number of messages waiting in the queue, not counting
// those delivered and not yet acknowledged.
func (b *broker) ready(queue string) int {
	b.t.Helper()
	q, err := b.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return q.Messages
}

func body(i int) []byte {
	return fmt.Appendf(nil, `{"eid":"e-%d","event_date":1700000000000,"ext_brand_id":"brand-1","user_ext_id":"u-%d","event_type":"deposit","payload":{"amount":%d,"note":%q}}`, i, i%50, i, canary)
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
	mu       sync.Mutex
	seen     map[string]int // eid → deliveries
	invalid  int            // bodies that are not an event
	calls    int
	maxBatch int
	batches  [][]string
	// before runs before a batch is recorded; an error refuses the batch
	// (nothing of it is durable).
	before func(ctx context.Context, call int) error
	// after runs once the batch is recorded (durable); an error models a
	// failure between the durable write and the acknowledgement.
	after func(ctx context.Context, call int) error
}

func newSink() *sink { return &sink{seen: make(map[string]int)} }

func (s *sink) Ingest(ctx context.Context, events []json.RawMessage) error {
	s.mu.Lock()
	s.calls++
	call := s.calls
	s.maxBatch = max(s.maxBatch, len(events))
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

func (s *sink) batch(i int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batches[i]
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

type run struct {
	url, queue string
	batch      int
	logs       *logBuffer
	name       string
}

// start runs a connector until the returned stop is called.
func start(t testing.TB, r run, s rabbitmq.Sink) (stop func()) {
	t.Helper()
	var w io.Writer = t.Output()
	if r.logs != nil {
		w = io.MultiWriter(w, r.logs)
	}
	if r.url == "" {
		r.url = serverURL()
	}
	c, err := rabbitmq.New(rabbitmq.Config{URL: r.url, Queue: r.queue, BatchSize: r.batch, Linger: 20 * time.Millisecond}, s, rabbitmq.Options{
		Logger:         slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff:     10 * time.Millisecond,
		MaxBackoff:     100 * time.Millisecond,
		ConnectionName: r.name,
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

func TestNewRejectsBadConfig(t *testing.T) {
	ok := rabbitmq.Config{URL: "amqp://guest:secret-pw@127.0.0.1:5672/", Queue: "q"}
	for name, mut := range map[string]func(*rabbitmq.Config){
		"no url":          func(c *rabbitmq.Config) { c.URL = "" },
		"not an amqp url": func(c *rabbitmq.Config) { c.URL = "http://guest:secret-pw@127.0.0.1/" },
		"no queue":        func(c *rabbitmq.Config) { c.Queue = "" },
		"negative batch":  func(c *rabbitmq.Config) { c.BatchSize = -1 },
		"huge batch":      func(c *rabbitmq.Config) { c.BatchSize = 70000 },
		"negative linger": func(c *rabbitmq.Config) { c.Linger = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := ok
			mut(&cfg)
			_, err := rabbitmq.New(cfg, newSink(), rabbitmq.Options{})
			if !errors.Is(err, rabbitmq.ErrConfig) {
				t.Fatalf("New = %v, want ErrConfig", err)
			}
			if strings.Contains(err.Error(), "secret-pw") {
				t.Errorf("error quotes the password: %v", err)
			}
		})
	}
	if _, err := rabbitmq.New(ok, newSink(), rabbitmq.Options{}); err != nil {
		t.Fatalf("New(valid) = %v", err)
	}
}

// Every delivery reaches the sink, a body that is not JSON included, in
// batches no larger than the prefetch, and all are acknowledged: nothing
// is left in the queue once the connector has disconnected.
func TestConsumeAllAndAck(t *testing.T) {
	b := newBroker(t)
	q := b.newQueue()
	const n = 500
	b.publish(q, append(bodies(0, n), []byte("not json "+canary))...)

	s := newSink()
	logs := &logBuffer{}
	stop := start(t, run{queue: q, batch: 50, logs: logs}, s)
	waitFor(t, "all events", func() bool { u, _, inv := s.counts(); return u == n && inv == 1 })
	stop()
	if u, total, _ := s.counts(); total != u {
		t.Errorf("%d deliveries of %d events without any failure; want each once", total, u)
	}
	if s.maxBatch > 50 {
		t.Errorf("a batch of %d deliveries, want at most the prefetch 50", s.maxBatch)
	}
	if left := b.ready(q); left != 0 {
		t.Errorf("%d messages back in the queue after disconnecting; all were ingested and should be acknowledged", left)
	}
	if strings.Contains(logs.String(), canary) {
		t.Errorf("logs contain payload data")
	}
}

// A failed Ingest acknowledges nothing: the batch is requeued, delivered
// again, and every event is counted exactly once by eid.
func TestSinkFailureRequeues(t *testing.T) {
	b := newBroker(t)
	q := b.newQueue()
	const n = 200
	b.publish(q, bodies(0, n)...)

	s := newSink()
	var mu sync.Mutex
	var refused int
	s.before = func(ctx context.Context, call int) error {
		if call == 1 {
			mu.Lock()
			refused++
			mu.Unlock()
			return errors.New("store unavailable")
		}
		return nil
	}
	logs := &logBuffer{}
	stop := start(t, run{queue: q, batch: 40, logs: logs}, s)
	waitFor(t, "all events", func() bool { u, _, _ := s.counts(); return u == n })
	stop()
	if refused != 1 {
		t.Fatalf("sink refused %d batches, want 1", refused)
	}
	if u, total, _ := s.counts(); u != n || total != n {
		t.Errorf("unique %d deliveries %d, want %d each (the refused batch recorded nothing)", u, total, n)
	}
	if left := b.ready(q); left != 0 {
		t.Errorf("%d messages left in the queue", left)
	}
	if !strings.Contains(logs.String(), "requeued") {
		t.Errorf("the refused batch was not logged")
	}
	if strings.Contains(logs.String(), canary) {
		t.Errorf("logs contain payload data")
	}
}

// A connector that stops after its batch became durable but before it
// acknowledged (a crash in between) leaves the batch unacknowledged: the
// broker requeues it and the next connector delivers it again.
func TestStopBeforeAckRedelivers(t *testing.T) {
	b := newBroker(t)
	q := b.newQueue()
	const n = 100
	b.publish(q, bodies(0, n)...)

	s := newSink()
	reached := make(chan struct{})
	s.after = func(ctx context.Context, call int) error {
		if call == 1 {
			close(reached)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	stop := start(t, run{queue: q, batch: 30}, s)
	select {
	case <-reached:
	case <-time.After(15 * time.Second):
		t.Fatal("first batch never reached the sink")
	}
	stop()
	first := s.batch(0)
	if len(first) == 0 {
		t.Fatal("first batch was empty")
	}
	if left := b.ready(q); left != n {
		t.Errorf("%d messages in the queue after the stop, want all %d (none acknowledged)", left, n)
	}

	s.after = nil
	stop = start(t, run{queue: q, batch: 30}, s)
	waitFor(t, "all events", func() bool { u, _, _ := s.counts(); return u == n })
	stop()
	for _, eid := range first {
		if got := s.deliveries(eid); got != 2 {
			t.Errorf("%s delivered %d times, want 2", eid, got)
		}
	}
}

// proxy forwards TCP to the broker and can cut every connection, the way
// a network failure or a broker restart would.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// proxyURL is the test broker's URL with the proxy as the host.
func proxyURL(t testing.TB, p *proxy) string {
	t.Helper()
	uri, err := amqp.ParseURI(serverURL())
	if err != nil {
		t.Fatal(err)
	}
	uri.Port = p.ln.Addr().(*net.TCPAddr).Port
	uri.Host = "127.0.0.1"
	return uri.String()
}

// A connection lost while a batch is in the sink: the ack cannot reach
// the broker, which requeues the batch; the connector reconnects, the
// batch comes again (counted once by eid), and later messages flow.
func TestReconnectsAfterConnectionLoss(t *testing.T) {
	b := newBroker(t)
	q := b.newQueue()
	uri, _ := amqp.ParseURI(serverURL())
	p := newProxy(t, net.JoinHostPort(uri.Host, fmt.Sprint(uri.Port)))
	url := proxyURL(t, p)

	const n = 100
	b.publish(q, bodies(0, n)...)
	s := newSink()
	s.after = func(ctx context.Context, call int) error {
		if call == 1 {
			p.cut() // durable, but the acknowledgement is lost
		}
		return nil
	}
	logs := &logBuffer{}
	start(t, run{url: url, queue: q, batch: 25, logs: logs}, s)
	waitFor(t, "all events", func() bool { u, _, _ := s.counts(); return u == n })
	for _, eid := range s.batch(0) {
		if got := s.deliveries(eid); got != 2 {
			t.Errorf("%s delivered %d times, want 2 (its ack was lost with the connection)", eid, got)
		}
	}
	b.publish(q, bodies(n, n+50)...)
	waitFor(t, "events published after the reconnect", func() bool { u, _, _ := s.counts(); return u == n+50 })
	if !strings.Contains(logs.String(), "reconnecting") {
		t.Errorf("the lost connection was not logged")
	}
	if strings.Contains(logs.String(), "guest:guest") || strings.Contains(logs.String(), url) {
		t.Errorf("logs contain the broker URL with its password")
	}
}

// The broker cancels the consumer when its queue is deleted; the
// connector keeps retrying and resumes once the queue is back.
func TestResumesAfterConsumerCancel(t *testing.T) {
	b := newBroker(t)
	q := b.newQueue()
	b.publish(q, bodies(0, 10)...)
	s := newSink()
	start(t, run{queue: q, batch: 10}, s)
	waitFor(t, "the first events", func() bool { u, _, _ := s.counts(); return u == 10 })

	if _, err := b.ch.QueueDelete(q, false, false, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let it fail to consume a few times
	b.declare(q)
	b.publish(q, bodies(10, 30)...)
	waitFor(t, "events published after the queue came back", func() bool { u, _, _ := s.counts(); return u == 30 })
}

// The broker itself closes the connection (rabbitmqctl close_connection,
// as an operator or a node shutdown would); the connector reconnects.
// Needs rabbitmqctl with access to the local node; skipped without it.
func TestReconnectsAfterServerClosesConnection(t *testing.T) {
	b := newBroker(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl is not installed")
	}
	q := b.newQueue()
	name := "bp-test-conn-" + q
	s := newSink()
	logs := &logBuffer{}
	start(t, run{queue: q, batch: 10, logs: logs, name: name}, s)
	b.publish(q, bodies(0, 10)...)
	waitFor(t, "the first events", func() bool { u, _, _ := s.counts(); return u == 10 })

	out, err := exec.Command("rabbitmqctl", "--quiet", "list_connections", "--no-table-headers", "pid", "client_properties").CombinedOutput()
	if err != nil {
		t.Skipf("rabbitmqctl cannot reach the node: %v", err)
	}
	var pid string
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, name) {
			pid, _, _ = strings.Cut(line, "\t")
		}
	}
	if pid == "" {
		t.Fatalf("connection %q not listed by rabbitmqctl", name)
	}
	if out, err := exec.Command("rabbitmqctl", "close_connection", pid, "test closes it").CombinedOutput(); err != nil {
		t.Fatalf("close_connection: %v: %s", err, out)
	}
	waitFor(t, "the connector to notice", func() bool { return strings.Contains(logs.String(), "CONNECTION_FORCED") })
	b.publish(q, bodies(10, 30)...)
	waitFor(t, "events published after the reconnect", func() bool { u, _, _ := s.counts(); return u == 30 })
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

// BenchmarkConsume measures events per second from the local broker
// through the connector (batches of 100, one multiple-ack each) to a no-op
// sink. Publishing is not timed.
func BenchmarkConsume(bm *testing.B) {
	b := newBroker(bm)
	q := b.newQueue()
	b.publish(q, bodies(0, bm.N)...)
	s := &nopSink{}
	c, err := rabbitmq.New(rabbitmq.Config{URL: serverURL(), Queue: q}, s, rabbitmq.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		bm.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	bm.ResetTimer()
	t0 := time.Now()
	go func() { done <- c.Run(ctx) }()
	for s.count() < bm.N {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(t0)
	bm.StopTimer()
	cancel()
	<-done
	bm.ReportMetric(float64(bm.N)/el.Seconds(), "events/s")
}
