package audit_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"

	"github.com/blindpost/blindpost/audit"
)

// The gateway appends records and hands out signed checkpoints; the core
// witnesses them; an auditor verifies the directory with the public key.
func Example() {
	dir, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(dir)
	pub, priv, _ := ed25519.GenerateKey(nil) // the gateway's key (test-only)
	const origin = "gateway.example.com/audit"

	// Gateway side.
	signer, _ := audit.NewSigner(origin, priv)
	log, err := audit.Open(filepath.Join(dir, "log"), signer, audit.Options{CheckpointEvery: -1})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	rec, _ := audit.NewRecord(audit.KindDelivery, "tenant-a", audit.DeliveryData{Status: "delivered"})
	rec.MsgID, rec.Pseudonym = "msg-1", "ps_4b1d"
	log.Append(ctx, rec)
	cp, _ := log.Checkpoint(ctx) // sent with every status callback
	log.Close()

	// Core side.
	witness, _ := audit.OpenWitness(filepath.Join(dir, "witness"), pub, origin)
	defer witness.Close()
	if err := witness.Observe(cp); err != nil {
		panic(err)
	}
	latest, _ := witness.Latest()

	// Auditor: only the directory, the public key and a witness copy.
	rep, err := audit.Verify(filepath.Join(dir, "log"), pub, origin, latest)
	fmt.Println(rep.Size, rep.ByKind[audit.KindDelivery], rep.Unsigned, err)
	// Output: 1 1 0 <nil>
}
