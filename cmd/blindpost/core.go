package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/blindpost/blindpost/core"
	"github.com/blindpost/blindpost/core/admin"
)

// coreUsage is the core command's subcommands.
const coreUsage = `blindpost core --config FILE                       run the core (events API, admin API, connectors)
blindpost core check --config FILE                 validate a config
blindpost core init --data DIR [--label ID] [--brand B] [--listen ADDR] [--admin-listen ADDR]
                                                   a dev config, a label with a brand, an API key and an admin token
blindpost core labels list --config FILE
blindpost core labels show ID --config FILE
blindpost core labels create ID [--name NAME] --config FILE
blindpost core labels add-brand ID BRAND --config FILE
blindpost core labels firewall ID reject|strip --config FILE
blindpost core labels add-type ID TYPE --config FILE
blindpost core keys list LABEL --config FILE
blindpost core keys create LABEL --config FILE     prints the key once: it is never shown again
blindpost core keys rotate LABEL --config FILE     a new key; the old ones stay valid until revoked
blindpost core keys revoke LABEL KEY_ID --config FILE
blindpost core tokens apply --config FILE --pairs PAIRS [--sig PAIRS.sig] [--label ID]
                                                   verify a token pairs file of the gateway (gateway_keys)
                                                   and rewrite the old tokens players hold into the new ones

The labels and keys commands work on the store directly and may run while the
core does; a running core applies label changes within 2 seconds. Add --json
to print JSON.`

func runCore(ctx context.Context, c *cli, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "help", "-h", "--help":
			fmt.Fprintln(c.stdout, coreUsage)
			return nil
		case "init":
			return runCoreInit(ctx, c, args[1:])
		case "check":
			fs := flags(c, "core check")
			path := fs.String("config", "", "core config file (YAML)")
			if _, err := parse(fs, args[1:]); err != nil {
				return err
			}
			if err := need("config", *path); err != nil {
				return err
			}
			cfg, err := core.LoadConfig(*path)
			if err != nil {
				return err
			}
			// The keys are files: check they load, as start-up will.
			keys, err := cfg.LoadGatewayKeys()
			if err != nil {
				return err
			}
			for _, k := range keys {
				fmt.Fprintf(c.stdout, "gateway key %s\n", k.ID)
			}
			fmt.Fprintf(c.stdout, "%s: ok\n", *path)
			return nil
		case "labels":
			return runCoreLabels(ctx, c, args[1:])
		case "keys":
			return runCoreKeys(ctx, c, args[1:])
		case "tokens":
			return runCoreTokens(ctx, c, args[1:])
		}
	}
	fs := flags(c, "core")
	path := fs.String("config", "", "core config file (YAML)")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		fmt.Fprintln(c.stderr, coreUsage)
		return fmt.Errorf("core: unknown subcommand %q", pos[0])
	}
	if err := need("config", *path); err != nil {
		return err
	}
	cfg, err := core.LoadConfig(*path)
	if err != nil {
		return err
	}
	co, err := core.Open(ctx, cfg, core.Options{Logger: c.logger()})
	if err != nil {
		return err
	}
	defer co.Close()
	if err := co.Listen(); err != nil {
		return err
	}
	return co.Serve(ctx)
}

// coreAdmin opens the store a config names, for the labels and keys
// commands.
func coreAdmin(ctx context.Context, c *cli, path string) (*admin.Admin, func() error, error) {
	if err := need("config", path); err != nil {
		return nil, nil, err
	}
	cfg, err := core.LoadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := core.OpenStore(ctx, cfg, core.StoreOptions{Logger: c.logger()})
	if err != nil {
		return nil, nil, err
	}
	return admin.New(st, nil), st.Close, nil
}

func runCoreLabels(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "core labels")
	path := fs.String("config", "", "core config file (YAML)")
	name := fs.String("name", "", "display name (create)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	want := map[string]int{"list": 1, "show": 2, "create": 2, "add-brand": 3, "firewall": 3, "add-type": 3}
	if len(pos) == 0 || want[pos[0]] != len(pos) {
		fmt.Fprintln(c.stderr, coreUsage)
		return errUsage
	}
	a, closeStore, err := coreAdmin(ctx, c, *path)
	if err != nil {
		return err
	}
	defer closeStore()
	if pos[0] == "list" {
		ls, err := a.Labels(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c, ls)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tFIREWALL\tBRANDS\tCUSTOM TYPES")
		for _, l := range ls {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.ID, l.Name, l.FirewallMode, strings.Join(l.Brands, ","), strings.Join(l.EventTypes, ","))
		}
		return tw.Flush()
	}
	var l admin.Label
	switch id := pos[1]; pos[0] {
	case "show":
		l, err = a.Label(ctx, id)
	case "create":
		l, err = a.CreateLabel(ctx, id, *name)
	case "add-brand":
		l, err = a.AddBrand(ctx, id, pos[2])
	case "firewall":
		l, err = a.SetFirewallMode(ctx, id, pos[2])
	case "add-type":
		l, err = a.RegisterEventType(ctx, id, pos[2])
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c, l)
	}
	fmt.Fprintf(c.stdout, "label %s (%s)\n  firewall  %s\n  brands    %s\n  types     %s\n", l.ID, l.Name, l.FirewallMode,
		orNone(l.Brands), orNone(l.EventTypes))
	return nil
}

