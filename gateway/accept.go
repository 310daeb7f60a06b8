package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway/queue"
	"github.com/blindpost/blindpost/gateway/render"
	"github.com/blindpost/blindpost/policy"
	"github.com/blindpost/blindpost/vault"
)

// MaxEnvelopeBytes bounds one POST /v1/messages body.
const MaxEnvelopeBytes = envelope.DefaultMaxEnvelopeBytes

// Answer statuses for one message request.
const (
	StatusAccepted  = "accepted"
	StatusRejected  = "rejected"
	StatusRetryable = "retryable"
)

// Result is the gateway's answer to one message request of a batch.
type Result struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	ExtMessageID string `json:"ext_message_id,omitempty"`
	Code         string `json:"code,omitempty"`
	Message      string `json:"message,omitempty"`
	Duplicate    bool   `json:"duplicate,omitempty"`
}

// Response is the body of a 202 answer to POST /v1/messages.
type Response struct {
	Results []Result `json:"results"`
}

// ErrorBody is the body of every non-2xx answer.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (g *Gateway) messageHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", g.handleMessages)
	if g.compat != nil {
		mux.Handle("/compat/", g.compat)
	}
	mux.HandleFunc("GET /healthz", g.healthz)
	mux.HandleFunc("GET /readyz", g.readyz)
	return mux
}

