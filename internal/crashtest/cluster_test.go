package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/smtp/capture"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/gateway/admin"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/internal/testpg"
)

// clusterKillsEnv sets how many times TestClusterNodeKilled kills a node
// (default 4, two per node).
const clusterKillsEnv = "BLINDPOST_CLUSTER_KILLS"

// clusterLease is the nodes' send.lease: short, so that a dead node's
// in-flight messages pass to the other node within the test.
const clusterLease = 2 * time.Second

// node is one gateway process of the cluster.
type node struct {
	name     string
	cfgPath  string
	cfg      *gateway.Config
	adminURL string
	msgURL   string
	gw       *child
	origin   string // its audit log's origin
}

// Several gateway nodes on one PostgreSQL (issue 5 §3, DESIGN.md §9
// invariant 6 for a cluster): two processes of the real binary share the
// queue and its leases, the remembered answers, the envelope nonces, the
// caps, the volume guard and the vault's records. The core posts to both
// and moves to the other node when one does not answer. The nodes are
// SIGKILLed in turn; each stays down for a while, sometimes longer than a
// lease, so the survivor carries the traffic and then takes over the dead
// node's in-flight messages, and is started again, taking back its own
// leases. Every acknowledged message is delivered and reported, duplicates
// stay within the killed node's in-flight window per kill, and each node's
// audit log verifies against the witness copies of its own checkpoints.
func TestClusterNodeKilled(t *testing.T) {
	dsn := testpg.DSN(t)
	start := time.Now()
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
	nKills := 4
	if v := os.Getenv(clusterKillsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("$%s=%q: want a positive number", clusterKillsEnv, v)
		}
		nKills = n
	}

	vaultSchema := testpg.Schema(t, dsn, "bp_cluster_vault")
	queueSchema := testpg.Schema(t, dsn, "bp_cluster_queue")
	const dsnEnv = "BLINDPOST_CRASHTEST_PG_DSN" // the children inherit it
	t.Setenv(dsnEnv, dsn)

	if err := devenv.Prepare(dir); err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(dir, "crash-policy-data.json")
	if err := os.WriteFile(policyFile, []byte(policyData), 0o600); err != nil {
		t.Fatal(err)
	}
	gwSigningPub := filepath.Join(dir, "keys", "gateway", "signing.pub")
	sigPub, err := envelope.LoadVerifyingKey(gwSigningPub)
	if err != nil {
		t.Fatal(err)
	}

	rl := &relay{deliveries: map[string]int{}, statuses: map[string][]string{}, pub: sigPub.Public,
		witnessDir: filepath.Join(dir, "witness")}
	if err := os.MkdirAll(rl.witnessDir, 0o700); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, w := range rl.witnesses {
			w.Close()
		}
	}()
	capt, err := capture.Listen("127.0.0.1:0", filepath.Join(dir, "mail"), capture.Options{OnMessage: rl.onMessage})
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	if err := rl.listenCallbacks(); err != nil {
		t.Fatal(err)
	}
	defer rl.close()

	logPath := filepath.Join(dir, "gateways.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	mark := func(format string, args ...any) {
		fmt.Fprintf(logf, "=== clustertest %s: "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	var lost []string
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logExcerpt(logPath, lost, 400, 80))
		}
	})

	// Two nodes: the same keys and policy, their own data_dir (audit log)
	// and listeners, one shared PostgreSQL for the queue and the records.
	nodes := make([]*node, 2)
	for i, name := range []string{"a", "b"} {
		msgAddr, adminAddr := freePort(t, rng), freePort(t, rng)
		cfg := devenv.Config(dir, capt.Addr(), rl.callbackURL())
		cfg.Listen, cfg.AdminListen = msgAddr, adminAddr
		cfg.DataDir = filepath.Join(dir, "node-"+name)
		cfg.Public = gateway.PublicConfig{} // transactional mail only: no unsubscribe links
		cfg.Vault.Postgres = gateway.PostgresVaultConfig{DSNEnv: dsnEnv, Schema: vaultSchema}
		cfg.Cluster = gateway.ClusterConfig{Node: name, Postgres: gateway.ClusterPostgresConfig{DSNEnv: dsnEnv, Schema: queueSchema}}
		cfg.Send.Workers = 4
		cfg.Send.Lease = gateway.Duration(clusterLease)
		cfg.SMTP.Throttle.Concurrency = sendConcurrency
		cfg.Policy.DataFile = policyFile
		cfg.Audit.CheckpointEvery = gateway.Duration(200 * time.Millisecond)
		path := filepath.Join(dir, "gateway-"+name+".yaml")
		if b, err := cfg.Marshal(); err != nil {
			t.Fatal(err)
		} else if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		loaded, err := gateway.LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &node{name: name, cfgPath: path, cfg: loaded, adminURL: "http://" + adminAddr, msgURL: "https://" + msgAddr,
			origin: gateway.AuditOriginPrefix + string(sigPub.ID) + "/" + name}
	}
	window := inFlight(nodes[0].cfg)
	run := func(n *node) {
		t.Helper()
		mark("start node %s", n.name)
		if n.gw, err = startGateway(ctx, t, bin, n.cfgPath, logf); err != nil {
			t.Fatal(err)
		}
	}
	ready := func(n *node) {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		defer rcancel()
		if err := waitReady(rctx, n.gw, n.adminURL); err != nil {
			t.Fatalf("node %s: %v", n.name, err)
		}
	}
	for _, n := range nodes {
		run(n)
	}
	for _, n := range nodes {
		ready(n)
	}

	// The PAM registers the players through one node; both resolve them.
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	ad := &admin.Client{BaseURL: nodes[0].adminURL, Token: strings.TrimSpace(string(tok)), HTTP: &http.Client{Timeout: 30 * time.Second}}
	var nd strings.Builder
	for i := 1; i <= subjects; i++ {
		fmt.Fprintf(&nd, `{"brand":%q,"user":"user-%04d","record":{"email":"user-%04d@example.com","first_name":"Player%04d","country":"MT"}}`+"\n",
			devenv.Brand, i, i, i)
	}
	if imp, err := ad.Import(ctx, strings.NewReader(nd.String())); err != nil {
		t.Fatal(err)
	} else if imp.Imported != subjects || imp.FailedCount != 0 {
		t.Fatalf("import: %d imported, %d failed", imp.Imported, imp.FailedCount)
	}

	cl, err := newCore(dir, nodes[0].msgURL, nodes[1].msgURL)
	if err != nil {
		t.Fatal(err)
	}
	led := cl.ledger
	const clusterSenders = 4 // two per node until one dies
	stop := make(chan struct{})
	stopSending := sync.OnceFunc(func() { close(stop) })
	sendCtx, sendCancel := context.WithTimeout(ctx, 5*time.Minute)
	var wg sync.WaitGroup
	defer func() {
		stopSending()
		sendCancel()
		wg.Wait()
	}()
	sendErrs := make([]error, clusterSenders)
	for s := range clusterSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sendErrs[s] = cl.via(s).send(sendCtx, stop, maxPerSender, batch, pause, func(n int) envelope.Message {
				return message(s, n)
			})
		}()
	}

	// The kills: node b, then a, in turn; each down 0.5–3.5 s (a lease is
	// 2 s), then started again on its own data_dir.
	atKill := map[string][][]byte{} // origin → the checkpoints the core held at each kill
	holdAtKill := func() {
		for _, n := range nodes {
			if w, err := rl.witnessOf(n.origin); err == nil {
				if cp, _ := w.Latest(); cp != nil {
					atKill[n.origin] = append(atKill[n.origin], cp)
				}
			}
		}
	}
	var takeovers int // kills whose node stayed down longer than a lease
	for k := range nKills {
		victim := nodes[(k+1)%2]
		sleep(ctx, 300*time.Millisecond+time.Duration(rng.Int64N(int64(600*time.Millisecond))))
		for _, n := range nodes {
			if n.gw.exited() {
				t.Fatalf("node %s exited on its own before kill %d: %v", n.name, k+1, n.gw.err)
			}
		}
		down := 500*time.Millisecond + time.Duration(rng.Int64N(int64(3*time.Second)))
		if down > clusterLease {
			takeovers++
		}
		mark("SIGKILL %d: node %s, down for %v", k+1, victim.name, down)
		holdAtKill()
		victim.gw.kill()
		sleep(ctx, down)
		run(victim)
		ready(victim)
	}
	mark("last restart done; the core stops making new messages")
	stopSending()
	wg.Wait()
	for s, err := range sendErrs {
		if err != nil {
			t.Errorf("sender %d: %v", s, err)
		}
	}

	acked := led.acknowledged()
	deadline := time.Now().Add(drainDeadline)
	var delivered, reported int
	for {
		delivered, reported = rl.progress(acked)
		if delivered == len(acked) && reported == len(acked) || time.Now().After(deadline) {
			break
		}
		sleep(ctx, 100*time.Millisecond)
	}
	mark("drained: %d of %d acknowledged delivered, %d reported sent", delivered, len(acked), reported)
	for _, n := range nodes {
		if err := n.gw.stop(15 * time.Second); err != nil {
			t.Errorf("node %s shutdown: %v", n.name, err)
		}
	}
	holdAtKill()

	led.mu.Lock()
	created, posts, failedPosts, rejected, httpErrs := led.created, led.posts, led.failed, led.rejected, led.http
	led.mu.Unlock()
	rl.mu.Lock()
	deliveries, total, refused, statuses := rl.deliveries, rl.total, rl.refused, rl.statuses
	rl.mu.Unlock()
	missing, unreported := map[string]string{}, map[string]string{}
	duplicates := 0
	for id, ext := range acked {
		n := deliveries[messageID(ext)]
		if n == 0 {
			missing[id] = ext
			lost = append(lost, ext)
		}
		duplicates += max(n-1, 0)
		if !slices.Contains(statuses[ext], gateway.StatusSent) {
			unreported[id] = ext
		}
	}
	t.Logf("2 nodes, %d kills (%d down longer than the %v lease), in-flight window %d per node, elapsed %v",
		nKills, takeovers, clusterLease, window, time.Since(start).Round(time.Millisecond))
	t.Logf("messages %d, acknowledged %d, envelopes posted %d (%d without an answer); delivered %d distinct (%d in all), duplicates %d (budget %d), reported sent %d",
		created, len(acked), posts, failedPosts, len(acked)-len(missing), total, duplicates, window*nKills, reported)

	t.Run("every message the core made was acknowledged", func(t *testing.T) {
		if created != len(acked) || len(rejected) > 0 || len(httpErrs) > 0 {
			t.Errorf("%d made, %d acknowledged, %d rejected (e.g. %v), other answers %v",
				created, len(acked), len(rejected), sampleValues(rejected, 5), httpErrs)
		}
	})
	t.Run("every acknowledged message arrived", func(t *testing.T) {
		if len(missing) > 0 {
			t.Errorf("LOST: %d acknowledged messages never arrived: %v", len(missing), sampleValues(missing, 10))
		}
	})
	t.Run("duplicates stay within the in-flight window", func(t *testing.T) {
		if duplicates > window*nKills {
			t.Errorf("%d duplicate deliveries after %d kills, more than %d × %d", duplicates, nKills, window, nKills)
		}
	})
	t.Run("every acknowledged message was reported sent", func(t *testing.T) {
		if len(unreported) > 0 {
			t.Errorf("%d acknowledged messages without a \"sent\" callback, e.g. %v", len(unreported), sampleValues(unreported, 10))
		}
		if len(refused) > 0 {
			t.Errorf("the core refused %d callbacks, e.g. %v", len(refused), refused[:min(5, len(refused))])
		}
	})
	t.Run("each node's audit log verifies against its witness copies", func(t *testing.T) {
		accepted, sent := map[string]bool{}, map[string]bool{}
		acceptedBy, sentBy := map[string]string{}, map[string]string{}
		for _, n := range nodes {
			cps := atKill[n.origin]
			if len(cps) == 0 {
				t.Errorf("node %s: the core holds no checkpoint of its log", n.name)
				continue
			}
			wpath := filepath.Join(dir, "witness-at-kills-"+n.name)
			if err := writeWitness(wpath, sigPub.Public, n.origin, cps); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(ctx, bin, "audit", "verify", "--log", filepath.Join(n.cfg.DataDir, "audit"),
				"--key", gwSigningPub, "--origin", n.origin, "--witness", wpath).CombinedOutput()
			if err != nil {
				t.Errorf("node %s: audit verify: %v\n%s", n.name, err, out)
			} else {
				t.Logf("node %s: %s", n.name, strings.TrimSpace(string(out)))
			}
			a, s, err := auditTrail(filepath.Join(n.cfg.DataDir, "audit"))
			if err != nil {
				t.Fatal(err)
			}
			for k := range a {
				accepted[k], acceptedBy[k] = true, n.name
			}
			for k := range s {
				sent[k], sentBy[k] = true, n.name
			}
		}
		// One queue: a message accepted by one node is often sent by the
		// other.
		crossed := 0
		for _, ext := range acked {
			if acceptedBy[ext] != "" && sentBy[ext] != "" && acceptedBy[ext] != sentBy[ext] {
				crossed++
			}
		}
		t.Logf("%d acknowledged messages were accepted by one node and sent by the other", crossed)
		if crossed == 0 {
			t.Error("no message accepted by one node was sent by the other: the nodes do not share a queue")
		}
		var noAccept, noDelivery []string
		for _, ext := range acked {
			if !accepted[ext] {
				noAccept = append(noAccept, ext)
			}
			if !sent[ext] {
				noDelivery = append(noDelivery, ext)
			}
		}
		if len(noAccept) > 0 || len(noDelivery) > 0 {
			t.Errorf("in neither node's log: %d acceptances (e.g. %v), %d deliveries (e.g. %v)",
				len(noAccept), noAccept[:min(5, len(noAccept))], len(noDelivery), noDelivery[:min(5, len(noDelivery))])
		}
	})
}
