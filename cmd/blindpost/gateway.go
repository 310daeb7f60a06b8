package main

import (
	"context"
	"fmt"
	"os"

	"github.com/blindpost/blindpost/adapters/smtp"

	"github.com/blindpost/blindpost/gateway"
)

func runGateway(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "gateway")
	path := fs.String("config", "", "gateway config file (YAML)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need("config", *path); err != nil {
		return err
	}
	cfg, err := gateway.LoadConfig(*path)
	if err != nil {
		return err
	}
	g, err := gateway.Open(ctx, cfg, gateway.Options{Logger: c.logger()})
	if err != nil {
		return err
	}
	defer g.Close()
	if err := g.Listen(); err != nil {
		return err
	}
	return g.Serve(ctx)
}

func runConfig(ctx context.Context, c *cli, args []string) error {
	if len(args) != 2 || args[0] != "check" {
		return fmt.Errorf("config: want check FILE")
	}
	cfg, err := gateway.LoadConfig(args[1])
	if err != nil {
		return err
	}
	// The DKIM keys must load and be strong enough, and their public halves
	// must be in DNS before mail is signed with them: print what to publish.
	for i, k := range cfg.SMTP.DKIM {
		pem, err := os.ReadFile(k.KeyFile)
		if err != nil {
			return fmt.Errorf("smtp.dkim[%d]: %w", i, err)
		}
		signer, err := smtp.LoadDKIMKey(pem)
		if err != nil {
			return fmt.Errorf("smtp.dkim[%d]: %w", i, err)
		}
		name, value, err := (&smtp.DKIM{Domain: k.Domain, Selector: k.Selector, Signer: signer}).TXTRecord()
		if err != nil {
			return fmt.Errorf("smtp.dkim[%d]: %w", i, err)
		}
		fmt.Fprintf(c.stdout, "smtp.dkim[%d]: publish %s TXT %q\n", i, name, value)
	}
	fmt.Fprintf(c.stdout, "%s: ok\n", args[1])
	return nil
}
