package crashtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/gateway/callback"
	"github.com/blindpost/blindpost/internal/devenv"
)

// ledger is the core's record of what the gateway acknowledged: the only
// messages the gateway owes delivery for.
type ledger struct {
	mu       sync.Mutex
	created  int
	ext      map[string]string   // core id -> ext_message_id, once acknowledged
	answers  map[string][]string // core id -> every ext_message_id it was answered with
	rejected map[string]string   // core id -> rejection code
	dupAcks  int                 // acknowledgements the gateway marked duplicate: an earlier post was accepted, its answer lost
	posts    int                 // envelopes posted
	failed   int                 // posts without an answer: connection errors and 503s
	http     map[string]int      // other non-202 answers, by status and code
}

func newLedger() *ledger {
	return &ledger{ext: map[string]string{}, answers: map[string][]string{}, rejected: map[string]string{}, http: map[string]int{}}
}

// answered records the gateway's answers to one envelope and returns the
// messages to send again: those it could not decide on (retryable).
func (l *ledger) answered(msgs []envelope.Message, resp *gateway.Response) (again []envelope.Message) {
	byID := make(map[string]envelope.Message, len(msgs))
	for _, m := range msgs {
		byID[m.ID] = m
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.posts++
	seen := map[string]bool{}
	for _, r := range resp.Results {
		m, ok := byID[r.ID]
		if !ok || seen[r.ID] {
			l.http[fmt.Sprintf("answer for unknown or repeated id %q", r.ID)]++
			continue
		}
		seen[r.ID] = true
		switch r.Status {
		case gateway.StatusAccepted:
			if r.Duplicate {
				l.dupAcks++
			}
			if _, ok := l.ext[r.ID]; !ok {
				l.ext[r.ID] = r.ExtMessageID
			}
			l.answers[r.ID] = appendNew(l.answers[r.ID], r.ExtMessageID)
		case gateway.StatusRetryable:
			again = append(again, m)
		default:
			l.rejected[r.ID] = r.Code
		}
	}
	for id, m := range byID {
		if !seen[id] {
			again = append(again, m) // no answer: not acknowledged
		}
	}
	return again
}

func (l *ledger) postFailed(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.posts++
	l.failed++
	var he *devenv.HTTPError
	if errors.As(err, &he) && he.Status != http.StatusServiceUnavailable {
		l.http[fmt.Sprintf("%d %s", he.Status, he.Code)]++
	}
}

func appendNew(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// acknowledged returns a copy of the acknowledged messages, core id -> ext id.
func (l *ledger) acknowledged() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, len(l.ext))
	for k, v := range l.ext {
		out[k] = v
	}
	return out
}

// core plays the vendor's core: it seals batches with the core's signing
// key for the gateway's HPKE key and posts them over TLS, resending what
// got no answer as the core's outbox would.
type core struct {
	// urls are the gateway nodes, tried in turn: a post that gets no
	// answer moves this sender to the next node, as a core behind a load
	// balancer would see it. Each sender has its own copy (see via).
	urls   []string
	cur    int
	client *http.Client
	key    *envelope.SigningKey
	pub    *envelope.RecipientPublicKey
	ledger *ledger
}

func (c *core) post(ctx context.Context, msgs []envelope.Message) (*gateway.Response, error) {
	raws := make([]json.RawMessage, len(msgs))
	for i := range msgs {
		b, err := json.Marshal(msgs[i])
		if err != nil {
			return nil, err
		}
		raws[i] = b
	}
	// A fresh envelope (nonce, timestamp) for every attempt: the messages
	// inside keep their ids and content, so the gateway de-duplicates them.
	env, err := (&envelope.Sealer{Key: c.key, Recipient: c.pub, Rand: rand.Reader, Now: time.Now}).Seal(devenv.Tenant, raws)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	resp, err := devenv.PostEnvelope(ctx, c.client, c.urls[c.cur], env)
	if err != nil {
		c.cur = (c.cur + 1) % len(c.urls)
	}
	return resp, err
}

// via returns a copy of c for one sender, starting at node first.
func (c *core) via(first int) *core {
	cp := *c
	cp.cur = first % len(c.urls)
	return &cp
}

