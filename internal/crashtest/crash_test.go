package crashtest

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
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
	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/gateway/admin"
	"github.com/blindpost/blindpost/internal/devenv"
)

var (
	flagKills = flag.Int("crash.kills", 0, "how many times TestKill9 SIGKILLs the gateway; default $"+killsEnv+", else 10 (the long run uses 50)")
	flagSeed  = flag.Uint64("crash.seed", 0, "seed of the kill schedule; 0 picks one, which the test logs")
	flagKeep  = flag.Bool("crash.keep", false, "keep the temporary directory: config, data_dir, the gateway's log, captured mail")
)

// killsEnv sets the number of kills where a flag cannot reach, as in
// `BLINDPOST_CRASH_KILLS=50 go test ./...` (other packages refuse the flag).
const killsEnv = "BLINDPOST_CRASH_KILLS"

// wantKills is -crash.kills, else $BLINDPOST_CRASH_KILLS, else 10.
func wantKills(t *testing.T) int {
	if *flagKills > 0 {
		return *flagKills
	}
	if v := os.Getenv(killsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("$%s=%q: want a positive number", killsEnv, v)
		}
		return n
	}
	return 10
}

// sendConcurrency is how many messages the gateway may have handed to its
// email adapter at once (smtp.throttle.concurrency), fewer than its send
// workers, so pacing is exercised across kills too.
const sendConcurrency = 2

// inFlight is the most messages the gateway configured by cfg can have
// delivered without having committed their outcome: the duplicate budget
// of one kill (DESIGN.md §7). Each send worker takes one message at a
// time from delivery to its committed outcome, while the adapter's slot is
// free again as soon as the relay has answered, so the bound is the
// number of workers, not the adapter's concurrency: with two slots and four
// workers, two messages may be on the wire while two others, delivered,
// wait for their commit.
func inFlight(cfg *gateway.Config) int {
	return cfg.Send.Workers
}

// The traffic: sized so that the default run (10 kills) takes well under a
// minute on two cores, with hundreds of messages in flight across kills.
const (
	subjects      = 300                    // players in the vault, user-0001 … user-0300
	senders       = 3                      // concurrent core connections
	batch         = 4                      // messages per envelope
	pause         = 40 * time.Millisecond  // between one sender's envelopes
	maxPerSender  = 100_000                // the kill schedule, not this, ends the traffic
	minKillDelay  = 100 * time.Millisecond // a kill comes this long to …
	maxKillDelay  = 600 * time.Millisecond // … this long after the gateway is ready
	drainDeadline = 2 * time.Minute        // for everything acknowledged to arrive after the last restart
)

// policyData is the operator's settings for the test's tenant: the dev
// brand may send from example.com, and the volume guard, which would hold
// back a tenant's traffic above 6000 messages a minute, is out of the way.
const policyData = `{
  "blindpost": {
    "tenants": {
      "` + devenv.Tenant + `": {
        "settings": {"volume_guard": {"max_per_minute": 1000000}},
        "brands": {
          "` + devenv.Brand + `": {"settings": {"sender_domains": ["example.com"]}}
        }
      }
    }
  }
}
`

