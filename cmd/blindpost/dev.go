package main

import (
	"context"
	"fmt"

	"github.com/blindpost/blindpost/internal/devenv"
)

func runDev(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "dev")
	dir := fs.String("data", "", "directory for the dev environment (created; kept across runs)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need("data", *dir); err != nil {
		return err
	}
	env, err := devenv.Start(ctx, *dir, devenv.Options{Logger: c.logger()})
	if err != nil {
		return err
	}
	defer env.Close()
	in := env.Info
	fmt.Fprintf(c.stdout, `blindpost dev gateway running (Ctrl-C stops it)
  message API   %s  (TLS, CA %s)
  admin API     %s  (token in %s)
  SMTP capture  %s  → %s/*.eml
  callbacks     %s  → %s
  described in  %s/dev.json

Try:
  blindpost subjects put --dev %[9]s --brand %[10]s --user u1 <<< '{"email":"player1@example.com","first_name":"Alex","consents":{"marketing_email":true}}'
  blindpost send --dev %[9]s --brand %[10]s --user u1 --channel email --category transactional --purpose password_reset --subject 'Hi {{pii.first_name}}' --html '<p>Hello {{pii.first_name}}</p>' --text 'Hello {{pii.first_name}}'
`, in.MessageURL, in.CACert, in.AdminURL, in.AdminTokenFile, in.SMTPAddr, in.MailDir,
		in.CallbackURL, in.CallbacksFile, *dir, in.Brand)
	<-ctx.Done()
	return nil
}