// send runs one sender: it posts batches of new messages until stop is
// closed or max messages are made, then resends what is still
// unacknowledged until nothing is left or ctx ends. newMsg makes message n.
func (c *core) send(ctx context.Context, stop <-chan struct{}, max, batch int, pause time.Duration, newMsg func(n int) envelope.Message) error {
	var pending []envelope.Message
	made := 0
	for {
		stopped := false
		select {
		case <-stop:
			stopped = true
		default:
		}
		for !stopped && made < max && len(pending) < batch {
			pending = append(pending, newMsg(made))
			made++
			c.ledger.mu.Lock()
			c.ledger.created++
			c.ledger.mu.Unlock()
		}
		if len(pending) == 0 {
			if stopped || made >= max {
				return nil
			}
			continue
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%d messages still unacknowledged: %w", len(pending), ctx.Err())
		}
		msgs := pending[:min(batch, len(pending))]
		rest := pending[len(msgs):]
		resp, err := c.post(ctx, msgs)
		if err != nil {
			c.ledger.postFailed(err)
			// The gateway is down or restarting: try again shortly, as the
			// core's outbox would, with the same messages.
			sleep(ctx, 20*time.Millisecond)
			continue
		}
		again := c.ledger.answered(msgs, resp)
		pending = append(append([]envelope.Message(nil), again...), rest...)
		sleep(ctx, pause)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// relay is what the operator's relay and the core's callback endpoint saw.
type relay struct {
	mu         sync.Mutex
	deliveries map[string]int // Message-ID -> times delivered
	total      int
	unreadable []string // captured files without a readable Message-ID

	pub ed25519.PublicKey
	// witness keeps the checkpoints of the one log the test expects; with
	// witnessDir set instead, each log origin (one per cluster node) gets
	// its own witness file there, as the core keeps them.
	witness    *audit.Witness
	witnessDir string
	witnesses  map[string]*audit.Witness
	statuses   map[string][]string // ext_message_id -> callback statuses, in arrival order
	refused    []string            // callbacks the core refused, and why
	srv        *http.Server
	ln         net.Listener
}

// onMessage is the capture server's hook: it counts each stored message by
// its Message-ID.
func (r *relay) onMessage(path string) {
	b, err := os.ReadFile(path)
	var id string
	if err == nil {
		var m *mail.Message
		if m, err = mail.ReadMessage(bytes.NewReader(b)); err == nil {
			id = m.Header.Get("Message-Id")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if id == "" {
		r.unreadable = append(r.unreadable, fmt.Sprintf("%s: %v", path, err))
		return
	}
	r.deliveries[id]++
}

// listenCallbacks starts the core's callback endpoint: it verifies each
// callback's signature and keeps the audit checkpoint it carries in a
// witness file, refusing one that rolls back or forks the log.
func (r *relay) listenCallbacks() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r.ln = l
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serveCallback), ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(l)
	return nil
}

func (r *relay) callbackURL() string { return "http://" + r.ln.Addr().String() + "/callbacks" }

func (r *relay) serveCallback(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	refuse := func(status int, why string) {
		r.mu.Lock()
		r.refused = append(r.refused, why)
		r.mu.Unlock()
		http.Error(w, why, status)
	}
	if err := callback.Verify(r.pub, req.Header, body, time.Now(), callback.DefaultTolerance); err != nil {
		refuse(http.StatusUnauthorized, "signature: "+err.Error())
		return
	}
	var pl callback.Payload
	if err := json.Unmarshal(body, &pl); err != nil {
		refuse(http.StatusBadRequest, "payload: "+err.Error())
		return
	}
	if pl.Checkpoint != "" {
		if err := r.observe([]byte(pl.Checkpoint)); err != nil {
			// A checkpoint smaller than one the gateway published before a
			// crash: the log lost acknowledged records.
			refuse(http.StatusConflict, fmt.Sprintf("checkpoint of callback seq %d: %v", pl.Seq, err))
			return
		}
	}
	r.mu.Lock()
	r.statuses[pl.ExtMessageID] = append(r.statuses[pl.ExtMessageID], pl.Status)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// observe keeps a checkpoint in the witness of its log.
func (r *relay) observe(cp []byte) error {
	if r.witness != nil {
		return r.witness.Observe(cp)
	}
	origin, _, ok := bytes.Cut(cp, []byte("\n"))
	if !ok {
		return errors.New("checkpoint without an origin line")
	}
	w, err := r.witnessOf(string(origin))
	if err != nil {
		return err
	}
	return w.Observe(cp)
}

// witnessOf returns the witness of the log named origin, opening its file
// on first use.
func (r *relay) witnessOf(origin string) (*audit.Witness, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.witnesses[origin]; w != nil {
		return w, nil
	}
	name := strings.Map(func(c rune) rune {
		if c == '/' || c == ' ' {
			return '_'
		}
		return c
	}, origin)
	w, err := audit.OpenWitness(filepath.Join(r.witnessDir, "witness-"+name), r.pub, origin)
	if err != nil {
		return nil, err
	}
	if r.witnesses == nil {
		r.witnesses = map[string]*audit.Witness{}
	}
	r.witnesses[origin] = w
	return w, nil
}

func (r *relay) close() {
	if r.srv != nil {
		r.srv.Close()
	}
}

// progress counts, of the acknowledged messages, how many have arrived at
// the relay and how many the core has a "sent" callback for.
func (r *relay) progress(acked map[string]string) (delivered, reported int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ext := range acked {
		if r.deliveries[messageID(ext)] > 0 {
			delivered++
		}
		if slices.Contains(r.statuses[ext], gateway.StatusSent) {
			reported++
		}
	}
	return delivered, reported
}

// messageID is the Message-ID the gateway gives a message, as
// gateway/send.go builds it: "<ext_message_id@domain of From>", stable
// across retries so that duplicates can be recognised.
func messageID(ext string) string {
	from := devenv.From
	dom := from[strings.LastIndexByte(from, '@')+1:]
	return "<" + ext + "@" + strings.Trim(dom, "> ") + ">"
}

// sample returns up to n of the keys of m, sorted, for error messages.
func sample[V any](m map[string]V, n int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys[:min(n, len(keys))]
}
