package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway/callback"
	"github.com/blindpost/blindpost/gateway/queue"
	"github.com/blindpost/blindpost/gateway/render"
	"github.com/blindpost/blindpost/policy"
	"github.com/blindpost/blindpost/vault"
)

// Delivery statuses reported to the core (DESIGN.md §4).
const (
	StatusSent             = "sent"
	StatusDeferred         = "deferred"
	StatusBounced          = "bounced"
	StatusFailed           = "failed"
	StatusExpired          = "expired"
	StatusDenied           = "denied"
	StatusUnknownRecipient = "unknown_recipient"
)

func (g *Gateway) sendLoop(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := g.SendDue(ctx, 1)
		if err != nil && ctx.Err() == nil {
			g.log.Error("send loop", "err", err)
		}
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
		case <-g.wake:
		case <-time.After(g.poll):
		}
	}
}

// SendDue claims up to limit due messages and takes each through the send
// half of the pipeline. It returns how many it claimed.
func (g *Gateway) SendDue(ctx context.Context, limit int) (int, error) {
	es, err := g.queue.Claim(ctx, limit, time.Duration(g.cfg.Send.Lease))
	if err != nil {
		return 0, fmt.Errorf("claim: %w", err)
	}
	for _, e := range es {
		g.process(ctx, e)
	}
	return len(es), nil
}

// outcome is what the send half decided for one claimed message.
type outcome struct {
	status, reason, decision string
	retryAt                  time.Time // non-zero: try again then
}

func (g *Gateway) process(ctx context.Context, e queue.Entry) {
	start := g.now()
	o, channel, pseudonym := g.deliver(ctx, e)
	if o.status == "" {
		return // nothing was decided; the lease hands the entry to a later try
	}
	g.metrics.sendDur.Observe(g.now().Sub(start).Seconds())

	if !o.retryAt.IsZero() {
		if e.Attempts >= g.cfg.Send.MaxAttempts {
			o = outcome{status: StatusFailed, reason: "max_attempts:" + o.reason, decision: o.decision}
		} else if age := g.now().Sub(e.Created); age > time.Duration(g.cfg.Send.MaxAge) {
			o = outcome{status: StatusFailed, reason: "max_age:" + o.reason, decision: o.decision}
		}
	}
	ev := queue.Event{Tenant: e.Tenant, MsgID: e.MsgID, ExtMessageID: e.ExtID, Status: o.status,
		Reason: o.reason, DecisionID: o.decision, Time: g.now()}
	var err error
	if !o.retryAt.IsZero() {
		var pev *queue.Event
		if o.status == StatusDeferred {
			pev = &ev
		}
		err = g.queue.Retry(ctx, e.ExtID, o.retryAt, pev)
	} else {
		err = g.queue.Finish(ctx, e.ExtID, ev)
	}
	g.metrics.deliveries.WithLabelValues(e.Tenant, channel, o.status).Inc()
	g.appendAudit(ctx, newRecord(audit.KindDelivery, e.Tenant, audit.DeliveryData{
		Adapter: "smtp", Attempt: e.Attempts, Channel: channel, Code: o.reason, DecisionID: o.decision, Status: o.status,
	}, func(r *audit.Record) { r.MsgID, r.ExtID, r.Pseudonym = e.MsgID, e.ExtID, pseudonym }))
	level := g.log.Info
	if o.status == StatusFailed {
		level = g.log.Warn
	}
	level("message "+o.status, "tenant", e.Tenant, "id", e.MsgID, "ext_message_id", e.ExtID,
		"pseudonym", pseudonym, "attempt", e.Attempts, "reason", o.reason, "decision", o.decision)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		// Erasure cancelled the entry while it was being sent; its final
		// status has already been reported.
		g.log.Info("message was cancelled while in flight", "ext_message_id", e.ExtID)
	case err != nil:
		// The lease will expire and the message will be tried again: at
		// least once, never lost.
		g.log.Error("queue update failed", "ext_message_id", e.ExtID, "err", err)
	}
}

