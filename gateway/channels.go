package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/push"
	"github.com/blindpost/blindpost/adapters/sms"
	"github.com/blindpost/blindpost/adapters/sms/httpsms"
	"github.com/blindpost/blindpost/adapters/sms/smpp"
	"github.com/blindpost/blindpost/adapters/sms/twilio"
	"github.com/blindpost/blindpost/adapters/smtp"
	"github.com/blindpost/blindpost/adapters/telegram"
	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/gateway/queue"
	"github.com/blindpost/blindpost/gateway/throttle"
	"github.com/prometheus/client_golang/prometheus"
)

// SMSSender delivers one rendered SMS.
type SMSSender interface {
	Send(ctx context.Context, m sms.Message) (sms.Result, error)
}

// IMSender delivers one rendered instant message.
type IMSender interface {
	Send(ctx context.Context, m telegram.Message) (telegram.Result, error)
}

// PushSender delivers one push notification to each of a player's devices.
type PushSender interface {
	SendAll(ctx context.Context, base push.Message, tokens []push.Token) ([]push.TokenResult, error)
}

// channel is one delivery channel's adapter and its pacing.
type channel struct {
	adapter string // "smtp", "twilio", "http", "smpp", "telegram", "push"
	lim     *throttle.Limiter
}

// channels are the configured adapters, by message channel.
type channels struct {
	email, sms, im, push *channel
	smsSender            SMSSender
	imSender             IMSender
	pushSender           PushSender
	receipts             map[string]http.Handler // path on the public listener -> provider's receipt handler
}

func (cs *channels) get(name string) *channel {
	switch name {
	case "email":
		return cs.email
	case "sms":
		return cs.sms
	case "im":
		return cs.im
	case "push":
		return cs.push
	}
	return nil
}

