package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/gateway/admin"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/vault"
)

// runDemo takes one personalised message and one the policy must deny
// through the whole gateway, printing each step. It fails unless every step
// happened.
func runDemo(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "demo")
	keep := fs.Bool("keep", false, "keep the temporary directory")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "blindpost-demo-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	logf, err := os.OpenFile(filepath.Join(dir, "gateway.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	step := func(format string, a ...any) { fmt.Fprintf(c.stdout, "==> "+format+"\n", a...) }

	env, err := devenv.Start(ctx, dir, devenv.Options{
		Logger:       slog.New(slog.NewJSONHandler(logf, nil)),
		PollInterval: 50 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	defer env.Close()
	in := env.Info
	step("gateway up in %s", dir)
	fmt.Fprintf(c.stdout, "    message API %s (TLS), admin API %s, SMTP capture %s, core callbacks %s\n",
		in.MessageURL, in.AdminURL, in.SMTPAddr, in.CallbackURL)

	// The operator's PAM registers two players in the gateway's vault.
	tok, err := in.AdminToken()
	if err != nil {
		return err
	}
	ad := &admin.Client{BaseURL: in.AdminURL, Token: tok, HTTP: &http.Client{Timeout: 10 * time.Second}}
	players := []struct {
		user string
		rec  vault.Record
	}{
		{"player-1", vault.Record{Email: "alex.demo@example.com", FirstName: "Alex", Country: "MT",
			Timezone: "Europe/Malta", Consents: map[string]bool{"marketing_email": true}}},
		{"player-2", vault.Record{Email: "sam.demo@example.com", FirstName: "Sam", Country: "MT",
			Consents: map[string]bool{"marketing_email": true},
			OptOuts:  map[string]bool{"core_is_email_disabled_by_platform": true}}},
	}
	subjects := map[string]*admin.PutResult{}
	for _, p := range players {
		s, err := ad.Put(ctx, in.Brand, p.user, p.rec)
		if err != nil {
			return fmt.Errorf("register %s: %w", p.user, err)
		}
		subjects[p.user] = s
		step("PAM registered %s/%s in the vault: pseudonym %s, email token %s", in.Brand, p.user, s.Pseudonym, s.Tokens["email"])
	}

	// The core knows only tokens and ids; it seals and signs two requests.
	welcome := envelope.Message{
		ID: "demo-welcome-1", Tenant: in.Tenant, Brand: in.Brand, Channel: "email",
		Category: "transactional", Purpose: "account_verification",
		To:   envelope.Recipient{Token: subjects["player-1"].Tokens["email"]},
		From: in.From, Subject: "Welcome, {{pii.first_name}}",
		HTML: "<p>Hello {{pii.first_name}}, your account is ready.</p>",
		Text: "Hello {{pii.first_name}}, your account is ready.",
	}
	promo := envelope.Message{
		ID: "demo-promo-2", Tenant: in.Tenant, Brand: in.Brand, Channel: "email",
		Category: "marketing", Purpose: "promotion",
		To:   envelope.Recipient{Subject: "player-2"},
		From: in.From, Subject: "{{pii.first_name}}, 20 free spins",
		HTML: "<p>Hi {{pii.first_name}}, 20 free spins are waiting.</p>",
		Text: "Hi {{pii.first_name}}, 20 free spins are waiting.",
	}
	resp, err := in.Send(ctx, welcome, promo)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	for _, r := range resp.Results {
		step("gateway answered %s: %s %s%s", r.ID, r.Status, r.ExtMessageID, r.Code)
		if r.Status != gateway.StatusAccepted {
			return fmt.Errorf("demo: %s was not accepted", r.ID)
		}
	}

	// Send time: resolve, decide, render, deliver; then signed callbacks.
	sent, err := env.Core.Wait(ctx, welcome.ID, gateway.StatusSent, gateway.StatusFailed, gateway.StatusDenied)
	if err != nil {
		return err
	}
	step("decision for %s: %s (decision %s); callback seq %d verified", sent.ID, sent.Status, sent.DecisionID, sent.Seq)
	if sent.Status != gateway.StatusSent {
		return fmt.Errorf("demo: %s ended %s (%s), want sent", sent.ID, sent.Status, sent.Reason)
	}
	denied, err := env.Core.Wait(ctx, promo.ID, gateway.StatusSent, gateway.StatusFailed, gateway.StatusDenied)
	if err != nil {
		return err
	}
	step("decision for %s: %s (%s, decision %s); callback seq %d verified", denied.ID, denied.Status, denied.Reason, denied.DecisionID, denied.Seq)
	if denied.Status != gateway.StatusDenied {
		return fmt.Errorf("demo: %s ended %s, want denied", denied.ID, denied.Status)
	}

	path, msg, err := findMail(in.MailDir, "<"+resp.Results[0].ExtMessageID+"@")
	if err != nil {
		return err
	}
	step("delivered %s", path)
	fmt.Fprintf(c.stdout, "    To: %s\n    Subject: %s\n    Message-ID: %s\n",
		msg.Header.Get("To"), msg.Header.Get("Subject"), msg.Header.Get("Message-ID"))
	if !strings.Contains(msg.Header.Get("Subject"), "Alex") {
		return errors.New("demo: the delivered subject was not personalised")
	}
	if n := env.Capture.Count(); n != 1 {
		return fmt.Errorf("demo: the SMTP server received %d messages, want exactly 1", n)
	}
	step("the opted-out player received nothing; the core saw only tokens, ids and statuses")

	// The auditor's view: the operator's log, checked offline against the
	// gateway's public key and the checkpoints the core kept as a witness.
	pub, err := envelope.LoadVerifyingKey(in.GatewaySigningPub)
	if err != nil {
		return err
	}
	witnessed, wcp := env.Core.Witness().Latest()
	rep, err := audit.Verify(in.AuditLog, pub.Public, env.Gateway.AuditOrigin(), witnessed)
	if err != nil {
		return fmt.Errorf("demo: audit verify: %w", err)
	}
	step("audit log verified offline: %d entries, %d signed checkpoints; consistent with the core's witness copy (size %d)",
		rep.Size, rep.Checkpoints, wcp.Size)
	fmt.Fprintf(c.stdout, "    decisions %d, deliveries %d, messages accepted %d\n",
		rep.ByKind[audit.KindDecision], rep.ByKind[audit.KindDelivery], rep.ByKind[audit.KindMessageAccepted])
	if *keep {
		fmt.Fprintf(c.stdout, "    try: blindpost audit verify --log %s --key %s\n", in.AuditLog, in.GatewaySigningPub)
	}
	fmt.Fprintln(c.stdout, "demo: ok")
	return nil
}

// findMail returns the captured mail whose Message-ID starts with prefix.
func findMail(dir, prefix string) (string, *mail.Message, error) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		m, err := mail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			continue
		}
		if strings.HasPrefix(m.Header.Get("Message-ID"), prefix) {
			return p, m, nil
		}
	}
	return "", nil, fmt.Errorf("demo: no delivered mail with Message-ID %s…", prefix)
}
