package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway/compat"
	"github.com/blindpost/blindpost/gateway/queue"
	"github.com/blindpost/blindpost/gateway/render"
	"github.com/blindpost/blindpost/policy"
)

// The reference vendor's secured-gateway API (docs/compat.md), glued to the
// native pipeline: the same policy (with api "compat"), vault, audit log
// and queue. It is off unless a tenant enables it.

// CompatConfig holds the compatibility API's gateway-wide settings.
type CompatConfig struct {
	// TrustedProxies are the reverse proxies whose X-Forwarded-For the
	// IP allow-lists believe (CIDR prefixes).
	TrustedProxies []string `yaml:"trusted_proxies"`
	MaxBodyBytes   int64    `yaml:"max_body_bytes"`
}

// TenantCompat enables the compatibility API for one tenant.
type TenantCompat struct {
	Email bool `yaml:"email"`
	SMS   bool `yaml:"sms"`
	// SecretsEnv and SecretsFile hold the Authorization secrets (one per
	// line or comma-separated; several allow rotation), never inline.
	SecretsEnv  string `yaml:"secrets_env"`
	SecretsFile string `yaml:"secrets_file"`
	// AllowIPs are the clients allowed (CIDR); there is no default.
	AllowIPs []string `yaml:"allow_ips"`
	// CallbackAllow are the callback_url prefixes requests may name.
	CallbackAllow []string `yaml:"callback_allow"`
	// Brand is the brand the API's messages are for (it has no brand
	// field); Category and Purpose what the policy sees them as (default
	// marketing and promotion: the strictest rules apply unless the
	// operator says otherwise).
	Brand    string `yaml:"brand"`
	Category string `yaml:"category"`
	Purpose  string `yaml:"purpose"`
}

func (t TenantCompat) enabled() bool { return t.Email || t.SMS }

func (c *Config) validateCompat(bad func(field, format string, args ...any)) {
	for _, p := range c.Compat.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			bad("compat.trusted_proxies", "%q is not a CIDR prefix", p)
		}
	}
	for i, t := range c.Tenants {
		tc := t.Compat
		if !tc.enabled() {
			continue
		}
		f := fmt.Sprintf("tenants[%d].compat", i)
		if tc.SecretsEnv == "" && tc.SecretsFile == "" {
			bad(f+".secrets_env", "one of secrets_env or secrets_file is required")
		}
		if len(tc.AllowIPs) == 0 {
			bad(f+".allow_ips", "required (write 0.0.0.0/0 and ::/0 to allow everyone)")
		}
		for _, p := range tc.AllowIPs {
			if _, err := netip.ParsePrefix(p); err != nil {
				bad(f+".allow_ips", "%q is not a CIDR prefix", p)
			}
		}
		if len(tc.CallbackAllow) == 0 {
			bad(f+".callback_allow", "at least one allowed callback URL prefix is required")
		}
		if tc.Brand == "" {
			bad(f+".brand", "required: the API's requests name no brand")
		}
		switch tc.Category {
		case "", "marketing", "transactional":
		default:
			bad(f+".category", "want marketing or transactional, got %q", tc.Category)
		}
	}
}

// compatTenants builds the handler's view of the tenants that enable it.
func (g *Gateway) openCompat() error {
	var ts []*compat.Tenant
	for i := range g.cfg.Tenants {
		t := &g.cfg.Tenants[i]
		if !t.Compat.enabled() {
			continue
		}
		secrets, err := readSecrets(t.Compat.SecretsEnv, t.Compat.SecretsFile)
		if err != nil {
			return fmt.Errorf("tenants[%d].compat: %w", i, err)
		}
		ct := &compat.Tenant{ID: t.ID, Brand: t.Compat.Brand, Secrets: secrets, CallbackAllow: t.Compat.CallbackAllow,
			EmailEnabled: t.Compat.Email, SMSEnabled: t.Compat.SMS}
		for _, p := range t.Compat.AllowIPs {
			ct.AllowIPs = append(ct.AllowIPs, netip.MustParsePrefix(p)) // validated
		}
		ts = append(ts, ct)
		g.compatTenants[t.ID] = ct
	}
	if len(ts) == 0 {
		return nil
	}
	var proxies []netip.Prefix
	for _, p := range g.cfg.Compat.TrustedProxies {
		proxies = append(proxies, netip.MustParsePrefix(p))
	}
	h, err := compat.New(ts, g, compat.Options{Log: g.log, TrustedProxies: proxies, MaxBodyBytes: g.cfg.Compat.MaxBodyBytes, Now: g.now,
		Observe: func(tenant, channel string, code int, d time.Duration) {
			g.metrics.compat.WithLabelValues(channel, fmt.Sprint(code)).Inc()
		}})
	if err != nil {
		return fmt.Errorf("compat: %w", err)
	}
	g.compat = h
	return nil
}

