package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/policy"
	"github.com/blindpost/blindpost/vault"
)

// AuditOriginPrefix starts the default origin of a gateway's audit log; the
// signing key's id completes it, so an auditor holding only the public key
// knows which log to expect.
const AuditOriginPrefix = "blindpost.gateway/"

// auditOrigin is the log's origin line and note key name.
func auditOrigin(cfg *Config, key *envelope.SigningKey) string { return cfg.AuditOrigin(key.ID) }

// AuditOrigin is the origin of the audit log of a gateway run with c and
// the signing key whose id is kid: what the core's witness and an auditor
// verify its checkpoints against.
func (c *Config) AuditOrigin(kid envelope.KeyID) string {
	origin := c.Audit.Origin
	if origin == "" {
		origin = AuditOriginPrefix + string(kid)
	}
	if c.Clustered() {
		// One log per node: each has its own chain and checkpoints, and
		// the node's name keeps the witnesses' copies apart.
		origin += "/" + c.Cluster.Node
	}
	return origin
}

// newRecord builds one audit record. Its data never holds PII: ids, codes,
// digests, pseudonyms and the policy's derived attributes only.
func newRecord(kind, tenant string, data any, fill func(*audit.Record)) audit.Record {
	r, err := audit.NewRecord(kind, tenant, data)
	if err != nil {
		// data is always one of our own structs; failing to marshal it is
		// a programming error, and the record still says what happened.
		r = audit.Record{Kind: kind, Tenant: tenant}
	}
	if fill != nil {
		fill(&r)
	}
	return r
}

// decisionRecord puts a policy decision in the log in OPA's decision-log
// shape, naming the subject by pseudonym only.
func decisionRecord(in policy.Input, d policy.Decision, msgID, extID string) audit.Record {
	pseudonym := ""
	if in.Subject != nil {
		pseudonym = in.Subject.Pseudonym
	}
	return newRecord(audit.KindDecision, in.Tenant, d.Log(in),
		func(r *audit.Record) { r.MsgID, r.ExtID, r.Pseudonym = msgID, extID, pseudonym })
}

// appendAudit writes records durably. A failure is returned: callers on
// the path to a send fail closed on it.
func (g *Gateway) appendAudit(ctx context.Context, recs ...audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if _, err := g.audit.Append(ctx, recs...); err != nil {
		g.metrics.auditErrors.Inc()
		g.log.Error("audit log append failed", "records", len(recs), "err", err)
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// auditedStore records every erasure in the audit log under the subject's
// pseudonym, which only the record knew.
type auditedStore struct {
	vault.Store
	g *Gateway
}

// The record goes on the log before the erasure, as every decision does
// before its action: written after, a failed append would leave an erasure
// that no retry could ever record, since a retried DELETE finds nothing to
// erase. A retry after a failed erasure records the request again.
func (s auditedStore) Erase(ctx context.Context, ref vault.Ref) error {
	var pseudonym string
	rec, err := s.Store.Resolve(ctx, ref)
	switch {
	case err == nil:
		pseudonym = rec.Pseudonym
	case errors.Is(err, vault.ErrNotFound):
		return s.Store.Erase(ctx, ref) // nothing to erase, nothing to record
	case errors.Is(err, vault.ErrUnavailable):
		return err
	}
	// A record that does not open (ErrCorrupt) is erased all the same,
	// under no pseudonym.
	if err := s.g.appendAudit(ctx, newRecord(audit.KindErasure, ref.Tenant, audit.ErasureData{Brand: ref.Brand},
		func(r *audit.Record) { r.Pseudonym = pseudonym })); err != nil {
		return err
	}
	return s.Store.Erase(ctx, ref)
}

// shredder completes erasures a record store can only finish later: the
// PostgreSQL store rewrites its tables so that erased rows leave no bytes
// behind (vault/postgres).
type shredder interface {
	Shred(ctx context.Context) error
	Pending(ctx context.Context) (n int, oldest time.Time, err error)
}

// shredLoop runs the record store's shredding on its schedule. Until it
// runs, an erased subject's sealed row and wrapped key survive as dead
// tuples in the database files (never readable through the store).
func (g *Gateway) shredLoop(ctx context.Context) {
	every := time.Duration(g.cfg.Vault.Postgres.ShredInterval)
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, oldest, err := g.shredder.Pending(ctx)
		if err != nil || n == 0 {
			continue
		}
		if err := g.shredder.Shred(ctx); err != nil {
			g.log.Warn("vault shred deferred", "pending", n, "oldest", oldest, "err", err)
			continue
		}
		g.log.Info("vault shred done", "erasures", n)
	}
}