func runCoreKeys(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "core keys")
	path := fs.String("config", "", "core config file (YAML)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	want := map[string]int{"list": 2, "create": 2, "rotate": 2, "revoke": 3}
	if len(pos) == 0 || want[pos[0]] != len(pos) {
		fmt.Fprintln(c.stderr, coreUsage)
		return errUsage
	}
	a, closeStore, err := coreAdmin(ctx, c, *path)
	if err != nil {
		return err
	}
	defer closeStore()
	label := pos[1]
	switch pos[0] {
	case "list":
		ks, err := a.Keys(ctx, label)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c, ks)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCREATED\tREVOKED")
		for _, k := range ks {
			revoked := "-"
			if k.Revoked != nil {
				revoked = k.Revoked.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", k.ID, k.Created.Format(time.RFC3339), revoked)
		}
		return tw.Flush()
	case "revoke":
		if err := a.RevokeKey(ctx, label, pos[2]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "revoked key %s of label %s\n", pos[2], label)
		return nil
	}
	var nk admin.NewKey
	if pos[0] == "create" {
		nk, err = a.CreateKey(ctx, label)
	} else {
		nk, err = a.RotateKey(ctx, label)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c, nk)
	}
	fmt.Fprintf(c.stdout, "key %s for label %s (shown once; store it now):\n%s\n", nk.Info.ID, label, nk.Key)
	if len(nk.Previous) > 0 {
		ids := make([]string, len(nk.Previous))
		for i, k := range nk.Previous {
			ids[i] = k.ID
		}
		fmt.Fprintf(c.stdout, "still valid: %s; revoke each once the PAM uses the new key:\n  blindpost core keys revoke %s KEY_ID --config %s\n",
			strings.Join(ids, ", "), label, *path)
	}
	return nil
}

// runCoreInit writes a development config into DIR, creates a label with a
// brand and an API key in its store, and prints how to use them.
func runCoreInit(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "core init")
	dir := fs.String("data", "", "directory for the config and the store (created)")
	labelID := fs.String("label", "demo", "label to create")
	brand := fs.String("brand", "demo-casino", "brand of the label")
	listen := fs.String("listen", "127.0.0.1:8080", "events API address")
	adminListen := fs.String("admin-listen", "127.0.0.1:8081", "admin API address")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need("data", *dir); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(abs, "core.yaml")
	if _, err := os.Stat(cfgPath); err == nil {
		return fmt.Errorf("core init: %s exists; use blindpost core keys create to get another key", cfgPath)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return err
	}
	cfg := &core.Config{DataDir: abs, Listen: *listen, AdminListen: *adminListen}
	cfg.SetDefaults()
	cfg.ResolvePaths(abs)
	if err := cfg.Validate(); err != nil {
		return err
	}
	b, err := cfg.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return err
	}
	st, err := core.OpenStore(ctx, cfg, core.StoreOptions{Logger: c.logger()})
	if err != nil {
		return err
	}
	defer st.Close()
	a := admin.New(st, nil)
	if _, err := a.CreateLabel(ctx, *labelID, ""); err != nil {
		return err
	}
	if _, err := a.AddBrand(ctx, *labelID, *brand); err != nil {
		return err
	}
	nk, err := a.CreateKey(ctx, *labelID)
	if err != nil {
		return err
	}
	tok := make([]byte, 32)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	tokenFile := filepath.Join(abs, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, `wrote %s; label %q with brand %q
  API key (shown once): %s
  admin token in %s

Run it:
  %s=$(cat %s) blindpost core --config %s
Send an event:
  curl -s -H 'Authorization: %s' http://%s/api/external/events/v2 -d '[{"eid":"11111111-1111-4111-8111-111111111111","event_date":%d,"ext_brand_id":"%s","user_ext_id":"u1","event_type":"registration","payload":{"vip":true}}]'
Read the player:
  curl -s -H "Authorization: Bearer $(cat %s)" 'http://%s/api/players/%s/u1?label=%s'
`, cfgPath, *labelID, *brand, nk.Key, tokenFile,
		cfg.AdminTokenEnv, tokenFile, cfgPath,
		nk.Key, cfg.Listen, time.Now().UnixMilli(), *brand,
		tokenFile, cfg.AdminListen, *brand, *labelID)
	return nil
}

func printJSON(c *cli, v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}
