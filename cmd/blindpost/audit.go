package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
)

// runAudit is the auditor's toolbox. It needs only the log directory and
// public keys: nothing here can write to the log.
func runAudit(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		return errors.New("audit: want verify, show or export")
	}
	fs := flags(c, "audit "+args[0])
	dir := fs.String("log", "", "the gateway's audit log directory (data_dir/audit)")
	keyPath := fs.String("key", "", "verify: the gateway's signing.pub")
	origin := fs.String("origin", "", "verify: the log's origin (default: "+gateway.AuditOriginPrefix+"<key id>)")
	since := fs.String("since", "", "verify: an earlier signed checkpoint (one note) the log must be consistent with")
	witness := fs.String("witness", "", "verify: the vendor's witness file; the log must be consistent with every checkpoint in it")
	message := fs.String("message", "", "show: the core's message id or the gateway's ext_message_id")
	coreKey := fs.String("core-key", "", "show: the core's signing.pub, to prove the core signed the request")
	from := fs.String("from", "", "export: RFC 3339 start (inclusive)")
	to := fs.String("to", "", "export: RFC 3339 end (exclusive)")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	if err := need("log", *dir); err != nil {
		return err
	}
	out := json.NewEncoder(c.stdout)
	switch args[0] {
	case "verify":
		if err := need("key", *keyPath); err != nil {
			return err
		}
		key, err := envelope.LoadVerifyingKey(*keyPath)
		if err != nil {
			return err
		}
		if *origin == "" {
			*origin = gateway.AuditOriginPrefix + string(key.ID)
		}
		var sinceCP []byte
		if *since != "" {
			if sinceCP, err = os.ReadFile(*since); err != nil {
				return err
			}
		}
		rep, err := audit.Verify(*dir, key.Public, *origin, sinceCP)
		if err != nil {
			return fmt.Errorf("audit verify: FAILED: %w", err)
		}
		if *witness != "" {
			w, err := audit.OpenWitness(*witness, key.Public, *origin)
			if err != nil {
				return fmt.Errorf("audit verify: witness: %w", err)
			}
			cps, err := w.All()
			w.Close()
			if err != nil {
				return fmt.Errorf("audit verify: witness: %w", err)
			}
			if _, err := audit.VerifyWitnessed(*dir, key.Public, *origin, cps...); err != nil {
				return fmt.Errorf("audit verify: FAILED against the witness copy (%d checkpoints): %w", len(cps), err)
			}
			fmt.Fprintf(c.stdout, "consistent with all %d checkpoints of the witness copy %s\n", len(cps), *witness)
		}
		fmt.Fprintf(c.stdout, "audit verify: ok: %d entries, %d signed checkpoints, root %s, %d entries after the latest checkpoint\n",
			rep.Size, rep.Checkpoints, rep.LatestRoot, rep.Unsigned)
		for k, n := range rep.ByKind {
			fmt.Fprintf(c.stdout, "  %-18s %d\n", k, n)
		}
		if *since != "" {
			fmt.Fprintf(c.stdout, "consistent with %s\n", *since)
		}
		return nil
	case "show":
		if err := need("message", *message); err != nil {
			return err
		}
		r, err := audit.OpenReader(*dir)
		if err != nil {
			return err
		}
		recs, err := r.FindMessage(*message)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return fmt.Errorf("audit show: no record of message %q", *message)
		}
		var core *envelope.VerifyingKey
		if *coreKey != "" {
			if core, err = envelope.LoadVerifyingKey(*coreKey); err != nil {
				return err
			}
		}
		for _, rec := range recs {
			if err := out.Encode(rec); err != nil {
				return err
			}
			if core == nil || (rec.Kind != audit.KindMessageAccepted && rec.Kind != audit.KindMessageRejected) {
				continue
			}
			var md audit.MessageData
			if err := json.Unmarshal(rec.Data, &md); err != nil {
				return fmt.Errorf("audit show: record %d: %w", rec.Index, err)
			}
			if err := md.Proof.Verify(core); err != nil {
				fmt.Fprintf(c.stdout, "# record %d: the core's signature does NOT cover this message: %v\n", rec.Index, err)
				return fmt.Errorf("audit show: proof of record %d: %w", rec.Index, err)
			}
			fmt.Fprintf(c.stdout, "# record %d: proven: the core's key %s signed batch root %x, which includes this message's digest\n",
				rec.Index, core.ID, md.Proof.Root[:8])
		}
		return nil
	case "export":
		start, end := time.Time{}, time.Now().Add(24*time.Hour)
		var err error
		if *from != "" {
			if start, err = time.Parse(time.RFC3339, *from); err != nil {
				return fmt.Errorf("--from: %w", err)
			}
		}
		if *to != "" {
			if end, err = time.Parse(time.RFC3339, *to); err != nil {
				return fmt.Errorf("--to: %w", err)
			}
		}
		r, err := audit.OpenReader(*dir)
		if err != nil {
			return err
		}
		for rec, err := range r.Between(start, end) {
			if err != nil {
				return err
			}
			if err := out.Encode(rec); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("audit: unknown subcommand %q", args[0])
	}
}
