package main

import (
	"context"
	"fmt"

	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// runVault prepares Vault/OpenBao for a gateway: `blindpost vault setup
// --config FILE` creates each tenant's Transit keys (idempotently; run it
// with an operator's token, not the gateway's) and prints the
// least-privilege policy the gateway's own token or AppRole should have.
func runVault(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] != "setup" {
		return fmt.Errorf("vault: want setup --config FILE: %w", errUsage)
	}
	fs := flags(c, "vault setup")
	path := fs.String("config", "", "gateway config file (YAML) with vault.hashicorp")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	if err := need("config", *path); err != nil {
		return err
	}
	cfg, err := gateway.LoadConfig(*path)
	if err != nil {
		return err
	}
	hc := cfg.Vault.Hashicorp
	if hc.Address == "" {
		return fmt.Errorf("vault setup: %s has no vault.hashicorp.address", *path)
	}
	p, err := hashivault.New(ctx, hc, hashivault.Options{Logger: c.logger()})
	if err != nil {
		return err
	}
	defer p.Close()
	var tenants []string
	for _, t := range cfg.Tenants {
		created, err := p.Setup(ctx, t.ID)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", t.ID, err)
		}
		for _, k := range created {
			fmt.Fprintf(c.stdout, "created transit key %s\n", k)
		}
		tenants = append(tenants, t.ID)
	}
	policy, err := hashivault.GatewayPolicy(hc, tenants...)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "# the gateway's Vault policy (least privilege):\n%s\n", policy)
	return nil
}