// deliver resolves, decides, renders and sends one message. It returns the
// outcome, the channel and the subject's pseudonym (for logs).
func (g *Gateway) deliver(ctx context.Context, e queue.Entry) (outcome, string, string) {
	now := g.now()
	m, err := envelope.ParseMessage(e.Request)
	if err != nil {
		return outcome{status: StatusFailed, reason: "corrupt_request"}, "", ""
	}
	if m.ExpiresAt != nil && !now.Before(*m.ExpiresAt) {
		return outcome{status: StatusExpired, reason: "expires_at"}, m.Channel, ""
	}
	retry := func(reason string) outcome {
		return outcome{status: StatusDeferred, reason: reason, retryAt: now.Add(g.backoff(e.Attempts))}
	}

	// Resolve: only the recipient of this message, only now.
	ref := vault.Ref{Tenant: m.Tenant, Brand: m.Brand, User: m.To.Subject}
	if m.To.Token != "" {
		ref, err = g.store.Lookup(ctx, m.Tenant, m.Brand, m.To.Token)
	}
	var rec vault.Record
	if err == nil {
		rec, err = g.store.Resolve(ctx, ref)
	}
	switch {
	case errors.Is(err, vault.ErrNotFound):
		return outcome{status: StatusUnknownRecipient, reason: "not_in_vault"}, m.Channel, ""
	case errors.Is(err, vault.ErrCorrupt):
		// A record that does not open is never guessed at: fail closed.
		g.log.Error("vault record does not open", "tenant", m.Tenant, "brand", m.Brand)
		return outcome{status: StatusFailed, reason: "record_corrupt"}, m.Channel, ""
	case err != nil:
		return retry("vault_unavailable"), m.Channel, ""
	}

	tmpl := render.Template{Subject: m.Subject, HTML: m.HTML, Text: m.Text}
	fields, err := render.Placeholders(tmpl)
	if err != nil {
		return outcome{status: StatusFailed, reason: "invalid_template"}, m.Channel, rec.Pseudonym
	}
	in := policy.Input{
		API: "native", Stage: "send", Tenant: m.Tenant, Brand: m.Brand,
		Channel: m.Channel, Category: m.Category, Purpose: m.Purpose, Placeholders: fields,
		Subject: subjectAttrs(rec, m.Channel, now), Now: now, FromDomain: addressDomain(m.From),
	}
	d, err := g.decide(ctx, in)
	// The decision goes on record before anything is sent; if the log
	// cannot take it, nothing is sent.
	if aerr := g.appendAudit(ctx, decisionRecord(in, d, e.MsgID, e.ExtID)); aerr != nil {
		return outcome{}, m.Channel, rec.Pseudonym
	}
	if err != nil {
		return retry("policy_unavailable"), m.Channel, rec.Pseudonym
	}
	if !d.Allow {
		return outcome{status: StatusDenied, reason: strings.Join(d.Reasons, ","), decision: d.ID}, m.Channel, rec.Pseudonym
	}
	if at, ok, derr := d.DeferUntil(); derr != nil {
		return retry("policy_obligation_unreadable"), m.Channel, rec.Pseudonym
	} else if ok && at.After(now) {
		return outcome{status: StatusDeferred, reason: "defer_until", decision: d.ID, retryAt: at}, m.Channel, rec.Pseudonym
	}

	allowed := make(map[string]bool, len(fields))
	for _, f := range fields {
		allowed[f] = true
	}
	out, err := render.Render(tmpl, func(f string) bool { return allowed[f] }, rec.Field)
	if err != nil {
		return outcome{status: StatusFailed, reason: renderReason(err), decision: d.ID}, m.Channel, rec.Pseudonym
	}
	_, err = g.email.Send(ctx, smtp.Message{
		From: m.From, To: rec.Email, ReplyTo: m.ReplyTo,
		Subject: out.Subject, HTML: out.HTML, Text: out.Text,
		MessageID: messageID(e.ExtID, m.From), Date: now,
	})
	var re *smtp.ReplyError
	switch {
	case err == nil:
		return outcome{status: StatusSent, decision: d.ID}, m.Channel, rec.Pseudonym
	case errors.Is(err, smtp.ErrHeaderInjection):
		return outcome{status: StatusFailed, reason: "header_injection", decision: d.ID}, m.Channel, rec.Pseudonym
	case errors.Is(err, smtp.ErrPermanent):
		reason := "smtp_permanent"
		if errors.As(err, &re) {
			reason = fmt.Sprintf("smtp_%d", re.Code)
		}
		return outcome{status: StatusBounced, reason: reason, decision: d.ID}, m.Channel, rec.Pseudonym
	default:
		reason := "smtp_temporary"
		if errors.As(err, &re) {
			reason = fmt.Sprintf("smtp_%d", re.Code)
		}
		o := retry(reason)
		o.decision = d.ID
		return o, m.Channel, rec.Pseudonym
	}
}

