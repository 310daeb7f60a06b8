// Command blindpost is the one binary of blindpost: the operator's gateway,
// the tools operators and auditors use around it, and a self-contained dev
// environment and demo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	_ "time/tzdata" // players' time zones must resolve on hosts without a zoneinfo database
)

// command is one subcommand. run gets the arguments after its name.
type command struct {
	summary string
	run     func(ctx context.Context, env *cli, args []string) error
}

// cli carries the process's streams so commands can be tested in-process.
type cli struct {
	stdout, stderr io.Writer
	stdin          io.Reader
}

func (c *cli) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

var errUsage = errors.New("usage")

func commands() map[string]command {
	return map[string]command{
		"gateway":  {"run the gateway: blindpost gateway --config FILE", runGateway},
		"core":     {"run the vendor-side core: blindpost core --config FILE; core init|labels|keys (blindpost core help)", runCore},
		"config":   {"check a gateway config: blindpost config check FILE", runConfig},
		"keys":     {"generate, show and rotate keys: blindpost keys generate gateway|core|vault|unsubscribe --out DIR; keys public DIR; keys rotate kek|token|hpke|signing (blindpost keys help)", runKeys},
		"subjects": {"manage players' records: blindpost subjects put|import|erase", runSubjects},
		"dev":      {"run a gateway with embedded defaults: blindpost dev --data DIR", runDev},
		"send":     {"act as the core and send one message to a dev gateway", runSend},
		"demo":     {"run the whole journey once on a temporary directory", runDemo},
		"audit":    {"for auditors: blindpost audit verify --log DIR --key PUB [--since CP]; show --message ID; export --from T --to T", runAudit},
		"policy":   {"for auditors: blindpost policy test [--bundle DIR]; blindpost policy eval --input FILE", runPolicy},
		"vault":    {"prepare Vault/OpenBao Transit keys for the config's tenants: blindpost vault setup --config FILE", runVault},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	if err := run(ctx, c, os.Args[1:]); err != nil {
		if !errors.Is(err, errUsage) && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "blindpost:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, c *cli, args []string) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(c.stderr, cmds)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		usage(c.stderr, cmds)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return cmd.run(ctx, c, args[1:])
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "blindpost: privacy-first secure messaging gateway\n\nCommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n].summary)
	}
}

// flags makes a FlagSet that reports errors instead of exiting.
func flags(c *cli, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("blindpost "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	return fs
}

// parse parses flags, allowing them after positional arguments too.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func need(name, v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("--%s is required", name)
	}
	return nil
}
