package crashtest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	_ "modernc.org/sqlite" // database/sql driver "sqlite", to read the core's store afterwards

	corecfg "github.com/blindpost/blindpost/core"
)

// The core under kill -9 (issue 6: never lose or double-count an event):
// the real binary consumes a Kafka topic (franz-go's broker, in this
// process, outliving every core) while the PAM keeps producing, and is
// SIGKILLed several times. Offsets are committed only after the store made
// a batch durable, so a kill re-delivers what was in hand; eid
// de-duplication absorbs it. In the end the store holds every produced
// event exactly once.
func TestCoreKill9CountsEveryEventOnce(t *testing.T) {
	bin := binary(t)
	dir := tempDir(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	seed := *flagSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	t.Logf("seed %d (rerun with -crash.seed=%d)", seed, seed)
	const (
		topic   = "pam.events"
		events  = 4000
		batchN  = 40
		players = 200
		kills   = 4
	)

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()

	// The core's config and its label, as an operator would prepare them.
	adminAddr, eventsAddr := freePort(t, rng), freePort(t, rng)
	cfg := &corecfg.Config{DataDir: filepath.Join(dir, "core"), Listen: eventsAddr, AdminListen: adminAddr}
	cfg.Connectors = []corecfg.ConnectorConfig{{Kind: corecfg.KindKafka, Label: "acme", Brokers: cluster.ListenAddrs(), Topic: topic,
		Group: "blindpost-core", BatchSize: 100, InstanceID: "core-1"}}
	cfg.SetDefaults()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := corecfg.OpenStore(ctx, cfg, corecfg.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateLabel(ctx, "acme", "Acme"); err != nil {
		t.Fatal(err)
	}
	if err := st.AddBrand(ctx, "acme", "acme-casino"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cfgPath := filepath.Join(dir, "core.yaml")
	if b, err := cfg.Marshal(); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BLINDPOST_CORE_ADMIN_TOKEN", fmt.Sprintf("%064x", rng.Uint64()))
	logf, err := os.OpenFile(filepath.Join(dir, "core.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	adminURL := "http://" + adminAddr
	start := func() *child {
		t.Helper()
		c, err := startChild(ctx, t, bin, logf, "core", "--config", cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		defer rcancel()
		if err := waitReady(rctx, c, adminURL); err != nil {
			t.Fatalf("core start: %v", err)
		}
		return c
	}
	proc := start()

	// The PAM: produces every event once, in batches, while the core dies.
	pcl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	var wg sync.WaitGroup
	var produceErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < events; i += batchN {
			var recs []*kgo.Record
			for j := i; j < i+batchN; j++ {
				user := fmt.Sprintf("player-%03d", j%players)
				b, _ := json.Marshal(map[string]any{"eid": fmt.Sprintf("ev-%06d", j), "event_date": 1700000000000 + j,
					"ext_brand_id": "acme-casino", "user_ext_id": user, "event_type": "update_profile",
					"payload": map[string]any{"+seen": fmt.Sprintf("ev-%06d", j)}})
				recs = append(recs, &kgo.Record{Key: []byte(user), Value: b})
			}
			if err := pcl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				produceErr = err
				return
			}
			sleep(ctx, 15*time.Millisecond)
		}
	}()

	for k := range kills {
		sleep(ctx, 200*time.Millisecond+time.Duration(rng.Int64N(int64(500*time.Millisecond))))
		if proc.exited() {
			t.Fatalf("the core exited on its own before kill %d: %v", k+1, proc.err)
		}
		proc.kill()
		proc = start()
	}
	wg.Wait()
	if produceErr != nil {
		t.Fatal(produceErr)
	}

	// Everything produced arrives, once.
	dbPath := cfg.Store.Path
	if !filepath.IsAbs(dbPath) {
		dbPath = filepath.Join(cfg.DataDir, dbPath)
	}
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: dbPath}).EscapedPath()+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func() (rows, distinct int) {
		t.Helper()
		if err := db.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT eid) FROM events WHERE label = 'acme'`).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		return rows, distinct
	}
	deadline := time.Now().Add(time.Minute)
	for rows, _ := count(); rows < events && time.Now().Before(deadline); rows, _ = count() {
		sleep(ctx, 100*time.Millisecond)
	}
	if err := proc.stop(15 * time.Second); err != nil {
		t.Errorf("core shutdown: %v", err)
	}
	rows, distinct := count()
	t.Logf("%d events produced, %d kills; the store holds %d rows, %d distinct eids", events, kills, rows, distinct)
	if rows != events || distinct != events {
		t.Errorf("the store holds %d events (%d distinct), want each of the %d produced exactly once", rows, distinct, events)
	}
	// Each event's profile update applied once: every player saw exactly
	// its own events.
	var wrong int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM players WHERE label = 'acme' AND json_array_length(json_extract(properties, '$.seen')) != ?`,
		events/players).Scan(&wrong); err != nil {
		t.Fatal(err)
	}
	if wrong != 0 {
		t.Errorf("%d players' seen lists do not hold exactly their %d events", wrong, events/players)
	}
}