func readSecrets(envName, file string) ([][]byte, error) {
	var raw string
	if envName != "" {
		raw = os.Getenv(envName)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("secrets_file: %w", err)
		}
		raw += "\n" + string(b)
	}
	var out [][]byte
	for _, f := range strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, []byte(f))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no secret configured")
	}
	return out, nil
}

// compatExtras is what a compat request carries beyond a native message
// request; it is stored with the queue entry.
type compatExtras struct {
	ActivityType string `json:"activity_type,omitempty"`
	// To is to_email_address: an operator's staff address, for previews
	// and customer support copies, when the policy allows its domain.
	To string `json:"to,omitempty"`
}

// compatIDPrefix starts the message id of a compat request: the queue's
// idempotency key, distinct from every native id the core could choose.
const compatIDPrefix = "compat:"

// maxCompatUID keeps "compat:<channel>:<uid>" within the 128-byte id rule.
const maxCompatUID = 128 - len(compatIDPrefix+"email:")

// AcceptCompat runs one compat request through the accept half of the
// pipeline (compat.Acceptor).
func (g *Gateway) AcceptCompat(ctx context.Context, t *compat.Tenant, r compat.Request) (string, error) {
	tc := g.tenants[t.ID].Compat
	uidField := "email_uid"
	if r.Channel == compat.ChannelSMS {
		uidField = "im_uid"
	}
	if len(r.UID) > maxCompatUID {
		return "", &compat.FieldError{Field: uidField, Problem: compat.ProblemTooLong}
	}
	channel := "email"
	if r.Channel == compat.ChannelSMS {
		channel = "sms"
	}
	if g.channels.get(channel) == nil {
		return "", fmt.Errorf("no %s adapter configured: %w", channel, compat.ErrUnavailable)
	}
	m := envelope.Message{
		ID: compatIDPrefix + channel + ":" + r.UID, Tenant: t.ID, Brand: tc.Brand, Channel: channel,
		Category: cmpOr(tc.Category, "marketing"), Purpose: cmpOr(tc.Purpose, "promotion"),
		To: envelope.Recipient{Subject: r.ExtUserID}, From: r.From, ReplyTo: r.ReplyTo,
		Subject: r.Subject, HTML: r.HTML, Text: r.Text,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode request: %w", compat.ErrInvalid)
	}
	if _, err := envelope.ParseMessage(raw); err != nil {
		// The handler checked the fields; what is left is the native
		// schema's own rules (e.g. an email without a subject).
		return "", fmt.Errorf("%s: %w", safeMessage(err), compat.ErrInvalid)
	}
	extras, _ := json.Marshal(compatExtras{ActivityType: r.ActivityType, To: r.ToEmailAddress})
	now := g.now()
	fields, err := render.Placeholders(render.Template{Subject: m.Subject, HTML: m.HTML, Text: m.Text})
	if err != nil {
		return "", fmt.Errorf("template: %w", compat.ErrInvalid)
	}
	rate, err := g.volume.AddVolume(ctx, m.Tenant, now, 1)
	if err != nil {
		g.log.Error("compat request not counted", "tenant", m.Tenant, "err", err)
		return "", fmt.Errorf("volume guard: %w", compat.ErrUnavailable)
	}
	in := policy.Input{
		API: "compat", Stage: "accept", Tenant: m.Tenant, Brand: m.Brand,
		Channel: m.Channel, Category: m.Category, Purpose: m.Purpose, Placeholders: fields,
		Now: now, FromDomain: addressDomain(m.From), ActivityType: r.ActivityType,
		ToOverrideDomain:    addressDomain(r.ToEmailAddress),
		TenantRatePerMinute: rate,
	}
	adm, err := g.admit(ctx, &m, in, time.Time{})
	rec := adm.record
	switch {
	case err != nil:
		g.appendAudit(ctx, rec)
		g.log.Error("compat request not decided", "tenant", m.Tenant, "uid", compat.UIDHash(r.UID), "err", err)
		return "", fmt.Errorf("%w: %w", err, compat.ErrUnavailable)
	case adm.denied != nil:
		g.appendAudit(ctx, rec, compatAnswer(m, "", "denied", adm.decisionID))
		return "", compat.Denied(adm.denied...)
	case adm.capped:
		g.appendAudit(ctx, rec, compatAnswer(m, "", queue.CodeFrequencyCap, adm.decisionID))
		return "", compat.Denied(queue.CodeFrequencyCap)
	}

	// The content hash covers everything that decides what is sent, so a
	// reused uid with other content is a conflict, not a duplicate.
	h := sha256.New()
	h.Write(raw)
	h.Write([]byte{0})
	h.Write(extras)
	h.Write([]byte{0})
	h.Write([]byte(r.CallbackURL))
	var hash [32]byte
	h.Sum(hash[:0])
	ext := newExtID()
	rec.ExtID = ext
	if err := g.appendAudit(ctx, rec, compatAnswer(m, ext, "", adm.decisionID)); err != nil {
		return "", fmt.Errorf("audit: %w", compat.ErrUnavailable)
	}
	outs, err := g.queue.Accept(ctx, []queue.Item{{
		Tenant: m.Tenant, ID: m.ID, Hash: hash,
		Answer: queue.Answer{Status: StatusAccepted, ExtMessageID: ext},
		Entry: &queue.Entry{ExtID: ext, Tenant: m.Tenant, MsgID: m.ID, Brand: m.Brand, User: m.To.Subject,
			Request: raw, Created: now, NotBefore: adm.notBefore, CallbackURL: r.CallbackURL, Compat: extras},
		Reserve: adm.reserve,
	}})
	if err != nil {
		return "", fmt.Errorf("queue: %w", compat.ErrUnavailable)
	}
	o := outs[0]
	g.metrics.messages.WithLabelValues(m.Tenant, "compat_"+cmpOr(o.Answer.Status, "conflict")).Inc()
	switch {
	case o.Conflict:
		return "", compat.ErrDuplicateConflict
	case o.Answer.Status != StatusAccepted:
		return "", compat.Denied(cmpOr(o.Answer.Code, "denied"))
	}
	if !o.Duplicate {
		g.kick()
	}
	return o.Answer.ExtMessageID, nil
}