// openChannels builds the adapters the config names; opts may replace them.
func (g *Gateway) openChannels(cfg *Config, opts Options) error {
	cs := &channels{receipts: map[string]http.Handler{}}
	g.channels = cs
	cs.email = &channel{adapter: "smtp", lim: throttle.New(cfg.SMTP.Throttle.config(), g.now)}

	httpClient := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	switch {
	case opts.SMS != nil:
		cs.smsSender = opts.SMS
		cs.sms = &channel{adapter: "test", lim: throttle.New(cfg.SMS.Throttle.config(), g.now)}
	case cfg.SMS.Adapter == "twilio":
		c := cfg.SMS.Twilio
		token, err := env("sms.twilio.auth_token_env", c.AuthTokenEnv)
		if err != nil {
			return err
		}
		tw, err := twilio.New(twilio.Config{BaseURL: c.BaseURL, AccountSID: c.AccountSID, AuthToken: token, From: c.From,
			MessagingServiceSID: c.MessagingServiceSID, StatusCallbackURL: strings.TrimRight(cfg.Public.BaseURL, "/") + "/receipts/twilio",
			Timeout: time.Duration(c.Timeout), Now: g.now}, httpClient)
		if err != nil {
			return fmt.Errorf("sms.twilio: %w", err)
		}
		cs.smsSender = tw
		cs.receipts["/receipts/twilio"] = tw.ReceiptHandler(g.onReceipt)
	case cfg.SMS.Adapter == "http":
		c := cfg.SMS.HTTP
		hc := httpsms.Config{URL: c.URL, Method: c.Method, Headers: c.Headers, ContentType: c.ContentType,
			BodyTemplate: c.BodyTemplate, From: c.From, SuccessStatuses: c.SuccessStatuses, IDPointer: c.IDPointer,
			Timeout: time.Duration(c.Timeout), Now: g.now}
		r := c.Receipts
		hc.Receipts = httpsms.ReceiptConfig{IDPointer: r.IDPointer, RefPointer: r.RefPointer, StatusPointer: r.StatusPointer,
			CodePointer: r.CodePointer, Statuses: r.Statuses, CodePrefix: r.CodePrefix, SecretHeader: r.SecretHeader,
			Secret: r.Secret, SignatureHeader: r.SignatureHeader, SignatureSecret: r.SignatureSecret,
			SignatureEncoding: r.SignatureEncoding, SignaturePrefix: r.SignaturePrefix}
		hs, err := httpsms.New(hc, httpClient, os.LookupEnv)
		if err != nil {
			return fmt.Errorf("sms.http: %w", err)
		}
		cs.smsSender = hs
		if r.StatusPointer != "" {
			cs.receipts["/receipts/http"] = hs.ReceiptHandler(g.onReceipt)
		}
	case cfg.SMS.Adapter == "smpp":
		c := cfg.SMS.SMPP
		pass, err := env("sms.smpp.password_env", c.PasswordEnv)
		if err != nil {
			return err
		}
		sc := smpp.Config{Addr: c.Addr, SystemID: c.SystemID, Password: pass, SystemType: c.SystemType, Source: c.Source,
			EnquireLink: time.Duration(c.EnquireLink), Timeout: time.Duration(c.Timeout), Window: c.Window, MaxParts: c.MaxParts, Now: g.now}
		if c.TLS {
			host, _, _ := net.SplitHostPort(c.Addr)
			sc.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
			if c.CAFile != "" {
				pool, err := loadCertPool(c.CAFile)
				if err != nil {
					return fmt.Errorf("sms.smpp.ca_file: %w", err)
				}
				sc.TLS.RootCAs = pool
			}
		}
		sm, err := smpp.New(sc, g.onReceipt)
		if err != nil {
			return fmt.Errorf("sms.smpp: %w", err)
		}
		cs.smsSender = sm
		g.closers = append(g.closers, sm.Close)
	}
	if cs.smsSender != nil && cs.sms == nil {
		cs.sms = &channel{adapter: cfg.SMS.Adapter, lim: throttle.New(cfg.SMS.Throttle.config(), g.now)}
	}

	switch {
	case opts.IM != nil:
		cs.imSender = opts.IM
	case cfg.Telegram.TokenEnv != "":
		token, err := env("telegram.token_env", cfg.Telegram.TokenEnv)
		if err != nil {
			return err
		}
		tg, err := telegram.New(telegram.Config{BaseURL: cfg.Telegram.BaseURL, Token: token, Timeout: time.Duration(cfg.Telegram.Timeout),
			ParseMode: cfg.Telegram.ParseMode, DisableWebPagePreview: cfg.Telegram.DisableWebPagePreview}, httpClient)
		if err != nil {
			return fmt.Errorf("telegram: %w", err)
		}
		cs.imSender = tg
	}
	if cs.imSender != nil {
		cs.im = &channel{adapter: "telegram", lim: throttle.New(cfg.Telegram.Throttle.config(), g.now)}
	}

	switch {
	case opts.Push != nil:
		cs.pushSender = opts.Push
	case cfg.Push.URL != "":
		auth, err := env("push.authorization_env", cfg.Push.AuthorizationEnv)
		if err != nil {
			return err
		}
		p, err := push.New(push.Config{URL: cfg.Push.URL, Authorization: auth, Timeout: time.Duration(cfg.Push.Timeout),
			AllowInsecureHTTP: cfg.Push.AllowInsecureHTTP, Now: g.now}, httpClient)
		if err != nil {
			return fmt.Errorf("push: %w", err)
		}
		cs.pushSender = p
	}
	if cs.pushSender != nil {
		cs.push = &channel{adapter: "push", lim: throttle.New(cfg.Push.Throttle.config(), g.now)}
	}

	// Each adapter's breaker, for the operator's dashboards: 0 closed,
	// 1 half-open (one trial call), 2 open (calls put off).
	for _, ch := range []*channel{cs.email, cs.sms, cs.im, cs.push} {
		if ch == nil {
			continue
		}
		lim := ch.lim
		g.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "blindpost_gateway_adapter_circuit",
			Help:        "The adapter's circuit breaker: 0 closed, 1 half-open, 2 open.",
			ConstLabels: prometheus.Labels{"adapter": ch.adapter},
		}, func() float64 {
			switch lim.State() {
			case throttle.Open:
				return 2
			case throttle.HalfOpen:
				return 1
			}
			return 0
		}))
	}

	// DKIM keys, by tenant and brand ("/" for the default).
	g.dkim = map[string]*smtp.DKIM{}
	for i, k := range cfg.SMTP.DKIM {
		pem, err := os.ReadFile(k.KeyFile)
		if err != nil {
			return fmt.Errorf("smtp.dkim[%d]: %w", i, err)
		}
		signer, err := smtp.LoadDKIMKey(pem)
		if err != nil {
			return fmt.Errorf("smtp.dkim[%d]: %w", i, err)
		}
		d := &smtp.DKIM{Domain: k.Domain, Selector: k.Selector, Signer: signer}
		if err := d.Validate(); err != nil {
			return fmt.Errorf("smtp.dkim[%d]: %w", i, err)
		}
		g.dkim[k.Tenant+"/"+k.Brand] = d
	}
	return nil
}

