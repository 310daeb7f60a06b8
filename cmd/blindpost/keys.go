package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/vault/embedded"
)

// keysUsage is the keys command's subcommands.
const keysUsage = `blindpost keys generate gateway|core|vault|unsubscribe --out DIR
blindpost keys public DIR
blindpost keys rotate kek --config FILE [--tenant T ...] [--token-env VAR] [--batch N] [--rotate-only | --rewrap-only]
blindpost keys rotate kek --config FILE --finish [--no-trim]
blindpost keys rotate token --config FILE --to N --out pairs.ndjson [--from M] [--tenant T] [--token-env VAR] [--batch N]
blindpost keys rotate token --config FILE --finish --from M
blindpost keys rotate hpke --out DIR [--config FILE]
blindpost keys rotate signing --out DIR [--config FILE]`

func runKeys(ctx context.Context, c *cli, args []string) error {
	if len(args) == 1 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(c.stdout, keysUsage)
		return nil
	}
	if len(args) == 0 {
		fmt.Fprintln(c.stderr, keysUsage)
		return errUsage
	}
	switch args[0] {
	case "rotate":
		return runKeysRotate(ctx, c, args[1:])
	case "generate":
		fs := flags(c, "keys generate")
		out := fs.String("out", "", "directory for the new keys (created 0700)")
		pos, err := parse(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("keys generate: want gateway, core, vault or unsubscribe")
		}
		if err := need("out", *out); err != nil {
			return err
		}
		switch pos[0] {
		case "gateway":
			err = envelope.WriteGatewayKeys(*out, rand.Reader)
		case "core":
			err = envelope.WriteCoreKeys(*out, rand.Reader)
		case "unsubscribe":
			// The key that seals one-click unsubscribe links: every node
			// of a cluster reads the same file (public.key_file).
			path := filepath.Join(*out, "unsubscribe.key")
			if err = os.MkdirAll(*out, 0o700); err == nil {
				err = gateway.GenerateUnsubscribeKey(path)
			}
			if err == nil {
				fmt.Fprintf(c.stdout, "generated %s (copy it to every gateway node; set public.key_file)\n", path)
				return nil
			}
		case "vault":
			// The embedded vault's master key: it never leaves the
			// operator's host and has no public half.
			if err = os.MkdirAll(*out, 0o700); err == nil {
				err = embedded.GenerateKeyFile(filepath.Join(*out, "vault.key"))
			}
			if err == nil {
				fmt.Fprintf(c.stdout, "generated %s (keep it private; back it up apart from the vault file)\n", filepath.Join(*out, "vault.key"))
				return nil
			}
		default:
			return fmt.Errorf("keys generate: want gateway, core, vault or unsubscribe, got %q", pos[0])
		}
		if err != nil {
			return fmt.Errorf("keys generate %s: %w", pos[0], err)
		}
		fmt.Fprintf(c.stdout, "generated %s keys in %s; share only the .pub files\n", pos[0], *out)
		return printPublic(c, *out)
	case "public":
		if len(args) != 2 {
			return fmt.Errorf("keys public: want DIR")
		}
		return printPublic(c, args[1])
	default:
		return fmt.Errorf("keys: unknown subcommand %q (want generate, public or rotate)", args[0])
	}
}

// printPublic prints every public key in dir with its key id and
// fingerprint, for the other side to pin after comparing out of band.
func printPublic(c *cli, dir string) error {
	found := 0
	if path := filepath.Join(dir, "hpke.pub"); exists(path) {
		k, err := envelope.LoadRecipientPublicKey(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "hpke (X-Wing)     %s  kid=%s  fingerprint=%s\n", path, k.ID, envelope.Fingerprint(k.Bytes()))
		found++
	}
	if path := filepath.Join(dir, "signing.pub"); exists(path) {
		k, err := envelope.LoadVerifyingKey(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "signing (Ed25519) %s  kid=%s  fingerprint=%s\n", path, k.ID, envelope.Fingerprint(k.Public))
		found++
	}
	if found == 0 {
		return fmt.Errorf("keys public: no hpke.pub or signing.pub in %s", dir)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