// compatAnswer is the log's copy of an answer to a compat request. There
// is no core signature to prove; the code says where it came from.
func compatAnswer(m envelope.Message, ext, rejected, decisionID string) audit.Record {
	kind, code := audit.KindMessageAccepted, "compat"
	if rejected != "" {
		kind, code = audit.KindMessageRejected, "compat:"+rejected
	}
	return newRecord(kind, m.Tenant, audit.MessageData{Code: code, DecisionID: decisionID},
		func(r *audit.Record) { r.MsgID, r.ExtID = m.ID, ext })
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// postCompat posts a compat message's status to its callback_url, in the
// reference vendor's shape, if the tenant's allow-list still admits it.
func (g *Gateway) postCompat(ctx context.Context, ev queue.Event) error {
	ct := g.compatTenants[ev.Tenant]
	if ct == nil || !compat.CallbackAllowed(ct, ev.CallbackURL) {
		g.log.Warn("compat callback no longer allowed; dropped", "tenant", ev.Tenant, "seq", ev.Seq)
		return nil
	}
	rest, _ := strings.CutPrefix(ev.MsgID, compatIDPrefix)
	channel, uid, _ := strings.Cut(rest, ":")
	if channel == "sms" {
		channel = compat.ChannelSMS
	} else {
		channel = compat.ChannelEmail
	}
	body, err := compat.CallbackBody(compat.Status{ExtMessageID: ev.ExtMessageID, UID: uid, Channel: channel,
		Status: ev.Status, Reason: ev.Reason, Time: ev.Time})
	if err != nil {
		g.log.Error("compat callback body", "tenant", ev.Tenant, "seq", ev.Seq, "err", err)
		return nil // it will not get better by retrying
	}
	return g.calls.PostRaw(ctx, ev.CallbackURL, ev.Tenant, ev.Seq, body)
}