// subjectAttrs derives the policy's view of a record: attributes only,
// never an address or a name.
func subjectAttrs(r vault.Record, channel string, now time.Time) *policy.Subject {
	loc := time.UTC
	if r.Timezone != "" {
		if l, err := time.LoadLocation(r.Timezone); err == nil {
			loc = l
		}
	}
	s := &policy.Subject{
		Pseudonym: r.Pseudonym, Country: r.Country, LocalHour: now.In(loc).Hour(),
		OptOuts: r.OptOuts, Consents: r.Consents, SelfExcluded: r.SelfExcluded,
		Timezone: r.Timezone, OptOutSince: r.OptOutSince, SnoozedUntil: r.SnoozedUntil,
	}
	if s.OptOuts == nil {
		s.OptOuts = map[string]bool{}
	}
	if s.Consents == nil {
		s.Consents = map[string]bool{}
	}
	switch channel {
	case "email":
		s.Addressable = r.Email != ""
	case "sms":
		s.Addressable = r.Phone != ""
	case "im":
		s.Addressable = r.TelegramChatID != ""
	}
	return s
}

func renderReason(err error) string {
	switch {
	case errors.Is(err, render.ErrForbiddenField):
		return "placeholder_forbidden"
	case errors.Is(err, render.ErrUnknownField):
		return "placeholder_unresolved"
	case errors.Is(err, render.ErrHeaderInjection):
		return "header_injection"
	case errors.Is(err, render.ErrPosition):
		return "placeholder_position"
	default:
		return "render_failed"
	}
}

// messageID is stable for a message across retries, so a receiver can
// collapse the duplicates that at-least-once delivery may produce.
func messageID(ext, from string) string {
	dom := "blindpost.invalid"
	if at := strings.LastIndexByte(from, '@'); at >= 0 {
		if d := strings.Trim(from[at+1:], "> "); d != "" {
			dom = d
		}
	}
	return "<" + ext + "@" + dom + ">"
}

func (g *Gateway) backoff(attempt int) time.Duration {
	return callback.Backoff(attempt, 5*time.Second, 30*time.Minute, rand.Float64)
}

// callbackLoop posts the outbox's status events to each tenant's callback
// URL, with retries. The URL comes from the config, never from a request.
func (g *Gateway) callbackLoop(ctx context.Context) {
	var pruned time.Time
	for ctx.Err() == nil {
		if now := g.now(); now.Sub(pruned) > time.Hour {
			// Remembered answers older than the core's retry horizon go.
			if n, err := g.queue.Prune(ctx); err != nil {
				g.log.Error("prune answers", "err", err)
			} else if n > 0 {
				g.log.Info("pruned remembered answers", "count", n)
			}
			pruned = now
		}
		n := g.PostCallbacks(ctx, 50)
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(g.poll):
		}
	}
}

// PostCallbacks posts up to limit due callbacks and returns how many it tried.
func (g *Gateway) PostCallbacks(ctx context.Context, limit int) int {
	evs, err := g.queue.ClaimEvents(ctx, limit, time.Minute)
	if err != nil {
		if ctx.Err() == nil {
			g.log.Error("claim callbacks", "err", err)
		}
		return 0
	}
	// Every callback carries the latest signed checkpoint, so the core keeps
	// witness copies of the log as it grows.
	checkpoint, err := g.audit.Checkpoint(ctx)
	if err != nil {
		g.log.Error("audit checkpoint", "err", err)
	}
	var done []int64
	defer func() {
		if err := g.queue.AckEvents(ctx, done); err != nil {
			// The lease runs out and they are posted again; the core
			// de-duplicates on webhook-id.
			g.log.Error("ack callbacks", "err", err)
		}
	}()
	for _, ev := range evs {
		t := g.tenants[ev.Tenant]
		if t == nil || t.CallbackURL == "" {
			done = append(done, ev.ID)
			continue
		}
		err := g.calls.Post(ctx, t.CallbackURL, callback.Payload{
			Type: "message.status", Tenant: ev.Tenant, ID: ev.MsgID, ExtMessageID: ev.ExtMessageID,
			Status: ev.Status, Reason: ev.Reason, DecisionID: ev.DecisionID, Seq: ev.Seq,
			Time: ev.Time, Checkpoint: string(checkpoint),
		})
		if err == nil {
			g.metrics.callbacks.WithLabelValues("ok").Inc()
			done = append(done, ev.ID)
			continue
		}
		g.metrics.callbacks.WithLabelValues("retry").Inc()
		g.log.Warn("callback failed", "tenant", ev.Tenant, "seq", ev.Seq, "err", err)
		g.queue.RetryEvent(ctx, ev.ID, g.now().Add(g.backoff(ev.Attempts)))
	}
	return len(evs)
}
