package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/blindpost/blindpost/policy"
)

// runPolicy serves auditors: `policy test` runs the bundle's own Rego tests,
// `policy eval` shows the decision the bundle makes for one input.
func runPolicy(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		return errors.New("policy: want test or eval")
	}
	fs := flags(c, "policy "+args[0])
	dir := fs.String("bundle", "", "bundle directory (default: the bundle compiled into this binary)")
	input := fs.String("input", "", "eval: the decision input, a JSON file (- for stdin)")
	verbose := fs.Bool("v", false, "test: print every test, not only failures")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	bundle := bundleFS(*dir)
	switch args[0] {
	case "test":
		results, err := policy.RunTests(ctx, bundle)
		if err != nil {
			return err
		}
		var passed, failed int
		for _, r := range results {
			if r.Pass() {
				passed++
			} else {
				failed++
			}
			if *verbose || !r.Pass() {
				fmt.Fprintln(c.stdout, r.String())
			}
		}
		fmt.Fprintf(c.stdout, "policy: %d passed, %d failed\n", passed, failed)
		if failed > 0 || passed == 0 {
			return fmt.Errorf("policy test: %d of %d tests failed", failed, passed+failed)
		}
		return nil
	case "eval":
		if err := need("input", *input); err != nil {
			return err
		}
		in, err := openInput(c, *input)
		if err != nil {
			return err
		}
		defer in.Close()
		dec := json.NewDecoder(in)
		dec.DisallowUnknownFields()
		var pin policy.Input
		if err := dec.Decode(&pin); err != nil {
			return fmt.Errorf("policy eval: input: %w", err)
		}
		ev, err := policy.New(ctx, bundle, policy.Options{})
		if err != nil {
			return err
		}
		d, err := ev.Decide(ctx, pin)
		out := map[string]any{
			"decision_id": d.ID, "path": d.Path, "revision": d.Revision,
			"result": map[string]any{"allow": d.Allow, "reasons": d.Reasons, "obligations": d.Obligations},
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		enc.Encode(out)
		c.stdout.Write(b.Bytes())
		if err != nil {
			return fmt.Errorf("policy eval: %w (fails closed: denied)", err)
		}
		return nil
	default:
		return fmt.Errorf("policy: unknown subcommand %q", args[0])
	}
}

func bundleFS(dir string) fs.FS {
	if dir == "" {
		return policy.BundleFS()
	}
	return os.DirFS(dir)
}