func (g *Gateway) metricsHandler() http.Handler {
	return promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

// envelopeError maps an envelope failure to an HTTP answer. Messages are
// fixed strings: nothing from the request is echoed back.
func envelopeError(err error) (status int, code, msg string) {
	switch {
	case errors.Is(err, envelope.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large", "envelope exceeds the size limit"
	case errors.Is(err, envelope.ErrUnknownKey):
		return http.StatusUnauthorized, "unknown_key", "unknown sender or recipient key id"
	case errors.Is(err, envelope.ErrBadSignature):
		return http.StatusUnauthorized, "bad_signature", "signature does not verify"
	case errors.Is(err, envelope.ErrStale):
		return http.StatusUnauthorized, "stale", "timestamp outside the accepted window"
	case errors.Is(err, envelope.ErrReplay):
		return http.StatusConflict, "replay", "nonce already seen"
	case errors.Is(err, envelope.ErrDecrypt):
		return http.StatusBadRequest, "decrypt_failed", "ciphertext does not open"
	case errors.Is(err, envelope.ErrTenantMismatch):
		return http.StatusForbidden, "tenant_mismatch", "a message's tenant differs from the envelope's"
	case errors.Is(err, envelope.ErrVersion):
		return http.StatusBadRequest, "version", "unsupported envelope version"
	case errors.Is(err, envelope.ErrUnavailable):
		return http.StatusServiceUnavailable, "unavailable", "replay protection unavailable, retry"
	case errors.Is(err, envelope.ErrMalformed), errors.Is(err, envelope.ErrInvalidMessage):
		return http.StatusBadRequest, "malformed", "malformed envelope"
	default:
		return http.StatusInternalServerError, "internal", "internal error"
	}
}

func (g *Gateway) handleMessages(w http.ResponseWriter, r *http.Request) {
	start := g.now()
	env, err := envelope.Decode(http.MaxBytesReader(w, r.Body, MaxEnvelopeBytes), MaxEnvelopeBytes)
	if err != nil {
		st, code, msg := envelopeError(err)
		g.metrics.envelopes.WithLabelValues(code).Inc()
		g.appendAudit(r.Context(), newRecord(audit.KindEnvelopeRejected, "", audit.EnvelopeData{Code: code}, nil))
		writeError(w, st, code, msg)
		return
	}
	resp, err := g.Accept(r.Context(), env)
	if err != nil {
		st, code, msg := envelopeError(err)
		if errors.Is(err, errQueue) || errors.Is(err, errAudit) {
			st, code, msg = http.StatusServiceUnavailable, "unavailable", "queue or audit log unavailable, retry"
		}
		g.metrics.envelopes.WithLabelValues(code).Inc()
		// The tenant of a refused envelope is unauthenticated input: log
		// it only when it names a configured tenant.
		tenant := "unknown"
		if _, ok := g.tenants[env.Tenant]; ok {
			tenant = env.Tenant
		}
		g.log.Warn("envelope refused", "tenant", tenant, "code", code, "err", err)
		if !errors.Is(err, errAudit) {
			if tenant == "unknown" {
				tenant = ""
			}
			g.appendAudit(r.Context(), newRecord(audit.KindEnvelopeRejected, tenant,
				audit.EnvelopeData{Code: code, KidSender: env.KidSender}, nil))
		}
		writeError(w, st, code, msg)
		return
	}
	g.metrics.envelopes.WithLabelValues("ok").Inc()
	g.metrics.acceptDur.WithLabelValues(batchBucket(len(resp.Results))).Observe(g.now().Sub(start).Seconds())
	writeJSON(w, http.StatusAccepted, resp)
}

var (
	errQueue = errors.New("queue")
	errAudit = errors.New("audit")
)

// Accept runs the accept half of the pipeline for one envelope: verify,
// open, then per message validate, pre-check against the policy, and queue
// durably together with the remembered answer. It returns only once every
// accepted message is on disk.
func (g *Gateway) Accept(ctx context.Context, env *envelope.Envelope) (*Response, error) {
	batch, err := g.opener.Open(ctx, env)
	if err != nil {
		return nil, err
	}
	now := g.now()
	// The volume guard counts the whole envelope at once: one round trip
	// to the shared counters of a cluster, not one per message. Without
	// the count the policy cannot judge volume, so nothing is accepted.
	vol, err := g.volume.AddVolume(ctx, batch.Tenant, now, len(batch.Messages))
	if err != nil {
		return nil, errors.Join(errQueue, fmt.Errorf("volume guard: %w", err))
	}
	vol -= len(batch.Messages)
	results := make([]Result, len(batch.Messages))
	decisions := make([]*audit.Record, len(batch.Messages))
	var items []queue.Item
	var itemIdx []int
	for i, raw := range batch.Messages {
		res, item, dec := g.check(ctx, batch, i, raw, now, vol+i+1)
		results[i], decisions[i] = res, dec
		if item != nil {
			items = append(items, *item)
			itemIdx = append(itemIdx, i)
		}
	}
	// The log gets the envelope, every decision and every answer, with the
	// proof that the core signed the message, before anything is queued:
	// no message is ever acknowledged, and so none is ever sent, without
	// its acceptance on record. (Sending also fails closed on the log.)
	root := audit.Hash32(batch.Root)
	recs := []audit.Record{newRecord(audit.KindEnvelopeAccepted, batch.Tenant,
		audit.EnvelopeData{KidSender: batch.KidSender, Messages: len(results), Root: &root}, nil)}
	for i, r := range results {
		if decisions[i] != nil {
			decisions[i].ExtID = r.ExtMessageID
			recs = append(recs, *decisions[i])
		}
		recs = append(recs, answerRecord(batch, i, r, decisions[i]))
	}
	if err := g.appendAudit(ctx, recs...); err != nil {
		return nil, errors.Join(errAudit, err)
	}
	if len(items) > 0 {
		outs, err := g.queue.Accept(ctx, items)
		if err != nil {
			// Nothing was acknowledged; the log says why.
			var undo []audit.Record
			for _, i := range itemIdx {
				r := Result{ID: results[i].ID, Status: StatusRetryable, Code: "unavailable"}
				undo = append(undo, answerRecord(batch, i, r, decisions[i]))
			}
			g.appendAudit(ctx, undo...)
			return nil, errors.Join(errQueue, err)
		}
		// The queue knows what the log could not: a repeated id gets its
		// first answer, another content a conflict, a full cap a refusal.
		// Each such final answer goes on record too.
		var changed []audit.Record
		for k, o := range outs {
			i := itemIdx[k]
			res := Result{ID: results[i].ID, Status: o.Answer.Status, ExtMessageID: o.Answer.ExtMessageID,
				Code: o.Answer.Code, Message: o.Answer.Message, Duplicate: o.Duplicate}
			if o.Conflict {
				res = Result{ID: res.ID, Status: StatusRejected, Code: "conflict",
					Message: "this id was used before with different content; not sent"}
			}
			if res != results[i] {
				changed = append(changed, answerRecord(batch, i, res, decisions[i]))
			}
			results[i] = res
		}
		if err := g.appendAudit(ctx, changed...); err != nil {
			g.log.Error("final answers not on record", "tenant", batch.Tenant, "count", len(changed), "err", err)
		}
		g.kick()
	}
	for _, r := range results {
		g.metrics.messages.WithLabelValues(batch.Tenant, r.Status).Inc()
	}
	g.log.Info("envelope accepted", "tenant", batch.Tenant, "kid", batch.KidSender, "messages", len(results))
	return &Response{Results: results}, nil
}

// answerRecord is the log's copy of one answer to the core, with the proof
// that the core signed the message it answers.
func answerRecord(b *envelope.Batch, i int, r Result, dec *audit.Record) audit.Record {
	kind, code := audit.KindMessageAccepted, r.Code
	switch {
	case r.Status != StatusAccepted:
		kind = audit.KindMessageRejected
	case r.Duplicate:
		code = "duplicate"
	}
	md := audit.MessageData{Code: code, Proof: audit.NewMessageProof(b, i)}
	if dec != nil {
		var dl struct {
			DecisionID string `json:"decision_id"`
		}
		json.Unmarshal(dec.Data, &dl)
		md.DecisionID = dl.DecisionID
	}
	return newRecord(kind, b.Tenant, md, func(rec *audit.Record) { rec.MsgID, rec.ExtID = r.ID, r.ExtMessageID })
}

// check validates one message of a batch and decides its answer. A nil item
// means the answer is not remembered: the request had no usable id, or the
// failure was retryable.
//
// rate is the tenant's volume over the last minute, this message included.
func (g *Gateway) check(ctx context.Context, b *envelope.Batch, i int, raw json.RawMessage, now time.Time, rate int) (Result, *queue.Item, *audit.Record) {
	m, err := envelope.ParseMessage(raw)
	if err != nil {
		id := looseID(raw)
		res := Result{ID: id, Status: StatusRejected, Code: "invalid_message", Message: safeMessage(err)}
		if id == "" {
			return res, nil, nil
		}
		return res, reject(b, i, id, res), nil
	}
	var dec *audit.Record
	rej := func(code, msg string) (Result, *queue.Item, *audit.Record) {
		res := Result{ID: m.ID, Status: StatusRejected, Code: code, Message: msg}
		return res, reject(b, i, m.ID, res), dec
	}
	if g.channels.get(m.Channel) == nil {
		return rej("channel_unavailable", "no adapter is configured for this channel")
	}
	if m.ExpiresAt != nil && !m.ExpiresAt.After(now) {
		return rej("expired", "expires_at is in the past")
	}
	fields, err := render.Placeholders(render.Template{Subject: m.Subject, HTML: m.HTML, Text: m.Text})
	if err != nil {
		return rej("invalid_template", safeMessage(err))
	}
	in := policy.Input{
		API: "native", Stage: "accept", Tenant: m.Tenant, Brand: m.Brand,
		Channel: m.Channel, Category: m.Category, Purpose: m.Purpose, Placeholders: fields,
		Now: now, FromDomain: addressDomain(m.From),
		TenantRatePerMinute: rate,
	}
	var notBefore time.Time
	if m.NotBefore != nil {
		notBefore = *m.NotBefore
	}
	adm, err := g.admit(ctx, m, in, notBefore)
	dec = &adm.record
	switch {
	case errors.Is(err, errObligation):
		return Result{ID: m.ID, Status: StatusRetryable, Code: "policy_unavailable", Message: "unreadable policy obligation, retry"}, nil, dec
	case errors.Is(err, errPolicy):
		g.log.Error("policy unavailable at accept", "tenant", m.Tenant, "id", m.ID, "err", err)
		return Result{ID: m.ID, Status: StatusRetryable, Code: "policy_unavailable", Message: "policy engine unavailable, retry"}, nil, dec
	case err != nil:
		g.log.Error("frequency caps", "tenant", m.Tenant, "id", m.ID, "err", err)
		return Result{ID: m.ID, Status: StatusRetryable, Code: "unavailable", Message: "frequency caps unavailable, retry"}, nil, dec
	case adm.denied != nil:
		g.log.Info("denied at accept", "tenant", m.Tenant, "id", m.ID, "reasons", adm.denied)
		return rej("denied", "denied by policy: "+strings.Join(adm.denied, ","))
	case adm.capped:
		return rej(queue.CodeFrequencyCap, "frequency cap reached; not sent")
	}
	reserve := adm.reserve
	notBefore = adm.notBefore

	ext := newExtID()
	res := Result{ID: m.ID, Status: StatusAccepted, ExtMessageID: ext}
	e := &queue.Entry{
		ExtID: ext, Tenant: m.Tenant, MsgID: m.ID, Brand: m.Brand, User: m.To.Subject,
		Request: raw, Created: now, NotBefore: notBefore,
	}
	if m.ExpiresAt != nil {
		e.ExpiresAt = *m.ExpiresAt
	}
	return res, &queue.Item{Tenant: m.Tenant, ID: m.ID, Hash: b.Digests[i],
		Answer: queue.Answer{Status: StatusAccepted, ExtMessageID: ext}, Entry: e, Reserve: reserve}, dec
}

// admission is what the policy decided when a message request arrived.
type admission struct {
	record     audit.Record // the decision on record: the second one, naming the cap, when a cap is full
	decisionID string       // its id
	notBefore  time.Time    // the earliest send: the request's own, a hold, a deferral
	reserve    []queue.Reservation
	denied     []string // non-nil: refused by the policy, for these reasons
	capped     bool     // refused: a frequency cap is full
}

// Why admit could not decide; each is worth a retry by the caller.
var (
	errPolicy     = errors.New("policy unavailable")
	errObligation = errors.New("unreadable policy obligation")
	errCaps       = errors.New("frequency caps unavailable")
)

// admit asks the policy about a message request at acceptance, for the
// native and the compat API alike, and works out its obligations: the
// volume guard's hold, a quiet-hours deferral, the frequency-cap slots to
// reserve with the enqueue.
func (g *Gateway) admit(ctx context.Context, m *envelope.Message, in policy.Input, notBefore time.Time) (admission, error) {
	d, err := g.decide(ctx, in)
	a := admission{record: decisionRecord(in, d, m.ID, ""), decisionID: d.ID, notBefore: notBefore}
	if err != nil {
		return a, fmt.Errorf("%w: %w", errPolicy, err)
	}
	if !d.Allow {
		if !d.Hold() {
			a.denied = d.Reasons
			return a, nil
		}
		// The volume guard: the core asks for more than the operator
		// allows. The message is kept, not lost, and held back; the
		// operator is alerted.
		g.metrics.holds.WithLabelValues(m.Tenant).Inc()
		g.log.Error("volume guard: holding the tenant's traffic", "tenant", m.Tenant, "id", m.ID, "api", in.API,
			"rate_per_minute", in.TenantRatePerMinute, "decision", d.ID)
		a.notBefore = later(a.notBefore, in.Now.Add(volumeHold))
	}
	if at, ok, err := d.DeferUntil(); err != nil {
		return a, fmt.Errorf("%w: %w", errObligation, err)
	} else if ok {
		a.notBefore = later(a.notBefore, at)
	}
	reserve, counters, err := g.reservations(ctx, m, d)
	if err != nil {
		return a, fmt.Errorf("%w: %w", errCaps, err)
	}
	if counters != nil {
		// A cap is already full: ask the policy again with the counters,
		// so the decision on record is the one that names the cap.
		in.Counters = counters
		d2, err := g.decide(ctx, in)
		a.record, a.decisionID = decisionRecord(in, d2, m.ID, ""), d2.ID
		if err == nil && !d2.Allow {
			a.denied = d2.Reasons
		} else {
			a.capped = true
		}
		return a, nil
	}
	a.reserve = reserve
	return a, nil
}

// volumeHold is how long the volume guard holds a message back.
const volumeHold = 15 * time.Minute

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// decide asks the policy and counts the decision.
func (g *Gateway) decide(ctx context.Context, in policy.Input) (policy.Decision, error) {
	d, err := g.policy.Decide(ctx, in)
	g.metrics.decisions.WithLabelValues(in.Stage, boolLabel(err == nil && d.Allow)).Inc()
	return d, err
}

// recipientKey names a message's recipient for frequency caps without PII:
// the subject's pseudonymous id, or, for a token, the subject the vault's
// index points at (the index holds no PII and opens nothing).
func (g *Gateway) recipientKey(ctx context.Context, m *envelope.Message) (string, error) {
	user := m.To.Subject
	if m.To.Token != "" {
		ref, err := g.store.Lookup(ctx, m.Tenant, m.Brand, m.To.Token)
		switch {
		case err == nil:
			user = ref.User
		case errors.Is(err, vault.ErrNotFound):
			return m.Tenant + "|" + m.Brand + "|t:" + m.To.Token, nil
		default:
			return "", err
		}
	}
	return m.Tenant + "|" + m.Brand + "|s:" + user, nil
}

// reservations turns the policy's "reserve" obligation into the queue's
// counters for this recipient; the queue takes them atomically with the
// enqueue. If a cap is already full it returns the counters instead, for
// the policy to decide on. An error (unreadable obligation or counters)
// means the message must not be acknowledged.
func (g *Gateway) reservations(ctx context.Context, m *envelope.Message, d policy.Decision) (rs []queue.Reservation, full map[string]int, err error) {
	obl, err := d.Reservations()
	if err != nil || len(obl) == 0 {
		return nil, nil, err
	}
	key, err := g.recipientKey(ctx, m)
	if err != nil {
		return nil, nil, err
	}
	counts := make(map[string]int, len(obl))
	atCap := false
	for _, r := range obl {
		q := queue.Reservation{Key: key + "|" + r.Key, Window: r.Window, Limit: r.Limit}
		n, err := g.queue.Count(ctx, q.Key, g.now().Add(-r.Window))
		if err != nil {
			return nil, nil, err
		}
		counts[r.Key] = n
		atCap = atCap || n >= r.Limit
		rs = append(rs, q)
	}
	if atCap {
		return nil, counts, nil
	}
	return rs, nil, nil
}

// addressDomain is the lower-cased domain of an address, or "".
func addressDomain(addr string) string {
	a, err := mail.ParseAddress(addr)
	if err != nil {
		return ""
	}
	return strings.ToLower(a.Address[strings.LastIndexByte(a.Address, '@')+1:])
}

func reject(b *envelope.Batch, i int, id string, res Result) *queue.Item {
	return &queue.Item{Tenant: b.Tenant, ID: id, Hash: b.Digests[i],
		Answer: queue.Answer{Status: StatusRejected, Code: res.Code, Message: res.Message}}
}

// looseID recovers the id of a message that failed strict parsing, so its
// rejection can still be matched by the core. It is bounded and printable.
func looseID(raw json.RawMessage) string {
	var v struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(raw, &v) != nil || len(v.ID) > 128 {
		return ""
	}
	for _, r := range v.ID {
		if r < 0x21 || r > 0x7e {
			return ""
		}
	}
	return v.ID
}

// safeMessage returns an error's text for the core. The packages that
// produce these errors name fields, never values, so the text carries no
// PII; it is still bounded.
func safeMessage(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

var extEnc = base32.StdEncoding.WithPadding(base32.NoPadding)

func newExtID() string {
	var b [15]byte
	rand.Read(b[:])
	return "bpm_" + strings.ToLower(extEnc.EncodeToString(b[:]))
}

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func (g *Gateway) onErase(ctx context.Context, ref vault.Ref) error {
	n, err := g.queue.CancelSubject(ctx, ref.Tenant, ref.Brand, ref.User, func(e queue.Entry) queue.Event {
		return queue.Event{Tenant: e.Tenant, MsgID: e.MsgID, ExtMessageID: e.ExtID,
			Status: "unknown_recipient", Reason: "erased", Time: g.now()}
	})
	if err != nil {
		return err
	}
	if n > 0 {
		g.log.Info("erasure cancelled queued messages", "tenant", ref.Tenant, "count", n)
	}
	return nil
}
