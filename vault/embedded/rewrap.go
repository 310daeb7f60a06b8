package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/blindpost/blindpost/vault"
)

var _ vault.Rewrapper = (*Store)(nil)

const defaultRewrapBatch = 256

// Rewrap wraps the data keys of tenant's subjects, and the tenant's key
// check, again under the key provider's newest KEK version, batch by
// batch: each batch is read, re-wrapped outside any transaction, and
// written back in one short write transaction, only where the row's record
// version is unchanged, so a concurrent Put is never overwritten (its row
// already has a key wrapped by the version it used, and Oldest counts it).
// When it re-wrapped anything it checkpoints and truncates the WAL, as
// Erase does: with secure_delete on, no copy of an old wrapped key stays
// in the live files.
//
// A data key that does not open is left as it is and counted in Oldest by
// the version it names; the pass goes on and then fails with an error
// matching vault.ErrCorrupt. With a key provider that is not a
// vault.KEKVersioner every key is wrapped again and Oldest is 0, as for a
// tenant with no keys.
func (s *Store) Rewrap(ctx context.Context, tenant string, opts vault.RewrapOptions) (vault.RewrapStats, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return vault.RewrapStats{}, fmt.Errorf("embedded: rewrap: tenant: %w", err)
	}
	n := opts.Batch
	if n <= 0 {
		n = defaultRewrapBatch
	}
	p := &rewrapPass{s: s, tenant: tenant}
	err := p.keyCheck(ctx)
	var after vault.Ref
	for err == nil {
		var read int
		if read, err = p.batch(ctx, &after, n); read < n {
			break
		}
	}
	if err == nil && p.corrupt > 0 {
		err = fmt.Errorf("%d data keys did not open and were left as they are: %w", p.corrupt, vault.ErrCorrupt)
	}
	if p.st.Rewrapped > 0 {
		// The new keys are committed: drop the old ones from the WAL even
		// if the caller has given up waiting.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		s.truncateWAL(tctx)
	}
	if err != nil {
		return p.st, fmt.Errorf("embedded: rewrap: %w", err)
	}
	return p.st, nil
}

// rewrapPass is one Rewrap of one tenant.
type rewrapPass struct {
	s       *Store
	tenant  string
	st      vault.RewrapStats
	seen    bool // st.Oldest holds a version
	corrupt int  // keys that did not open
}

// keptVersion counts a key left wrapped by KEK version v.
func (p *rewrapPass) keptVersion(v int) {
	if !p.seen || v < p.st.Oldest {
		p.st.Oldest, p.seen = v, true
	}
}

type rewrapRow struct {
	ref     vault.Ref
	version int64
	wrapped []byte
}