// Invariant 6 (DESIGN.md §9): nothing acknowledged is lost across kill -9,
// and duplicates stay within the in-flight window: at most send.workers
// per kill. Every acknowledged message is reported to the core,
// and the audit log still verifies afterwards, consistent with the
// checkpoints the core held when the gateway was killed, and records each
// message's acceptance and delivery.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	start := time.Now()
	var phases []string // where the time went, for the log
	lap := start
	phase := func(name string) {
		phases = append(phases, fmt.Sprintf("%s %v", name, time.Since(lap).Round(time.Millisecond)))
		lap = time.Now()
	}
	bin := binary(t)
	phase("build")
	dir := tempDir(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	seed := *flagSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	t.Logf("seed %d (rerun with -crash.seed=%d)", seed, seed)
	nKills := wantKills(t)

	// Keys (gateway, core, vault), the TLS certificate and an admin token,
	// generated now in dir, as `blindpost dev` does; nothing is committed.
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

	// The operator's relay and the core's callback endpoint, in process;
	// they outlive every gateway restart.
	rl := &relay{deliveries: map[string]int{}, statuses: map[string][]string{}, pub: sigPub.Public}
	witnessPath := filepath.Join(dir, "witness")
	rl.witness, err = audit.OpenWitness(witnessPath, sigPub.Public, gateway.AuditOriginPrefix+string(sigPub.ID))
	if err != nil {
		t.Fatal(err)
	}
	witnessOpen := true
	defer func() {
		if witnessOpen {
			rl.witness.Close()
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

	// The gateway's config, written as an operator would and read back
	// through the same loader the binary uses.
	msgAddr, adminAddr := freePort(t, rng), freePort(t, rng)
	cfg := devenv.Config(dir, capt.Addr(), rl.callbackURL())
	cfg.Listen, cfg.AdminListen = msgAddr, adminAddr
	cfg.Send.Workers = 4
	cfg.SMTP.Throttle.Concurrency = sendConcurrency
	cfg.Policy.DataFile = policyFile
	cfg.Audit.CheckpointEvery = gateway.Duration(200 * time.Millisecond)
	cfgPath := filepath.Join(dir, "gateway.yaml")
	if b, err := cfg.Marshal(); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := gateway.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	window := inFlight(loaded)

	logPath := filepath.Join(dir, "gateway.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	mark := func(format string, args ...any) {
		fmt.Fprintf(logf, "=== crashtest %s: "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	var lost []string // ext ids to pick out of the log on failure
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logExcerpt(logPath, lost, 400, 60))
		}
	})

	adminURL := "http://" + adminAddr
	spawned := time.Now()
	gw, err := startGateway(ctx, t, bin, cfgPath, logf)
	if err != nil {
		t.Fatal(err)
	}
	readyCtx, readyCancel := context.WithTimeout(ctx, 30*time.Second)
	err = waitReady(readyCtx, gw, adminURL)
	readyCancel()
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	startup := time.Since(spawned) // how long the latest start took to be ready
	fresh := false                 // whether gw has been started and not yet waited for

	// The PAM registers the players in the gateway's vault.
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	ad := &admin.Client{BaseURL: adminURL, Token: strings.TrimSpace(string(tok)), HTTP: &http.Client{Timeout: 30 * time.Second}}
	var nd strings.Builder
	for i := 1; i <= subjects; i++ {
		fmt.Fprintf(&nd, `{"brand":%q,"user":"user-%04d","record":{"email":"user-%04d@example.com","first_name":"Player%04d","country":"MT"}}`+"\n",
			devenv.Brand, i, i, i)
	}
	imp, err := ad.Import(ctx, strings.NewReader(nd.String()))
	if err != nil {
		t.Fatal(err)
	}
	if imp.Imported != subjects || imp.FailedCount != 0 {
		t.Fatalf("import: %d imported, %d failed: %+v", imp.Imported, imp.FailedCount, imp.Failed)
	}

	phase("start+import")

	cl, err := newCore(dir, "https://"+msgAddr)
	if err != nil {
		t.Fatal(err)
	}
	led := cl.ledger

	// The core: several senders posting sealed batches concurrently.
	stop := make(chan struct{})
	stopSending := sync.OnceFunc(func() { close(stop) })
	sendCtx, sendCancel := context.WithTimeout(ctx, 5*time.Minute)
	var wg sync.WaitGroup
	defer func() { // on a failure before the end, too
		stopSending()
		sendCancel()
		wg.Wait()
	}()
	sendErrs := make([]error, senders)
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sendErrs[s] = cl.via(0).send(sendCtx, stop, maxPerSender, batch, pause, func(n int) envelope.Message {
				return message(s, n)
			})
		}()
	}

	// The killer: SIGKILL at a random moment, wait for the process to be
	// gone, start it again on the same data_dir. Most kills come 100–600 ms
	// after the gateway is ready, while it accepts and sends; one in five
	// comes during start-up, before it is ready, while it recovers from the
	// kill before.
	kills, early := 0, 0
	var atKill [][]byte // the latest checkpoint the core held at each kill
	for kills < nKills {
		var d time.Duration
		if fresh && rng.IntN(5) == 0 {
			d = time.Duration(rng.Int64N(int64(startup)))
			sleep(ctx, time.Until(spawned.Add(d)))
			mark("SIGKILL %d, %v after start, during start-up", kills+1, d)
			early++
		} else {
			readyCtx, readyCancel := context.WithTimeout(ctx, 30*time.Second)
			err := waitReady(readyCtx, gw, adminURL)
			readyCancel()
			if err != nil {
				t.Fatalf("start after kill %d: %v", kills, err)
			}
			if fresh {
				startup, fresh = time.Since(spawned), false
			}
			d = minKillDelay + time.Duration(rng.Int64N(int64(maxKillDelay-minKillDelay)))
			sleep(ctx, d)
			if gw.exited() {
				t.Fatalf("the gateway exited on its own before kill %d: %v", kills+1, gw.err)
			}
			mark("SIGKILL %d, %v after ready", kills+1, d)
		}
		if cp, _ := rl.witness.Latest(); cp != nil {
			atKill = append(atKill, cp)
		}
		gw.kill()
		kills++
		spawned, fresh = time.Now(), true
		if gw, err = startGateway(ctx, t, bin, cfgPath, logf); err != nil {
			t.Fatal(err)
		}
	}
	readyCtx, readyCancel = context.WithTimeout(ctx, 30*time.Second)
	err = waitReady(readyCtx, gw, adminURL)
	readyCancel()
	if err != nil {
		t.Fatalf("start after the last kill: %v", err)
	}
	mark("last restart done; the core stops making new messages")
	stopSending()
	wg.Wait()
	for s, err := range sendErrs {
		if err != nil {
			t.Errorf("sender %d: %v", s, err)
		}
	}
	phase("traffic+kills")

	// Drain: every acknowledged message must arrive and be reported sent.
	acked := led.acknowledged()
	deadline := time.Now().Add(drainDeadline)
	var delivered, reported int
	for {
		delivered, reported = rl.progress(acked)
		if delivered == len(acked) && reported == len(acked) {
			break
		}
		if time.Now().After(deadline) || gw.exited() {
			break
		}
		sleep(ctx, 100*time.Millisecond)
	}
	phase("drain")
	mark("drained: %d of %d acknowledged delivered, %d reported sent", delivered, len(acked), reported)

	// A clean shutdown, then the auditor's check of the log the crashes
	// left, against every checkpoint the core kept as a witness.
	if err := gw.stop(15 * time.Second); err != nil {
		t.Errorf("gateway shutdown after the crashes: %v", err)
	}
	if latest, _ := rl.witness.Latest(); latest != nil {
		atKill = append(atKill, latest)
	}
	rl.witness.Close()
	witnessOpen = false
	origin := gateway.AuditOriginPrefix + string(sigPub.ID)
	atKillPath := filepath.Join(dir, "witness-at-kills")
	if err := writeWitness(atKillPath, sigPub.Public, origin, atKill); err != nil {
		t.Fatal(err)
	}
	verify := exec.CommandContext(ctx, bin, "audit", "verify",
		"--log", filepath.Join(loaded.DataDir, "audit"), "--key", gwSigningPub, "--witness", atKillPath)
	vout, verr := verify.CombinedOutput()
	phase("stop+verify")

	// What arrived, against what was acknowledged.
	led.mu.Lock()
	created, posts, failedPosts, dupAcks := led.created, led.posts, led.failed, led.dupAcks
	rejected, answers, httpErrs := led.rejected, led.answers, led.http
	led.mu.Unlock()
	rl.mu.Lock()
	deliveries, total, unreadable, refused, statuses := rl.deliveries, rl.total, rl.unreadable, rl.refused, rl.statuses
	rl.mu.Unlock()

	missing := map[string]string{} // core id -> ext id, acknowledged but never delivered
	unreported := map[string]string{}
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
	known := map[string]bool{}
	for _, ext := range acked {
		known[messageID(ext)] = true
	}
	var strangers []string // delivered under a Message-ID no acknowledgement named
	for mid, n := range deliveries {
		if !known[mid] {
			strangers = append(strangers, fmt.Sprintf("%s ×%d", mid, n))
		}
	}

	t.Logf("kills %d (%d during start-up), in-flight window %d (send.workers; smtp.throttle.concurrency 2), elapsed %v (%s)",
		kills, early, window, time.Since(start).Round(time.Millisecond), strings.Join(phases, ", "))
	t.Logf("messages %d, acknowledged %d (%d of them on a resend, as duplicates of an accept whose answer a kill lost), envelopes posted %d (%d without an answer)",
		created, len(acked), dupAcks, posts, failedPosts)
	t.Logf("delivered %d distinct (%d deliveries in all), duplicates %d (budget %d = %d × %d), reported sent %d",
		len(acked)-len(missing), total, duplicates, window*kills, window, kills, reported)
	if verr == nil {
		t.Logf("%s", strings.TrimSpace(string(vout)))
	}

	t.Run("every message the core made was acknowledged", func(t *testing.T) {
		if created != len(acked) {
			t.Errorf("%d messages made, %d acknowledged: the core could not get the rest accepted", created, len(acked))
		}
		if len(rejected) > 0 {
			t.Errorf("%d messages rejected, e.g. %v", len(rejected), sampleValues(rejected, 5))
		}
		if len(httpErrs) > 0 {
			t.Errorf("unexpected answers to POST /v1/messages: %v", httpErrs)
		}
	})
	t.Run("a resent id gets its first answer", func(t *testing.T) {
		for id, exts := range answers {
			if len(exts) > 1 {
				t.Errorf("message %s was acknowledged under several ext_message_ids %v", id, exts)
			}
		}
		if len(strangers) > 0 {
			t.Errorf("%d Message-IDs delivered that no acknowledgement named, e.g. %v", len(strangers), strangers[:min(5, len(strangers))])
		}
	})
	t.Run("every acknowledged message arrived", func(t *testing.T) {
		if len(missing) > 0 {
			t.Errorf("LOST: %d acknowledged messages never arrived at the relay (core id: ext_message_id): %v",
				len(missing), sampleValues(missing, 10))
		}
		if len(unreadable) > 0 {
			t.Errorf("%d captured messages without a readable Message-ID, e.g. %v", len(unreadable), unreadable[:min(3, len(unreadable))])
		}
	})
	t.Run("duplicates stay within the in-flight window", func(t *testing.T) {
		if duplicates > window*kills {
			t.Errorf("%d duplicate deliveries after %d kills, more than the in-flight window allows (%d × %d)", duplicates, kills, window, kills)
		}
	})
	t.Run("every acknowledged message was reported sent to the core", func(t *testing.T) {
		if len(unreported) > 0 {
			t.Errorf("%d acknowledged messages without a \"sent\" callback, e.g. %v", len(unreported), sampleValues(unreported, 10))
		}
		if len(refused) > 0 {
			t.Errorf("the core refused %d callbacks, e.g. %v", len(refused), refused[:min(5, len(refused))])
		}
	})
	t.Run("the audit log verifies against the core's witness copies", func(t *testing.T) {
		if verr != nil {
			t.Errorf("blindpost audit verify after %d kills: %v\n%s", kills, verr, vout)
		}
	})
	t.Run("the audit log records every acknowledged message's acceptance and delivery", func(t *testing.T) {
		accepted, sent, err := auditTrail(filepath.Join(loaded.DataDir, "audit"))
		if err != nil {
			t.Fatal(err)
		}
		noAccept, noDelivery := map[string]string{}, map[string]string{}
		for id, ext := range acked {
			if !accepted[ext] {
				noAccept[id] = ext
			}
			if !sent[ext] {
				noDelivery[id] = ext
				lost = append(lost, ext)
			}
		}
		if len(noAccept) > 0 {
			t.Errorf("%d acknowledged messages have no %s record, e.g. %v", len(noAccept), audit.KindMessageAccepted, sampleValues(noAccept, 10))
		}
		if len(noDelivery) > 0 {
			t.Errorf("%d messages that were delivered and reported sent have no %s record with status sent, e.g. %v",
				len(noDelivery), audit.KindDelivery, sampleValues(noDelivery, 10))
		}
	})
}

