package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/blindpost/blindpost/core"
	"github.com/blindpost/blindpost/core/admin"
	"github.com/blindpost/blindpost/tokenmap"
)

// runCoreTokens is `blindpost core tokens apply`: the core's step of a
// planned re-tokenisation (docs/key-rotation.md §5). It verifies the pairs
// file the gateway signed against the config's gateway_keys, then rewrites
// every old token the store holds into the new one, as the admin API's
// token-pairs route does.
func runCoreTokens(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] != "apply" {
		fmt.Fprintln(c.stderr, coreUsage)
		return errUsage
	}
	fs := flags(c, "core tokens apply")
	path := fs.String("config", "", "core config file (YAML)")
	pairsPath := fs.String("pairs", "", "the pairs file (NDJSON) of `blindpost keys rotate token`")
	sigPath := fs.String("sig", "", "its signature file (default: the pairs file's name + .sig)")
	label := fs.String("label", "", "the label to apply it to (default: the file's tenant, which must be one)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("core tokens apply: unexpected argument %q", pos[0])
	}
	if err := need("config", *path); err != nil {
		return err
	}
	if err := need("pairs", *pairsPath); err != nil {
		return err
	}
	if *sigPath == "" {
		*sigPath = *pairsPath + ".sig"
	}
	cfg, err := core.LoadConfig(*path)
	if err != nil {
		return err
	}
	keys, err := cfg.LoadGatewayKeys()
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return fmt.Errorf("core tokens apply: %s names no gateway_keys: add the gateway's signing.pub (compare its fingerprint with the operator's first)", *path)
	}
	data, err := os.ReadFile(*pairsPath)
	if err != nil {
		return fmt.Errorf("core tokens apply: %w", err)
	}
	sig, err := os.ReadFile(*sigPath)
	if err != nil {
		return fmt.Errorf("core tokens apply: the signature file: %w", err)
	}
	// Verified before the store is opened: a refused file touches nothing.
	f, err := tokenmap.Open(data, sig, keys)
	if err != nil {
		return fmt.Errorf("core tokens apply: %s refused, nothing was applied: %w", *pairsPath, err)
	}
	if *label == "" {
		switch ts := f.Tenants(); len(ts) {
		case 1:
			*label = ts[0]
		case 0:
			return fmt.Errorf("core tokens apply: %s holds no pairs: name the label with --label, or there is nothing to apply", *pairsPath)
		default:
			return fmt.Errorf("core tokens apply: %s holds the pairs of several tenants (%s): a label takes a file of its tenant only; ask the operator for one (keys rotate token --tenant)",
				*pairsPath, strings.Join(ts, ", "))
		}
	}
	st, err := core.OpenStore(ctx, cfg, core.StoreOptions{Logger: c.logger()})
	if err != nil {
		return err
	}
	defer st.Close()
	a := admin.New(st, nil)
	a.SetGatewayKeys(keys)
	res, err := a.ApplyTokenPairs(ctx, *label, data, sig)
	if err != nil {
		if cfg.Store.Driver == "sqlite" && strings.Contains(err.Error(), "ingests into this file") {
			err = fmt.Errorf("%w\nthe core is running on this file: apply through its admin API instead:\n  curl -H \"Authorization: Bearer $%s\" -F pairs=@%s -F sig=@%s http://%s/v1/labels/%s/token-pairs",
				err, cfg.AdminTokenEnv, *pairsPath, *sigPath, cfg.AdminListen, *label)
		}
		if errors.Is(err, admin.ErrInvalid) {
			return fmt.Errorf("core tokens apply: %w; nothing was applied", err)
		}
		return fmt.Errorf("core tokens apply: %w", err)
	}
	if *asJSON {
		return printJSON(c, res)
	}
	fmt.Fprintf(c.stdout, "verified %s: signed by gateway key kid=%s, sha256 %s, %d pairs of label %s\n",
		*pairsPath, res.KeyID, res.SHA256, res.Pairs, res.Label)
	fmt.Fprintf(c.stdout, "applied: rewrote %d token values in %d players\n", res.Values, res.Players)
	return nil
}
