package core_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql", the PAM's replica in the test
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/blindpost/blindpost/core"
	"github.com/blindpost/blindpost/core/admin"
	"github.com/blindpost/blindpost/internal/testpg"
)

// routeCanaries is fake PII, fresh each run, that a PAM might leak into its
// events: an address, a phone number, a name, a card and an IBAN.
type routeCanaries struct{ email, phone, name, card, iban string }

func newCanaries() routeCanaries {
	r := randomToken()
	return routeCanaries{
		email: "canary-" + r[:10] + "@example.com",
		phone: "+1555" + fmt.Sprint(1000000+int(r[10])*7919%8999999),
		name:  "Canaryname" + strings.ToUpper(r[12:20]),
		card:  "4111 1111 1111 1111",
		iban:  "GB82 WEST 1234 5698 7654 32",
	}
}

func (c routeCanaries) all() map[string]string {
	return map[string]string{"email": c.email, "phone": c.phone, "name": c.name, "card": c.card,
		"card (compact)": strings.ReplaceAll(c.card, " ", ""), "iban": c.iban, "iban (compact)": strings.ReplaceAll(c.iban, " ", "")}
}

// events is what one route carries for one player: a registration, the
// leaks, a harmless update, and a login last (so the test knows the route
// delivered everything).
func (c routeCanaries) events(route, brand, user string) []map[string]any {
	id := func(s string) string { return route + "-" + s }
	return []map[string]any{
		ev(id("reg"), brand, user, "registration", nil),
		ev(id("email"), brand, user, "update_profile", map[string]any{"contact": map[string]any{"email": c.email}}),
		ev(id("phone"), brand, user, "update_profile", map[string]any{"note": "call " + c.phone}),
		ev(id("name"), brand, user, "update_profile", map[string]any{"first_name": c.name}),
		ev(id("card"), brand, user, "deposit", map[string]any{"amount": 10, "method": c.card}),
		ev(id("iban"), brand, user, "withdrawal", map[string]any{"amount": 5, "to": c.iban}),
		ev(c.email, brand, user, "bet", map[string]any{"amount": 1}), // an eid that is itself an address
		ev(id("ok"), brand, user, "update_profile", map[string]any{"vip": true, "core_is_email_disabled": false}),
		ev(id("login"), brand, user, "login", nil),
	}
}

// wantRejections are the (eid, reason) pairs the store must record for a
// route; the eid that is an address is recorded as "*".
func wantRejections(route string) map[string]string {
	return map[string]string{route + "-email": "email", route + "-phone": "phone", route + "-name": "pii_property",
		route + "-card": "card", route + "-iban": "iban", "*": "email"}
}

