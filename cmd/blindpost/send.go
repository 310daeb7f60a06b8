package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/internal/devenv"
)

func runSend(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "send")
	dir := fs.String("dev", "", "dev directory of a running `blindpost dev`")
	m := envelope.Message{}
	fs.StringVar(&m.ID, "id", "", "idempotency key (default: random)")
	fs.StringVar(&m.Brand, "brand", "", "brand (ext_brand_id)")
	fs.StringVar(&m.To.Subject, "user", "", "recipient by user_ext_id")
	fs.StringVar(&m.To.Token, "token", "", "recipient by token (tok_…) instead of --user")
	fs.StringVar(&m.Channel, "channel", "email", "email|sms|im|push")
	fs.StringVar(&m.Category, "category", "transactional", "transactional|marketing")
	fs.StringVar(&m.Purpose, "purpose", "", "purpose, e.g. password_reset, promotion")
	fs.StringVar(&m.From, "from", devenv.From, "sender address")
	fs.StringVar(&m.ReplyTo, "reply-to", "", "reply-to address")
	fs.StringVar(&m.Subject, "subject", "", "subject (may use {{pii.<field>}})")
	fs.StringVar(&m.HTML, "html", "", "HTML body (placeholders in text only)")
	fs.StringVar(&m.Text, "text", "", "plain-text body")
	fs.StringVar(&m.Campaign, "campaign", "", "campaign id")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := errors.Join(need("dev", *dir), need("brand", m.Brand), need("purpose", m.Purpose)); err != nil {
		return err
	}
	in, err := devenv.LoadInfo(*dir)
	if err != nil {
		return err
	}
	m.Tenant = in.Tenant
	if m.ID == "" {
		var b [8]byte
		rand.Read(b[:])
		m.ID = "cli-" + hex.EncodeToString(b[:])
	}
	resp, err := in.Send(ctx, m)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(resp)
}