// dkimFor returns the brand's DKIM key, or the default, or nil, if its
// domain aligns with the sender's; a key for another domain would produce
// a signature receivers ignore, so the message goes unsigned instead.
func (g *Gateway) dkimFor(tenant, brand, fromDomain string) *smtp.DKIM {
	d := g.dkim[tenant+"/"+brand]
	if d == nil {
		d = g.dkim["/"]
	}
	if d == nil || fromDomain == "" {
		return nil
	}
	dom := strings.ToLower(d.Domain)
	if fromDomain != dom && !strings.HasSuffix(fromDomain, "."+dom) {
		return nil
	}
	return d
}

// sendResult is what one adapter call came to.
type sendResult struct {
	refs []queue.ProviderRef // the provider's ids, for receipts
	err  error
}

// classify turns an adapter's error into an outcome. retry is the
// gateway's own back-off for this attempt.
func classify(err error, prefix string, now time.Time, retry func(reason string) outcome) outcome {
	var d *throttle.Deferred
	var re *smtp.ReplyError
	switch {
	case err == nil:
		return outcome{status: StatusSent}
	case errors.As(err, &d):
		reason := "adapter_busy"
		switch {
		case errors.Is(err, throttle.ErrCircuitOpen):
			reason = "circuit_open"
		case errors.Is(err, throttle.ErrRateLimited):
			reason = "rate_limited"
		}
		return outcome{status: StatusDeferred, reason: reason, retryAt: d.Until, postpone: true, paced: true}
	case errors.Is(err, smtp.ErrHeaderInjection):
		return outcome{status: StatusFailed, reason: "header_injection"}
	case errors.Is(err, smtp.ErrPermanent), errors.Is(err, adapters.ErrPermanent):
		reason := prefix + "_permanent"
		if errors.As(err, &re) {
			reason = fmt.Sprintf("smtp_%d", re.Code)
		} else if c := adapters.Code(err); c != "" {
			reason = c
		}
		return outcome{status: StatusBounced, reason: reason}
	default:
		reason := prefix + "_temporary"
		if errors.As(err, &re) {
			reason = fmt.Sprintf("smtp_%d", re.Code)
		} else if c := adapters.Code(err); c != "" {
			reason = c
		}
		o := retry(reason)
		// The provider's own hint, when it asks for more patience.
		if at := now.Add(adapters.RetryAfter(err)); at.After(o.retryAt) {
			o.retryAt = at
		}
		return o
	}
}

// isTemporary tells the breaker which failures are the adapter's.
func isTemporary(err error) bool {
	if errors.Is(err, smtp.ErrPermanent) || errors.Is(err, adapters.ErrPermanent) || errors.Is(err, smtp.ErrHeaderInjection) {
		return false
	}
	return err != nil && !errors.Is(err, context.Canceled)
}

// onReceipt takes an SMS provider's delivery receipt: it puts "delivered"
// or "undelivered" in the outbox for the core and on record. Intermediate
// states are not reported. A receipt for a message the gateway does not
// know (or no longer remembers) is acknowledged and dropped.
func (g *Gateway) onReceipt(ctx context.Context, r sms.Receipt) error {
	var status string
	switch r.Status {
	case sms.StatusDelivered:
		status = StatusDelivered
	case sms.StatusUndelivered:
		status = StatusUndelivered
	default:
		return nil
	}
	ev, fresh, err := g.queue.Receipt(ctx, queue.ProviderRef{Adapter: r.Adapter, ID: r.ProviderID}, r.Ref,
		queue.Event{Status: status, Reason: r.Code, Time: r.Time})
	if errors.Is(err, queue.ErrNotFound) {
		g.metrics.receipts.WithLabelValues(r.Adapter, "unknown").Inc()
		g.log.Info("receipt for an unknown message", "adapter", r.Adapter)
		return nil
	}
	if err != nil {
		return err // the provider delivers it again
	}
	if !fresh {
		g.metrics.receipts.WithLabelValues(r.Adapter, "repeated").Inc()
		return nil
	}
	g.metrics.receipts.WithLabelValues(r.Adapter, status).Inc()
	g.metrics.deliveries.WithLabelValues(ev.Tenant, "sms", status).Inc()
	return g.appendAudit(ctx, newRecord(audit.KindDelivery, ev.Tenant, audit.DeliveryData{
		Adapter: r.Adapter, Channel: "sms", Code: r.Code, Status: status,
	}, func(rec *audit.Record) { rec.MsgID, rec.ExtID = ev.MsgID, ev.ExtMessageID }))
}