// TestCanaryProofEveryRoute is DESIGN.md §9.1 for ingestion, over every
// route at once: the events API, Kafka (franz-go's in-process broker),
// RabbitMQ, and SQL views on PostgreSQL and MariaDB, all feeding one core.
// Events carrying canary addresses, phone numbers, names, cards and IBANs
// are refused and recorded as (eid, reason, path) only; then the core's
// database files (with the WAL, while it runs and after it closed), its
// log, its /metrics and every API answer are searched for each canary:
// no hit anywhere.
func TestCanaryProofEveryRoute(t *testing.T) {
	ctx := context.Background()
	c := newCanaries()
	pgDSN := testpg.DSN(t)
	myDSN := envOr("BLINDPOST_TEST_MYSQL", "root@tcp(127.0.0.1:3306)/test")
	amqpURL := envOr("BLINDPOST_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
	const brand = "acme-casino"
	suffix := randomToken()[:10]

	// Kafka.
	const topic = "pam.events"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	kc, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	for _, e := range c.events("kafka", brand, "u-kafka") {
		b, _ := json.Marshal(e)
		if err := kc.ProduceSync(ctx, &kgo.Record{Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// RabbitMQ.
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		needServer(t, "RabbitMQ", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	queue := "core-canary-" + suffix
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.QueueDelete(queue, false, false, false) })
	for _, e := range c.events("amqp", brand, "u-amqp") {
		b, _ := json.Marshal(e)
		if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{Body: b, DeliveryMode: amqp.Persistent}); err != nil {
			t.Fatal(err)
		}
	}

	// The PAM's replicas: a table on PostgreSQL and one on MariaDB.
	pg, err := pgx.Connect(ctx, pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	pgSchema := testpg.Schema(t, pgDSN, "pam_canary")
	my, err := sql.Open("mysql", myDSN)
	if err == nil {
		err = my.PingContext(ctx)
	}
	if err != nil {
		needServer(t, "MariaDB", err)
	}
	myTable := "pam_canary_" + suffix
	t.Cleanup(func() {
		my.Exec("DROP TABLE IF EXISTS " + myTable)
		my.Close()
	})
	if _, err := pg.Exec(ctx, "CREATE SCHEMA "+pgSchema+"; CREATE TABLE "+pgSchema+".events (eid text, event_date bigint, ext_brand_id text, user_ext_id text, event_type text, payload text, updated_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	if _, err := my.ExecContext(ctx, "CREATE TABLE "+myTable+" (eid varchar(128), event_date bigint, ext_brand_id varchar(128), user_ext_id varchar(128), event_type varchar(64), payload longtext, updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	for i, e := range c.events("pgview", brand, "u-pgview") {
		p, _ := json.Marshal(e["payload"])
		if _, err := pg.Exec(ctx, "INSERT INTO "+pgSchema+".events (eid, event_date, ext_brand_id, user_ext_id, event_type, payload, updated_at) VALUES ($1, $2, $3, $4, $5, $6, now() + $7 * interval '1 millisecond')",
			e["eid"], e["event_date"], brand, "u-pgview", e["event_type"], string(p), i); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range c.events("myview", brand, "u-myview") {
		p, _ := json.Marshal(e["payload"])
		if _, err := my.ExecContext(ctx, "INSERT INTO "+myTable+" (eid, event_date, ext_brand_id, user_ext_id, event_type, payload, updated_at) VALUES (?, ?, ?, ?, ?, ?, NOW(6) + INTERVAL ? MICROSECOND)",
			e["eid"], e["event_date"], brand, "u-myview", e["event_type"], string(p), i*1000); err != nil {
			t.Fatal(err)
		}
	}

	// One core with every route feeding label acme.
	cfg := testConfig(t)
	env := map[string]string{"CANARY_AMQP": amqpURL, "CANARY_PG": pgDSN, "CANARY_MY": myDSN}
	getenv := func(k string) string { return env[k] }
	prepareLabel(t, cfg, getenv)
	poll := core.Duration(100 * time.Millisecond)
	cfg.Connectors = []core.ConnectorConfig{
		{Kind: core.KindKafka, Label: "acme", Brokers: cluster.ListenAddrs(), Topic: topic, Group: "core"},
		{Kind: core.KindRabbitMQ, Label: "acme", URLEnv: "CANARY_AMQP", Queue: queue},
		{Kind: core.KindDBViews, Label: "acme", Driver: "postgres", DSNEnv: "CANARY_PG", View: pgSchema + ".events", Watermark: "updated_at", Poll: poll},
		{Kind: core.KindDBViews, Label: "acme", Driver: "mysql", DSNEnv: "CANARY_MY", View: myTable, Watermark: "updated_at", Poll: poll},
	}
	cfg.SetDefaults()
	n := start(t, cfg, getenv)
	var nk admin.NewKey
	if code := n.adminDo(t, "POST", "/v1/labels/acme/keys", "", &nk); code != http.StatusCreated {
		t.Fatalf("key: %d", code)
	}
	var answers []string
	code, r, raw := n.post(t, nk.Key, c.events("rest", brand, "u-rest")...)
	if code != http.StatusOK {
		t.Fatalf("events API: %d %s", code, raw)
	}
	answers = append(answers, raw)
	if got := len(r.EventErrors); got != len(wantRejections("rest")) {
		t.Errorf("the events API refused %d events, want %d: %s", got, len(wantRejections("rest")), raw)
	}

	routes := []string{"rest", "kafka", "amqp", "pgview", "myview"}
	for _, route := range routes {
		ps := waitPlayer(t, n, "acme", brand, "u-"+route)
		if ps.Properties["vip"] != true {
			t.Errorf("%s: the harmless update was lost: %+v", route, ps.Properties)
		}
		for _, k := range []string{"contact", "note", "first_name"} {
			if _, ok := ps.Properties[k]; ok {
				t.Errorf("%s: the refused property %s was applied", route, k)
			}
		}
	}

	// Every leak is on record as (eid, reason, path) and nothing more.
	rs, err := n.Store().Rejections(ctx, "acme", 1000)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]bool{}
	for _, rj := range rs {
		if got[rj.EID] == nil {
			got[rj.EID] = map[string]bool{}
		}
		got[rj.EID][rj.Reason] = true
	}
	for _, route := range routes {
		for eid, reason := range wantRejections(route) {
			if !got[eid][reason] {
				t.Errorf("%s: no rejection (%s, %s) on record", route, eid, reason)
			}
		}
	}
	var viaAPI []admin.Rejection
	if code := n.adminDo(t, "GET", "/v1/labels/acme/rejections?limit=1000", "", &viaAPI); code != http.StatusOK {
		t.Fatalf("rejections: %d", code)
	}
	b, _ := json.Marshal(viaAPI)
	answers = append(answers, string(b))
	for _, route := range routes {
		var p admin.Player
		if code := n.adminDo(t, "GET", "/api/players/"+brand+"/u-"+route+"?label=acme", "", &p); code != http.StatusOK {
			t.Fatalf("player %s: %d", route, code)
		}
		b, _ := json.Marshal(p)
		answers = append(answers, string(b))
	}
	_, metrics := get(t, "http://"+n.MetricsAddr()+"/metrics")
	for _, reason := range []string{"email", "phone", "pii_property", "card", "iban"} {
		if !strings.Contains(metrics, `blindpost_core_firewall_rejections_total{label="acme",reason="`+reason+`"}`) {
			t.Errorf("/metrics does not count %s rejections", reason)
		}
	}

	scan := func(when string, places map[string][]byte) {
		t.Helper()
		for place, b := range places {
			for what, v := range c.all() {
				if bytes.Contains(b, []byte(v)) {
					t.Errorf("%s: the canary %s is in %s", when, what, place)
				}
			}
		}
	}
	places := map[string][]byte{"/metrics": []byte(metrics), "the log": []byte(n.logs.String())}
	for i, a := range answers {
		places[fmt.Sprintf("API answer %d", i)] = []byte(a)
	}
	scan("while running", places)
	scan("while running", dataFiles(t, cfg.DataDir)) // the database with its WAL, as it stands
	if err := n.Store().Close(); err != nil {
		t.Fatal(err)
	}
	scan("after closing", dataFiles(t, cfg.DataDir))
	scan("after closing", map[string][]byte{"the log": []byte(n.logs.String())})
	if _, ok := dataFiles(t, cfg.DataDir)[filepath.Base(cfg.Store.Path)]; !ok {
		t.Errorf("the scan did not see the store file %s", cfg.Store.Path)
	}
}

// dataFiles reads every file under dir.
func dataFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		out[filepath.Base(path)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no files in the data directory")
	}
	return out
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// needServer fails under CI and skips elsewhere when a test server is
// unreachable.
func needServer(t *testing.T, name string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: %s unreachable: %v", name, err)
	}
	t.Skipf("%s unreachable: %v", name, err)
}