// writeWitness writes a witness file holding cps, oldest first, as the
// core's own would. Repeated checkpoints are kept once.
func writeWitness(path string, pub ed25519.PublicKey, origin string, cps [][]byte) error {
	w, err := audit.OpenWitness(path, pub, origin)
	if err != nil {
		return err
	}
	for i, cp := range cps {
		if err := w.Observe(cp); err != nil {
			w.Close()
			return fmt.Errorf("witnessed checkpoint %d of %d: %w", i+1, len(cps), err)
		}
	}
	return w.Close()
}

// auditTrail reads the audit log in dir and returns the ext_message_ids it
// records as accepted, and as sent.
func auditTrail(dir string) (accepted, sent map[string]bool, err error) {
	r, err := audit.OpenReader(dir)
	if err != nil {
		return nil, nil, err
	}
	accepted, sent = map[string]bool{}, map[string]bool{}
	for rec, err := range r.Records() {
		if err != nil {
			return nil, nil, err
		}
		switch rec.Kind {
		case audit.KindMessageAccepted:
			accepted[rec.ExtID] = true
		case audit.KindDelivery:
			var d audit.DeliveryData
			if err := json.Unmarshal(rec.Data, &d); err != nil {
				return nil, nil, fmt.Errorf("delivery record %d: %w", rec.Index, err)
			}
			if d.Status == gateway.StatusSent {
				sent[rec.ExtID] = true
			}
		}
	}
	return accepted, sent, nil
}

