package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/blindpost/blindpost/gateway/admin"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/vault"
)

// adminFlags are how subjects commands find the admin API: a dev directory,
// or a URL and a token (from a file or $BLINDPOST_ADMIN_TOKEN, never a flag,
// so it stays out of shell history and process lists).
type adminFlags struct{ dev, url, tokenFile *string }

func addAdminFlags(fs *flag.FlagSet) adminFlags {
	return adminFlags{
		dev:       fs.String("dev", "", "dev directory of `blindpost dev` (instead of --url)"),
		url:       fs.String("url", "", "admin API base URL, e.g. http://127.0.0.1:8444"),
		tokenFile: fs.String("token-file", "", "file holding the admin token (default $BLINDPOST_ADMIN_TOKEN)"),
	}
}

func (a adminFlags) client() (*admin.Client, error) {
	if *a.dev != "" {
		in, err := devenv.LoadInfo(*a.dev)
		if err != nil {
			return nil, err
		}
		tok, err := in.AdminToken()
		if err != nil {
			return nil, err
		}
		return &admin.Client{BaseURL: in.AdminURL, Token: tok, HTTP: &http.Client{Timeout: time.Minute}}, nil
	}
	if *a.url == "" {
		return nil, errors.New("--dev or --url is required")
	}
	tok := os.Getenv("BLINDPOST_ADMIN_TOKEN")
	if *a.tokenFile != "" {
		b, err := os.ReadFile(*a.tokenFile)
		if err != nil {
			return nil, err
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return nil, errors.New("no admin token: use --token-file or $BLINDPOST_ADMIN_TOKEN")
	}
	return &admin.Client{BaseURL: strings.TrimSuffix(*a.url, "/"), Token: tok, HTTP: &http.Client{Timeout: 10 * time.Minute}}, nil
}

func openInput(c *cli, path string) (io.ReadCloser, error) {
	if path == "" || path == "-" {
		return io.NopCloser(c.stdin), nil
	}
	return os.Open(path)
}

func runSubjects(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		return errors.New("subjects: want put, import or erase")
	}
	fs := flags(c, "subjects "+args[0])
	af := addAdminFlags(fs)
	brand := fs.String("brand", "", "the PAM's ext_brand_id")
	user := fs.String("user", "", "the PAM's user_ext_id")
	file := fs.String("file", "-", "input file (put: one record as JSON; import: NDJSON), - for stdin")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	cl, err := af.client()
	if err != nil {
		return err
	}
	switch args[0] {
	case "put":
		if err := errors.Join(need("brand", *brand), need("user", *user)); err != nil {
			return err
		}
		in, err := openInput(c, *file)
		if err != nil {
			return err
		}
		defer in.Close()
		dec := json.NewDecoder(io.LimitReader(in, 1<<20))
		dec.DisallowUnknownFields()
		var rec vault.Record
		if err := dec.Decode(&rec); err != nil {
			return fmt.Errorf("subjects put: record: %w", err)
		}
		sub, err := cl.Put(ctx, *brand, *user, rec)
		if err != nil {
			return fmt.Errorf("subjects put: %w", err)
		}
		return json.NewEncoder(c.stdout).Encode(sub)
	case "import":
		in, err := openInput(c, *file)
		if err != nil {
			return err
		}
		defer in.Close()
		res, err := cl.Import(ctx, in)
		if err != nil {
			return fmt.Errorf("subjects import: %w", err)
		}
		return json.NewEncoder(c.stdout).Encode(res)
	case "erase":
		if err := errors.Join(need("brand", *brand), need("user", *user)); err != nil {
			return err
		}
		if err := cl.Erase(ctx, *brand, *user); err != nil {
			return fmt.Errorf("subjects erase: %w", err)
		}
		fmt.Fprintf(c.stdout, "erased %s/%s\n", *brand, *user)
		return nil
	default:
		return fmt.Errorf("subjects: unknown subcommand %q", args[0])
	}
}
