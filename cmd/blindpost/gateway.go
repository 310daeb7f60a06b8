package main

import (
	"context"
	"fmt"

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
	if _, err := gateway.LoadConfig(args[1]); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: ok\n", args[1])
	return nil
}
