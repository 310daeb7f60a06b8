package core_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blindpost/blindpost/core"
	"github.com/blindpost/blindpost/core/admin"
	"github.com/blindpost/blindpost/core/eventsapi"
	"github.com/blindpost/blindpost/core/store"
	"github.com/blindpost/blindpost/internal/testpg"
)

// Canaries: fake PII that the core must refuse or strip, and never keep,
// log, count or return (DESIGN.md §9.1).
var canaries = []string{"canary.player@example.com", "+15555550123", "4111111111111111"}

type node struct {
	*core.Core
	cfg   *core.Config
	token string
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func testConfig(t testing.TB) *core.Config {
	cfg := &core.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0"}
	cfg.SetDefaults()
	return cfg
}

// start runs a core node until the test ends.
func start(t testing.TB, cfg *core.Config, getenv func(string) string) *node {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := &node{cfg: cfg, token: randomToken(), logs: &syncBuffer{}}
	co, err := core.Open(context.Background(), cfg, core.Options{
		Logger:      slog.New(slog.NewJSONHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AdminTokens: []string{n.token}, Getenv: getenv,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Core = co
	if err := co.Listen(); err != nil {
		co.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- co.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := co.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

// adminDo calls the admin API over the network.
func (n *node) adminDo(t testing.TB, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+n.AdminAddr()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

func (n *node) post(t testing.TB, key string, evs ...map[string]any) (int, eventsapi.Response, string) {
	t.Helper()
	body, _ := json.Marshal(evs)
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.EventsAddr()+eventsapi.Path, bytes.NewReader(body))
	req.Header.Set("Authorization", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r eventsapi.Response
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, r, string(raw)
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func ev(eid, brand, user, typ string, payload map[string]any) map[string]any {
	return map[string]any{"eid": eid, "event_date": 1700000000000, "ext_brand_id": brand, "user_ext_id": user, "event_type": typ, "payload": payload}
}

// setupLabel creates a label with a brand through the admin API and returns
// an API key.
func (n *node) setupLabel(t testing.TB, id, brand, mode string) string {
	t.Helper()
	if code := n.adminDo(t, "POST", "/v1/labels", `{"id":"`+id+`"}`, nil); code != http.StatusCreated {
		t.Fatalf("create label: %d", code)
	}
	if code := n.adminDo(t, "POST", "/v1/labels/"+id+"/brands", `{"brand":"`+brand+`"}`, nil); code != http.StatusOK {
		t.Fatalf("add brand: %d", code)
	}
	if code := n.adminDo(t, "PUT", "/v1/labels/"+id+"/firewall", `{"mode":"`+mode+`"}`, nil); code != http.StatusOK {
		t.Fatalf("firewall: %d", code)
	}
	var nk admin.NewKey
	if code := n.adminDo(t, "POST", "/v1/labels/"+id+"/keys", "", &nk); code != http.StatusCreated {
		t.Fatalf("key: %d", code)
	}
	return nk.Key
}

// TestNoPIIOnTheCoreSide is DESIGN.md §9.1 for ingestion: events carrying
// canary PII go through the events API in reject and strip mode; none of the
// canaries appears in the core's files, logs, metrics or answers.
func TestNoPIIOnTheCoreSide(t *testing.T) {
	n := start(t, testConfig(t), nil)
	keyReject := n.setupLabel(t, "acme", "acme-casino", store.FirewallReject)
	keyStrip := n.setupLabel(t, "beta", "beta-bets", store.FirewallStrip)

	var answers []string
	for _, l := range []struct{ key, brand string }{{keyReject, "acme-casino"}, {keyStrip, "beta-bets"}} {
		code, _, raw := n.post(t, l.key,
			ev("reg-1", l.brand, "u1", "registration", nil),
			ev("pii-1", l.brand, "u1", "update_profile", map[string]any{"vip": true, "contact": map[string]any{"email": canaries[0], "mobile": canaries[1]}}),
			ev("pii-2", l.brand, "u1", "deposit", map[string]any{"amount": 10, "card": canaries[2]}),
			ev(canaries[0], l.brand, "u1", "login", nil),
		)
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, raw)
		}
		answers = append(answers, raw)
	}
	for _, p := range []string{"/api/players/acme-casino/u1?label=acme", "/api/players/beta-bets/u1?label=beta", "/v1/labels/acme/rejections", "/v1/labels/beta/rejections"} {
		var v any
		if code := n.adminDo(t, "GET", p, "", &v); code != http.StatusOK {
			t.Fatalf("GET %s: %d", p, code)
		}
		b, _ := json.Marshal(v)
		answers = append(answers, string(b))
	}
	// In strip mode the event was kept without the PII.
	var p admin.Player
	n.adminDo(t, "GET", "/api/players/beta-bets/u1?label=beta", "", &p)
	if p.Properties["vip"] != true {
		t.Errorf("strip mode lost the event: %+v", p)
	}
	_, metrics := get(t, "http://"+n.MetricsAddr()+"/metrics")
	if !strings.Contains(metrics, `blindpost_core_firewall_rejections_total{label="acme",reason="email"}`) ||
		!strings.Contains(metrics, `blindpost_core_firewall_stripped_total{label="beta",reason="phone"}`) {
		t.Errorf("metrics lack the firewall counts:\n%s", grep(metrics, "firewall"))
	}
	answers = append(answers, metrics, n.logs.String())
	for _, c := range canaries {
		for i, a := range answers {
			if strings.Contains(a, c) {
				t.Errorf("canary %s in answer/log/metrics %d: %.300s", c, i, a)
			}
		}
	}
	// The files: the SQLite database, its WAL and everything else in data_dir.
	n.Store().Close()
	filepath.WalkDir(n.cfg.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range canaries {
			if bytes.Contains(b, []byte(c)) {
				t.Errorf("canary %s in %s", c, path)
			}
		}
		return nil
	})
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestHealthReadinessAndAdminRoutes(t *testing.T) {
	n := start(t, testConfig(t), nil)
	for _, addr := range []string{n.EventsAddr(), n.AdminAddr()} {
		if code, body := get(t, "http://"+addr+"/healthz"); code != 200 || body != "ok\n" {
			t.Errorf("%s/healthz: %d %q", addr, code, body)
		}
		if code, body := get(t, "http://"+addr+"/readyz"); code != 200 || body != "ready\n" {
			t.Errorf("%s/readyz: %d %q", addr, code, body)
		}
	}
	// The admin API is not on the events listener, nor the events API on
	// the admin listener.
	if code, _ := get(t, "http://"+n.EventsAddr()+"/v1/labels"); code != http.StatusNotFound {
		t.Errorf("admin route on the events listener: %d", code)
	}
	if code, _ := get(t, "http://"+n.AdminAddr()+"/v1/labels"); code != http.StatusUnauthorized {
		t.Errorf("admin API without token: %d", code)
	}
	if code, body := get(t, "http://"+n.AdminAddr()+"/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics on admin: %d", code)
	}
	n.Store().Close()
	if code, _ := get(t, "http://"+n.EventsAddr()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("readyz with the store closed: %d", code)
	}
}

func TestConnectorNeedsAnExistingLabel(t *testing.T) {
	cfg := testConfig(t)
	cfg.Connectors = []core.ConnectorConfig{{Kind: core.KindKafka, Label: "ghost", Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g"}}
	_, err := core.Open(context.Background(), cfg, core.Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "connectors[0].label") {
		t.Fatalf("Open: %v", err)
	}
	cfg.Connectors = []core.ConnectorConfig{{Kind: core.KindRabbitMQ, Label: "ghost", URLEnv: "NOPE_UNSET", Queue: "q"}}
	st, err := core.OpenStore(context.Background(), cfg, core.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.CreateLabel(context.Background(), "ghost", "g")
	st.Close()
	_, err = core.Open(context.Background(), cfg, core.Options{Logger: slog.New(slog.DiscardHandler), Getenv: func(string) string { return "" }})
	if err == nil || !strings.Contains(err.Error(), "connectors[0].url_env") {
		t.Fatalf("Open: %v", err)
	}
}

// TestKafkaConnectorFeedsTheLabel runs a core with a Kafka connector against
// franz-go's in-process broker: records become the label's events, refused
// ones are acknowledged, and the group's offsets are committed.
func TestKafkaConnectorFeedsTheLabel(t *testing.T) {
	const topic = "pam.events"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg := testConfig(t)
	st, err := core.OpenStore(context.Background(), cfg, core.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, err := range []error{st.CreateLabel(ctx, "acme", "Acme"), st.AddBrand(ctx, "acme", "acme-casino")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	cfg.Connectors = []core.ConnectorConfig{{Kind: core.KindKafka, Label: "acme", Brokers: cluster.ListenAddrs(), Topic: topic, Group: "core"}}
	n := start(t, cfg, nil)

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i, e := range []map[string]any{
		ev("k-1", "acme-casino", "u1", "registration", nil),
		ev("k-2", "acme-casino", "u1", "update_profile", map[string]any{"+tags": "kafka"}),
		ev("k-3", "acme-casino", "u1", "update_profile", map[string]any{"email": canaries[0]}), // refused, acknowledged
		{"not": "an event"},
		ev("k-2", "acme-casino", "u1", "update_profile", map[string]any{"+tags": "again"}), // duplicate
		ev("k-4", "acme-casino", "u1", "login", nil),
	} {
		b, _ := json.Marshal(e)
		recs = append(recs, &kgo.Record{Value: b, Key: []byte(fmt.Sprint(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps, err := n.Store().Player(ctx, "acme", "acme-casino", "u1")
		if err == nil && !ps.LastOnline.IsZero() {
			if strings.Join(ps.Tags, ",") != "kafka" {
				t.Errorf("tags %v: the duplicate applied", ps.Tags)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events not ingested: %v %+v\n%s", err, ps, n.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// At least once: a batch redelivered after a rebalance records its
	// refusal again.
	rs, err := n.Store().Rejections(ctx, "acme", 10)
	if err != nil || len(rs) == 0 {
		t.Errorf("rejections %+v %v", rs, err)
	}
	for _, r := range rs {
		if r.EID != "k-3" || r.Path != "payload.email" {
			t.Errorf("rejection %+v", r)
		}
	}
	if logs := n.logs.String(); !strings.Contains(logs, "connector events refused") || strings.Contains(logs, canaries[0]) {
		t.Errorf("refusals not logged, or logged with a value:\n%s", logs)
	}
}

// TestPostgresStore runs the events API over a fresh PostgreSQL schema.
func TestPostgresStore(t *testing.T) {
	dsn := testpg.DSN(t)
	schema := testpg.Schema(t, dsn, "core_c4")
	cfg := testConfig(t)
	cfg.Store = core.StoreConfig{Driver: "postgres", DSNEnv: "TEST_CORE_DSN", Schema: schema}
	n := start(t, cfg, func(k string) string {
		if k == "TEST_CORE_DSN" {
			return dsn
		}
		return ""
	})
	key := n.setupLabel(t, "acme", "acme-casino", store.FirewallReject)
	batch := []map[string]any{
		ev("pg-1", "acme-casino", "u1", "registration", nil),
		ev("pg-2", "acme-casino", "u1", "update_profile", map[string]any{"+tags": []any{"a", "b"}, "level": 3}),
		ev("pg-3", "acme-casino", "u1", "update_profile", map[string]any{"^tags": "a*", "email": canaries[0]}),
		ev("pg-4", "acme-casino", "ghost", "bet", nil),
	}
	code, r, raw := n.post(t, key, batch...)
	if code != http.StatusOK || len(r.EventErrors) != 2 || r.EventErrors["pg-3"][0].Code != 10003 || r.EventErrors["pg-4"][0].Code != 10001 {
		t.Fatalf("%d %s", code, raw)
	}
	if _, r, _ := n.post(t, key, batch...); len(r.EventErrors) != 4 || r.EventErrors["pg-1"][0].Code != 20056 || r.EventErrors["pg-3"][0].Code != 10003 {
		t.Fatalf("retry: %+v", r)
	}
	var p admin.Player
	n.adminDo(t, "GET", "/api/players/acme-casino/u1?label=acme", "", &p)
	if strings.Join(p.Tags, ",") != "a,b" || fmt.Sprint(p.Properties["level"]) != "3" {
		t.Errorf("player %+v", p)
	}
}

// waitPlayer waits until the label's player has logged in: the last event
// of every connector test.
func waitPlayer(t *testing.T, n *node, label, brand, user string) store.PlayerState {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps, err := n.Store().Player(context.Background(), label, brand, user)
		if err == nil && !ps.LastOnline.IsZero() {
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("events not ingested: %v\n%s", err, n.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// prepareLabel creates label acme with brand acme-casino in cfg's store
// before the core opens (a connector's label must exist).
func prepareLabel(t *testing.T, cfg *core.Config, getenv func(string) string) {
	t.Helper()
	ctx := context.Background()
	st, err := core.OpenStore(ctx, cfg, core.StoreOptions{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, err := range []error{st.CreateLabel(ctx, "acme", "Acme"), st.AddBrand(ctx, "acme", "acme-casino")} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRabbitMQConnectorAcksWhatTheCoreHolds(t *testing.T) {
	url := os.Getenv("BLINDPOST_TEST_AMQP")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: RabbitMQ unreachable: %v", err)
		}
		t.Skipf("RabbitMQ unreachable (%v); set BLINDPOST_TEST_AMQP", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	queue := "core-c4-" + randomToken()[:12]
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.QueueDelete(queue, false, false, false) })
	ctx := context.Background()
	for _, e := range []map[string]any{
		ev("q-1", "acme-casino", "u1", "registration", nil),
		ev("q-2", "acme-casino", "u1", "deposit", map[string]any{"card": canaries[2]}),
		ev("q-3", "acme-casino", "u1", "login", nil),
	} {
		b, _ := json.Marshal(e)
		if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{Body: b, DeliveryMode: amqp.Persistent}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t)
	prepareLabel(t, cfg, nil)
	cfg.Connectors = []core.ConnectorConfig{{Kind: core.KindRabbitMQ, Label: "acme", URLEnv: "TEST_AMQP_URL", Queue: queue}}
	n := start(t, cfg, func(k string) string {
		if k == "TEST_AMQP_URL" {
			return url
		}
		return ""
	})
	waitPlayer(t, n, "acme", "acme-casino", "u1")
	// Every delivery was acknowledged, the refused one too.
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if q.Messages == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages left unacknowledged", q.Messages)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(n.logs.String(), url) || strings.Contains(n.logs.String(), canaries[2]) {
		t.Error("the AMQP URL (a secret) or a canary reached the log")
	}
}

// TestDBViewsConnectorKeepsItsWatermarkInTheStore reads a view of a
// PostgreSQL "PAM" and checks the core's store holds its checkpoint.
func TestDBViewsConnectorKeepsItsWatermarkInTheStore(t *testing.T) {
	dsn := testpg.DSN(t)
	pam := testpg.Schema(t, dsn, "pam_c4")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"CREATE SCHEMA " + pam,
		"CREATE TABLE " + pam + ".events (eid text, event_date bigint, ext_brand_id text, user_ext_id text, event_type text, payload text, updated_at timestamptz NOT NULL DEFAULT now())",
		"INSERT INTO " + pam + `.events (eid, event_date, ext_brand_id, user_ext_id, event_type, payload) VALUES
			('v-1', 1700000000000, 'acme-casino', 'u1', 'registration', NULL),
			('v-2', 1700000000100, 'acme-casino', 'u1', 'update_profile', '{"+tags":"sql"}'),
			('v-3', 1700000000200, 'acme-casino', 'u1', 'login', '{}')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t)
	prepareLabel(t, cfg, nil)
	poll := core.Duration(100 * time.Millisecond)
	cfg.Connectors = []core.ConnectorConfig{{Kind: core.KindDBViews, Label: "acme", Driver: "postgres", DSNEnv: "PAM_DSN",
		View: pam + ".events", Watermark: "updated_at", Poll: poll}}
	cfg.SetDefaults()
	n := start(t, cfg, func(k string) string {
		if k == "PAM_DSN" {
			return dsn
		}
		return ""
	})
	if ps := waitPlayer(t, n, "acme", "acme-casino", "u1"); strings.Join(ps.Tags, ",") != "sql" {
		t.Errorf("tags %v", ps.Tags)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, err := n.Store().Checkpoint(ctx, "dbviews/acme/postgres/"+pam+".events")
		if err != nil {
			t.Fatal(err)
		}
		if cp != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint saved in the core's store")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEventsAPIOverTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "core.test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)

	cfg := testConfig(t)
	cfg.Listen = "0.0.0.0:0" // not loopback: TLS is required
	if err := cfg.Validate(); err == nil {
		t.Fatal("plain HTTP on a public address validated")
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS = core.TLSConfig{CertFile: certFile, KeyFile: keyFile}
	n := start(t, cfg, nil)
	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + n.EventsAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d", resp.StatusCode)
	}
	// A plain request to the TLS listener gets Go's 400, never the API.
	if resp, err := http.Get("http://" + n.EventsAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP served on the TLS listener")
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