// batch re-wraps the keys of up to n subjects after *after, in (brand,
// user) order, and moves *after past them. It returns how many subjects it
// read.
func (p *rewrapPass) batch(ctx context.Context, after *vault.Ref, n int) (int, error) {
	rows, err := p.s.r.QueryContext(ctx, `
		SELECT brand, user, version, wrapped_key FROM subjects
		WHERE tenant = ? AND (brand, user) > (?, ?)
		ORDER BY brand, user LIMIT ?`, p.tenant, after.Brand, after.User, n)
	if err != nil {
		return 0, dbErr("read keys", err)
	}
	var batch []rewrapRow
	for rows.Next() {
		r := rewrapRow{ref: vault.Ref{Tenant: p.tenant}}
		if err := rows.Scan(&r.ref.Brand, &r.ref.User, &r.version, &r.wrapped); err != nil {
			rows.Close()
			return 0, dbErr("read keys", err)
		}
		batch = append(batch, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, dbErr("read keys", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	*after = batch[len(batch)-1].ref

	type update struct {
		rewrapRow
		newWrapped []byte
		newKEK     int
	}
	var updates []update
	for _, r := range batch {
		p.st.Scanned++
		w, changed, v, err := vault.RewrapKey(ctx, p.s.kp, p.tenant, r.wrapped, vault.AssociatedData(r.ref, r.version))
		if errors.Is(err, vault.ErrCorrupt) {
			// One key that does not open (tampered, or under a version
			// retired too early) must not stop the rotation of the others.
			// It keeps counting as its version, and the pass fails.
			p.corrupt++
			if v, err = p.s.kekVersion(ctx, p.tenant, r.wrapped); err != nil {
				v = 0
			}
			p.keptVersion(v)
			continue
		}
		if err != nil {
			return 0, err
		}
		if !changed {
			p.keptVersion(v)
			continue
		}
		updates = append(updates, update{r, w, v})
	}
	if len(updates) == 0 {
		return len(batch), nil
	}

	tx, err := p.s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, dbErr("begin", err)
	}
	defer tx.Rollback()
	var lost []rewrapRow // rows a Put or an Erase changed since the read
	var landed []int     // KEK versions of the keys written
	for _, u := range updates {
		res, err := tx.ExecContext(ctx, `UPDATE subjects SET wrapped_key = ?
			WHERE tenant = ? AND brand = ? AND user = ? AND version = ?`,
			u.newWrapped, p.tenant, u.ref.Brand, u.ref.User, u.version)
		if err != nil {
			return 0, dbErr("write key", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return 0, dbErr("write key", err)
		} else if n == 0 {
			lost = append(lost, u.rewrapRow)
			continue
		}
		landed = append(landed, u.newKEK)
	}
	// Count the version of what the changed rows hold now, if they are
	// still there.
	for _, r := range lost {
		var w []byte
		err := tx.QueryRowContext(ctx, `SELECT wrapped_key FROM subjects WHERE tenant = ? AND brand = ? AND user = ?`,
			p.tenant, r.ref.Brand, r.ref.User).Scan(&w)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return 0, dbErr("read key", err)
		}
		v, err := p.s.kekVersion(ctx, p.tenant, w)
		if err != nil {
			return 0, err
		}
		landed = append(landed, v)
	}
	if err := tx.Commit(); err != nil {
		return 0, dbErr("commit", err)
	}
	p.st.Rewrapped += len(updates) - len(lost)
	for _, v := range landed {
		p.keptVersion(v)
	}
	return len(batch), nil
}

// keyCheck re-wraps the tenant's key check, which Open unwraps: left under
// a retired version, it would stop the store from opening.
func (p *rewrapPass) keyCheck(ctx context.Context) error {
	var wrapped []byte
	err := p.s.r.QueryRowContext(ctx, `SELECT wrapped FROM key_checks WHERE tenant = ?`, p.tenant).Scan(&wrapped)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return dbErr("read key check", err)
	}
	p.st.Scanned++
	w, changed, v, err := vault.RewrapKey(ctx, p.s.kp, p.tenant, wrapped, keyCheckAD)
	if err != nil {
		return fmt.Errorf("key check: %w", err)
	}
	if changed {
		res, err := p.s.w.ExecContext(ctx, `UPDATE key_checks SET wrapped = ? WHERE tenant = ? AND wrapped = ?`, w, p.tenant, wrapped)
		if err != nil {
			return dbErr("write key check", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return dbErr("write key check", err)
		} else if n == 0 {
			// Another process re-wrapped it first.
			if err := p.s.r.QueryRowContext(ctx, `SELECT wrapped FROM key_checks WHERE tenant = ?`, p.tenant).Scan(&w); err != nil {
				return dbErr("read key check", err)
			}
			if v, err = p.s.kekVersion(ctx, p.tenant, w); err != nil {
				return err
			}
		} else {
			p.st.Rewrapped++
		}
	}
	p.keptVersion(v)
	return nil
}

// kekVersion is the KEK version of a wrapped key, 0 if the key provider
// does not tell.
func (s *Store) kekVersion(ctx context.Context, tenant string, wrapped []byte) (int, error) {
	kv, ok := s.kp.(vault.KEKVersioner)
	if !ok {
		return 0, nil
	}
	v, _, err := kv.KEKVersion(ctx, tenant, wrapped)
	return v, err
}

// Tenants returns the tenants the store holds keys of (subjects or a key
// check), sorted, so that a re-wrap can visit each.
func (s *Store) Tenants(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT tenant FROM key_checks UNION SELECT DISTINCT tenant FROM subjects ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("embedded: tenants: %w", dbErr("query", err))
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("embedded: tenants: %w", dbErr("scan", err))
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("embedded: tenants: %w", dbErr("query", err))
	}
	return out, nil
}