// message is sender s's message n: a transactional receipt for one of the
// players, with a placeholder the gateway fills in from the vault.
func message(s, n int) envelope.Message {
	user := (s*7919+n)%subjects + 1
	return envelope.Message{
		ID: fmt.Sprintf("crash-s%d-%06d", s, n), Tenant: devenv.Tenant, Brand: devenv.Brand,
		Channel: envelope.ChannelEmail, Category: envelope.CategoryTransactional, Purpose: "payment_receipt",
		To:      envelope.Recipient{Subject: fmt.Sprintf("user-%04d", user)},
		From:    devenv.From,
		Subject: "Your receipt, {{pii.first_name}}",
		HTML:    fmt.Sprintf("<p>Hello {{pii.first_name}}, payment %d-%d is confirmed.</p>", s, n),
		Text:    fmt.Sprintf("Hello {{pii.first_name}}, payment %d-%d is confirmed.", s, n),
	}
}

// newCore loads the core's signing key and the gateway's HPKE public key
// from dir and trusts the gateway's self-signed certificate.
func newCore(dir string, urls ...string) (*core, error) {
	key, err := envelope.LoadSigningKey(filepath.Join(dir, "keys", "core", "signing.key"))
	if err != nil {
		return nil, err
	}
	pub, err := envelope.LoadRecipientPublicKey(filepath.Join(dir, "keys", "gateway", "hpke.pub"))
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls.crt: no certificate")
	}
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	return &core{urls: urls, client: client, key: key, pub: pub, ledger: newLedger()}, nil
}

// tempDir is t.TempDir, unless -crash.keep asks to keep it.
func tempDir(t *testing.T) string {
	if !*flagKeep {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("", "blindpost-crashtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("keeping %s", dir)
	return dir
}

// sampleValues returns up to n "key: value" pairs of m, by sorted key.
func sampleValues(m map[string]string, n int) []string {
	var out []string
	for _, k := range sample(m, n) {
		out = append(out, k+": "+m[k])
	}
	return out
}
