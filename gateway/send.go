package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/push"
	"github.com/blindpost/blindpost/adapters/sms"
	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/adapters/telegram"
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
	// From the provider's delivery receipts (SMS), after "sent".
	StatusDelivered   = "delivered"
	StatusUndelivered = "undelivered"
	// The player opted out through the gateway's unsubscribe link.
	StatusOptedOut = "opted_out"
)

// claimBatch is how many due messages a worker claims at once: one queue
// write (an fsync) leases them all. More would hold leases on messages a
// worker cannot get to soon, and widen what a crash delays.
const claimBatch = 4

func (g *Gateway) sendLoop(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := g.SendDue(ctx, claimBatch)
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
	// postpone: the message was not tried (paced, or deferred by the
	// policy), so the attempt does not count.
	postpone bool
	// paced: postponed by the adapter's pacing (rate, slots, breaker);
	// routine, so neither the core nor the log hears of it.
	paced   bool
	adapter string              // the adapter that was called, if any
	refs    []queue.ProviderRef // the provider's ids, for receipts
}

func (g *Gateway) process(ctx context.Context, e queue.Entry) {
	start := g.now()
	o, channel, pseudonym := g.deliver(ctx, e)
	if o.status == "" {
		return // nothing was decided; the lease hands the entry to a later try
	}
	g.metrics.sendDur.Observe(g.now().Sub(start).Seconds())

	// Waiting (postponed) never uses attempts up, but no message waits
	// longer than max_age: then it fails, with a final callback.
	if !o.retryAt.IsZero() {
		switch {
		case !o.postpone && e.Attempts >= g.cfg.Send.MaxAttempts:
			o = outcome{status: StatusFailed, reason: "max_attempts:" + o.reason, decision: o.decision, adapter: o.adapter}
		case g.now().Sub(e.Created) > time.Duration(g.cfg.Send.MaxAge):
			o = outcome{status: StatusFailed, reason: "max_age:" + o.reason, decision: o.decision, adapter: o.adapter}
		}
	}
	// A message that could only be tried after it expires, expires now.
	if !o.retryAt.IsZero() && !e.ExpiresAt.IsZero() && !o.retryAt.Before(e.ExpiresAt) {
		o = outcome{status: StatusExpired, reason: "expires_at:" + o.reason, decision: o.decision, adapter: o.adapter}
	}
	ev := queue.Event{Tenant: e.Tenant, MsgID: e.MsgID, ExtMessageID: e.ExtID, Status: o.status,
		Reason: o.reason, DecisionID: o.decision, Time: g.now()}
	if o.paced {
		// Routine pacing: back to the queue, nobody told, nothing on record.
		g.metrics.paced.WithLabelValues(o.adapter, o.reason).Inc()
		if err := g.queue.Postpone(ctx, e.ExtID, o.retryAt, nil); err != nil && !errors.Is(err, queue.ErrNotFound) {
			g.log.Error("queue update failed", "ext_message_id", e.ExtID, "err", err)
		}
		return
	}
	// The outcome goes on record before the queue moves on, as answers do
	// at acceptance: a crash in between sends the message again and
	// records a second attempt, but never leaves an outcome unrecorded.
	// The attempt already happened, so a log that cannot take the record
	// does not stop the queue update (that would send it again); the log
	// then refuses everything else until restarted, which stops sending.
	g.appendAudit(ctx, newRecord(audit.KindDelivery, e.Tenant, audit.DeliveryData{
		Adapter: o.adapter, Attempt: e.Attempts, Channel: channel, Code: o.reason, DecisionID: o.decision, Status: o.status,
	}, func(r *audit.Record) { r.MsgID, r.ExtID, r.Pseudonym = e.MsgID, e.ExtID, pseudonym }))
	var err error
	switch {
	case o.postpone:
		err = g.queue.Postpone(ctx, e.ExtID, o.retryAt, &ev)
	case !o.retryAt.IsZero():
		var pev *queue.Event
		if o.status == StatusDeferred {
			pev = &ev
		}
		err = g.queue.Retry(ctx, e.ExtID, o.retryAt, pev)
	default:
		err = g.queue.Finish(ctx, e.ExtID, ev, o.refs...)
	}
	g.metrics.deliveries.WithLabelValues(e.Tenant, channel, o.status).Inc()
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
	if ch := g.channels.get(m.Channel); ch != nil {
		if d := ch.lim.Blocked(); d != nil {
			// The adapter could not take it now anyway: no vault lookup,
			// no decision, nothing on record for a message that waits.
			o := classify(d, ch.adapter, now, retry)
			o.adapter = ch.adapter
			return o, m.Channel, ""
		}
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
	var extras compatExtras
	if e.Compat != nil {
		if err := json.Unmarshal(e.Compat, &extras); err != nil {
			return outcome{status: StatusFailed, reason: "corrupt_request"}, m.Channel, rec.Pseudonym
		}
		in.API, in.ActivityType, in.ToOverrideDomain = "compat", extras.ActivityType, addressDomain(extras.To)
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
		return outcome{status: StatusDeferred, reason: "defer_until", decision: d.ID, retryAt: at, postpone: true}, m.Channel, rec.Pseudonym
	}

	allowed := make(map[string]bool, len(fields))
	for _, f := range fields {
		allowed[f] = true
	}
	out, err := render.Render(tmpl, func(f string) bool { return allowed[f] }, rec.Field)
	if err != nil {
		return outcome{status: StatusFailed, reason: renderReason(err), decision: d.ID}, m.Channel, rec.Pseudonym
	}
	ch := g.channels.get(m.Channel)
	if ch == nil {
		// Accepted when the channel had an adapter; the config changed since.
		return retry("channel_unavailable"), m.Channel, rec.Pseudonym
	}
	var res sendResult
	switch m.Channel {
	case "email":
		to := rec.Email
		if extras.To != "" {
			// A preview or support copy, to the staff address the policy
			// allowed (compat API); the player's own data fills it in.
			to = extras.To
		}
		res = g.sendEmail(ctx, ch, e, m, ref, rec, to, out, d, now)
	case "sms":
		res = g.sendSMS(ctx, ch, e, m, rec, out)
	case "im":
		res = g.sendIM(ctx, ch, rec, out)
	case "push":
		res = g.sendPush(ctx, ch, e, m, ref, rec, out)
	}
	o := classify(res.err, ch.adapter, now, retry)
	o.decision, o.adapter, o.refs = d.ID, ch.adapter, res.refs
	return o, m.Channel, rec.Pseudonym
}

func (g *Gateway) sendEmail(ctx context.Context, ch *channel, e queue.Entry, m *envelope.Message, ref vault.Ref,
	rec vault.Record, to string, out render.Template, d policy.Decision, now time.Time) sendResult {
	msg := smtp.Message{
		From: m.From, To: to, ReplyTo: m.ReplyTo,
		Subject: out.Subject, HTML: out.HTML, Text: out.Text,
		MessageID: messageID(e.ExtID, m.From), Date: now,
		DKIM: g.dkimFor(m.Tenant, m.Brand, addressDomain(m.From)),
	}
	if d.ListUnsubscribe() {
		if g.unsub == nil {
			// The policy requires a way out that this gateway cannot
			// offer: not sending is the only compliant choice.
			return sendResult{err: adapters.Permanent("unsubscribe_not_configured", nil)}
		}
		link, err := g.unsub.link(ref, e.MsgID, e.ExtID, now)
		if err != nil {
			return sendResult{err: adapters.Temporary("unsubscribe_link", err)}
		}
		msg.ListUnsubscribe, msg.ListUnsubscribePost = link, true
	}
	err := ch.lim.Do(ctx, func(ctx context.Context) error {
		_, err := g.email.Send(ctx, msg)
		return err
	}, isTemporary)
	return sendResult{err: err}
}

func (g *Gateway) sendSMS(ctx context.Context, ch *channel, e queue.Entry, m *envelope.Message, rec vault.Record, out render.Template) sendResult {
	var r sms.Result
	err := ch.lim.Do(ctx, func(ctx context.Context) (err error) {
		r, err = g.channels.smsSender.Send(ctx, sms.Message{From: m.From, To: rec.Phone, Body: out.Text, Ref: e.ExtID})
		return err
	}, isTemporary)
	var refs []queue.ProviderRef
	for _, id := range append([]string{r.ProviderID}, r.PartIDs...) {
		if id != "" {
			refs = append(refs, queue.ProviderRef{Adapter: ch.adapter, ID: id})
		}
	}
	return sendResult{refs: refs, err: err}
}

func (g *Gateway) sendIM(ctx context.Context, ch *channel, rec vault.Record, out render.Template) sendResult {
	err := ch.lim.Do(ctx, func(ctx context.Context) error {
		_, err := g.channels.imSender.Send(ctx, telegram.Message{ChatID: rec.TelegramChatID, Text: out.Text})
		return err
	}, isTemporary)
	return sendResult{err: err}
}

// sendPush sends to every device of the player; the message counts as
// sent if one device took it. Devices the push gateway says are gone are
// dropped from the record, so they are not tried again.
func (g *Gateway) sendPush(ctx context.Context, ch *channel, e queue.Entry, m *envelope.Message, ref vault.Ref,
	rec vault.Record, out render.Template) sendResult {
	tokens := make([]push.Token, len(rec.PushTokens))
	for i, t := range rec.PushTokens {
		tokens[i] = push.Token{PushToken: t.Token, DeviceType: t.DeviceType}
	}
	var results []push.TokenResult
	err := ch.lim.Do(ctx, func(ctx context.Context) (err error) {
		results, err = g.channels.pushSender.SendAll(ctx, push.Message{UserExtID: ref.User, ExtBrandID: m.Brand,
			MessageID: e.ExtID, Title: out.Subject, Body: out.Text}, tokens)
		return err
	}, isTemporary)
	if err != nil {
		return sendResult{err: err}
	}
	var firstErr error
	var keep []vault.PushToken
	sent := false
	for i, r := range results {
		switch {
		case r.Err == nil:
			sent = true
			keep = append(keep, rec.PushTokens[i])
		case adapters.Code(r.Err) == "push_410":
			// Only 410 Gone: a 404 may as well be a wrong URL in the
			// config, and dropping every device on it would be worse.
			if firstErr == nil {
				firstErr = r.Err
			}
		default:
			keep = append(keep, rec.PushTokens[i])
			if firstErr == nil || adapters.Code(firstErr) == "push_410" {
				firstErr = r.Err
			}
		}
	}
	if len(keep) < len(rec.PushTokens) {
		rec.PushTokens = keep
		if _, err := g.store.Put(ctx, ref, rec); err != nil {
			g.log.Warn("could not drop gone push tokens", "pseudonym", rec.Pseudonym, "err", err)
		}
	}
	if sent {
		return sendResult{}
	}
	return sendResult{err: firstErr}
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
	case "push":
		s.Addressable = len(r.PushTokens) > 0
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
		if ev.CallbackURL != "" {
			// A compat message: its status goes to its own callback_url.
			if err := g.postCompat(ctx, ev); err != nil {
				g.metrics.callbacks.WithLabelValues("retry").Inc()
				g.log.Warn("compat callback failed", "tenant", ev.Tenant, "seq", ev.Seq, "err", err)
				g.queue.RetryEvent(ctx, ev.ID, g.now().Add(g.backoff(ev.Attempts)))
				continue
			}
			g.metrics.callbacks.WithLabelValues("ok").Inc()
			done = append(done, ev.ID)
			continue
		}
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
